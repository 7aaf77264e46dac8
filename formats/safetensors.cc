// Safetensors reader: header parsing and complete validation (see hct/safetensors.h).
#include "hct/safetensors.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <utility>

#include "hct/detail/file.h"

namespace hct {
namespace {

// Only its SAX interface and value types are used: the header is read without a JSON tree.
using ojson = nlohmann::json;

std::string Range(uint64_t b, uint64_t e) {
  std::string s("[");  // appends, not "[" + ..., which trips a GCC 12 -Wrestrict false positive
  s.append(std::to_string(b)).append(", ").append(std::to_string(e)).append(")");
  return s;
}

Status TensorError(Code code, const std::string& name, const std::string& msg) {
  return Status(code, "tensor '" + name + "': " + msg);
}

uint64_t LoadLE64(const std::byte* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint64_t>(p[i]);
  return v;
}

// Checks the 8-byte length prefix against the file size.
Status CheckHeaderLength(uint64_t n, uint64_t file_size) {
  if (n > kSafetensorsMaxHeaderBytes)
    return Status::Corruption("header length " + std::to_string(n) + " exceeds the limit of " +
                              std::to_string(kSafetensorsMaxHeaderBytes) + " bytes");
  if (n > file_size - 8)
    return Status::OutOfRange("header length " + std::to_string(n) +
                              " passes the end of the file (" + std::to_string(file_size) +
                              " bytes; truncated?)");
  if (n < 2) return Status::Corruption("header length " + std::to_string(n) + " is too short");
  return Status::OK();
}

Status CheckFileSize(uint64_t file_size) {
  if (file_size < 8)
    return Status::OutOfRange("file is " + std::to_string(file_size) +
                              " bytes, too short for the 8-byte header length (truncated?)");
  return Status::OK();
}

}  // namespace

std::optional<uint64_t> ElementCount(std::span<const uint64_t> shape) {
  uint64_t n = 1;
  for (uint64_t d : shape) {
    if (d != 0 && n > UINT64_MAX / d) {
      // A later zero dimension still makes the product 0, which is representable.
      if (std::find(shape.begin(), shape.end(), uint64_t{0}) != shape.end()) return 0;
      return std::nullopt;
    }
    n *= d;
  }
  return n;
}

std::string ShapeString(std::span<const uint64_t> shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ",";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

struct SafetensorsFile::Backing {
  detail::MappedFile map;
  detail::ReadFile file;
  bool pread = false;
};

SafetensorsFile::SafetensorsFile() = default;
SafetensorsFile::SafetensorsFile(SafetensorsFile&&) noexcept = default;
SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&&) noexcept = default;
SafetensorsFile::~SafetensorsFile() = default;

Result<SafetensorsFile> SafetensorsFile::Parse(std::span<const std::byte> bytes, std::string name) {
  SafetensorsFile f;
  f.path_ = std::move(name);
  f.file_size_ = bytes.size();
  f.base_ = bytes.data();
  Status s = CheckFileSize(bytes.size());
  if (s.ok()) {
    uint64_t n = LoadLE64(bytes.data());
    s = CheckHeaderLength(n, bytes.size());
    if (s.ok()) {
      f.data_offset_ = 8 + n;
      s = f.ParseHeader(bytes.subspan(8, n));
    }
  }
  if (!s.ok()) return std::move(s).WithContext(f.path_);
  return f;
}

Result<SafetensorsFile> SafetensorsFile::Open(const std::string& path, SafetensorsAccess access) {
  auto backing = std::make_unique<Backing>();
  if (access == SafetensorsAccess::kMmap) {
    HCT_ASSIGN_OR_RETURN(backing->map, detail::MappedFile::Open(path));
    HCT_ASSIGN_OR_RETURN(SafetensorsFile f, Parse(backing->map.bytes(), path));
    f.backing_ = std::move(backing);  // the mapping address does not change on move
    return f;
  }
  HCT_ASSIGN_OR_RETURN(backing->file, detail::ReadFile::Open(path));
  backing->pread = true;
  SafetensorsFile f;
  f.path_ = path;
  f.file_size_ = backing->file.size();
  Status s = CheckFileSize(f.file_size_);
  if (s.ok()) {
    std::byte len[8];
    s = backing->file.ReadAt(0, len);
    if (s.ok()) {
      uint64_t n = LoadLE64(len);
      s = CheckHeaderLength(n, f.file_size_);
      if (s.ok()) {
        std::vector<std::byte> json(n);  // bounded by the limit and by the file size
        s = backing->file.ReadAt(8, json);
        f.data_offset_ = 8 + n;
        if (s.ok()) s = f.ParseHeader(json);
      }
    }
  }
  if (!s.ok()) return std::move(s).WithContext(path);
  f.backing_ = std::move(backing);
  return f;
}

namespace {

// Shape, dtype and byte range of one entry (the range against the data section's size).
// The message strings are made only on failure: per-tensor allocations were the largest cost of
// a header of many small tensors (issue 10 item 7).
Status CheckEntry(const TensorInfo& t, uint64_t data_size) {
  auto shape_s = [&] { return ShapeString(t.shape); };
  auto dtype_s = [&] { return std::string(DTypeName(t.dtype)); };
  auto count = ElementCount(t.shape);
  if (!count)
    return TensorError(Code::kOutOfRange, t.name,
                       "shape " + shape_s() + " has more than 2^64 elements");
  const uint64_t bits = static_cast<uint64_t>(DTypeBits(t.dtype));
  if (*count > UINT64_MAX / bits)
    return TensorError(Code::kOutOfRange, t.name,
                       "shape " + shape_s() + " x " + dtype_s() + " overflows 64 bits");
  if (*count * bits % 8 != 0)
    return TensorError(Code::kCorruption, t.name,
                       "shape " + shape_s() + " x " + dtype_s() + " is " +
                           std::to_string(*count * bits) + " bits, not whole bytes");
  const uint64_t bytes = *count * bits / 8;
  if (t.data_end < t.data_begin)
    return TensorError(
        Code::kCorruption, t.name,
        "data_offsets " + Range(t.data_begin, t.data_end) + " end before they begin");
  if (t.data_end - t.data_begin != bytes)
    return TensorError(Code::kCorruption, t.name,
                       "data_offsets " + Range(t.data_begin, t.data_end) +
                           " do not match shape " + shape_s() + " x " + dtype_s() + " = " +
                           std::to_string(bytes) + " bytes");
  if (t.data_end > data_size)
    return TensorError(Code::kOutOfRange, t.name,
                       "data_offsets " + Range(t.data_begin, t.data_end) +
                           " pass the end of the data section (" + std::to_string(data_size) +
                           " bytes; truncated?)");
  return Status::OK();
}

// Reads the header from nlohmann's SAX events straight into TensorInfo entries, with no JSON
// tree: a tree costs several allocations per value, and nlohmann's ordered tree and its parser
// callback are quadratic in the number of keys (a 10 MB header took 23 s, then minutes). No
// valid header nests deeper than root > entry > shape, so anything deeper is an error where it
// starts. The first error in header order ends the parse.
class HeaderReader {
 public:
  HeaderReader(uint64_t data_size, std::vector<TensorInfo>* tensors,
               std::map<std::string, size_t, std::less<>>* by_name,
               std::map<std::string, std::string>* metadata)
      : data_size_(data_size), tensors_(tensors), by_name_(by_name), metadata_(metadata) {}
  const Status& status() const { return status_; }

  bool null() { return Other("null"); }
  bool boolean(bool) { return Other("boolean"); }
  bool number_integer(ojson::number_integer_t) { return Other("number"); }
  bool number_float(ojson::number_float_t, const std::string&) { return Other("number"); }
  bool binary(ojson::binary_t&) { return Other("binary"); }
  bool number_unsigned(ojson::number_unsigned_t v) {
    if (depth_ != 3) return Other("number");
    (field_ == Field::kShape ? cur_.shape : offsets_).push_back(v);
    return true;
  }
  bool string(std::string& v) {
    if (depth_ == 2 && in_meta_) {
      metadata_->emplace(meta_key_, std::move(v));
      return true;
    }
    if (depth_ != 2 || field_ != Field::kDtype) return Other("string");
    dtype_ = std::move(v);
    return true;
  }
  bool start_object(std::size_t) { return Open(true); }
  bool start_array(std::size_t) { return Open(false); }
  bool end_object() { return Close(); }
  bool end_array() { return Close(); }
  bool key(std::string& k) { return depth_ == 1 ? RootKey(k) : EntryKey(k); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) {
    return Fail(Status::Corruption(std::string("header is not valid JSON: ") + ex.what()));
  }

 private:
  enum class Field { kNone, kDtype, kShape, kOffsets };

  bool Fail(Status s) {
    if (status_.ok()) status_ = std::move(s);
    return false;
  }
  bool FailTensor(Code c, const std::string& msg) {
    return Fail(TensorError(c, cur_.name, msg));
  }
  // A value that is not what its place needs.
  bool Other(const char* type) {
    if (depth_ == 1)
      return in_meta_ ? Fail(Status::Corruption("__metadata__ is not a JSON object"))
                      : FailTensor(Code::kCorruption, "entry is not a JSON object");
    if (depth_ == 2 && in_meta_)
      return Fail(Status::Corruption("__metadata__ value of '" + meta_key_ + "' is a " + type +
                                     ", not a string (the name __metadata__ is reserved for "
                                     "string metadata; no tensor can have it)"));
    if (field_ == Field::kDtype) return FailTensor(Code::kCorruption, "dtype is not a string");
    if (field_ == Field::kShape)
      return FailTensor(Code::kCorruption,
                        "shape is not an array of non-negative 64-bit integers");
    return FailTensor(Code::kCorruption,
                      "data_offsets is not a pair of non-negative 64-bit integers");
  }
  bool Open(bool object) {
    const bool fits = depth_ == 0 || (depth_ == 1 && object) ||
                      (depth_ == 2 && !object && !in_meta_ && field_ != Field::kDtype);
    if (!fits) return Other(object ? "object" : "array");
    ++depth_;
    return true;
  }
  bool Close() {
    if (--depth_ == 1 && !in_meta_) return FinishEntry();
    return true;
  }
  bool RootKey(std::string& k) {
    in_meta_ = k == "__metadata__";
    // One map operation per tensor: the name is entered here, with the index its entry will get
    // (a failed entry ends the parse, so no stale index survives).
    const bool dup = in_meta_ ? std::exchange(seen_meta_, true)
                              : !by_name_->try_emplace(k, tensors_->size()).second;
    cur_ = TensorInfo();
    cur_.name = std::move(k);
    if (dup) return FailTensor(Code::kCorruption, "duplicate name in the header");
    // An empty name cannot be asked for, printed or written back (issue 10 item 17).
    if (!in_meta_ && cur_.name.empty()) return FailTensor(Code::kCorruption, "empty tensor name");
    has_dtype_ = has_shape_ = has_offsets_ = false;
    offsets_.clear();
    return true;
  }
  bool EntryKey(std::string& k) {
    bool* has = nullptr;
    if (in_meta_) {
      if (metadata_->count(k)) return Fail(Status::Corruption("header has a duplicate key '" + k + "'"));
      meta_key_ = std::move(k);
      return true;
    }
    if (k == "dtype")
      field_ = Field::kDtype, has = &has_dtype_;
    else if (k == "shape")
      field_ = Field::kShape, has = &has_shape_;
    else if (k == "data_offsets")
      field_ = Field::kOffsets, has = &has_offsets_;
    else
      return FailTensor(Code::kCorruption, "unknown field '" + k + "'");
    if (std::exchange(*has, true))
      return Fail(Status::Corruption("header has a duplicate key '" + k + "'"));
    return true;
  }
  bool FinishEntry() {
    if (!has_dtype_ || !has_shape_ || !has_offsets_)
      return FailTensor(Code::kCorruption, std::string("missing field '") +
                                               (!has_dtype_   ? "dtype"
                                                : !has_shape_ ? "shape"
                                                              : "data_offsets") +
                                               "'");
    auto dt = ParseDType(dtype_);
    if (!dt) return FailTensor(Code::kUnsupported, "unknown dtype '" + dtype_ + "'");
    cur_.dtype = *dt;
    if (offsets_.size() != 2)
      return FailTensor(Code::kCorruption,
                        "data_offsets is not a pair of non-negative 64-bit integers");
    cur_.data_begin = offsets_[0];
    cur_.data_end = offsets_[1];
    if (Status s = CheckEntry(cur_, data_size_); !s.ok()) return Fail(std::move(s));
    tensors_->push_back(std::move(cur_));
    return true;
  }

  const uint64_t data_size_;
  std::vector<TensorInfo>* tensors_;
  std::map<std::string, size_t, std::less<>>* by_name_;
  std::map<std::string, std::string>* metadata_;
  Status status_;
  size_t depth_ = 0;  // open objects and arrays
  bool in_meta_ = false, seen_meta_ = false;
  Field field_ = Field::kNone;
  std::string meta_key_, dtype_;
  TensorInfo cur_;  // the entry being read
  bool has_dtype_ = false, has_shape_ = false, has_offsets_ = false;
  std::vector<uint64_t> offsets_;
};

// The header is exactly its declared bytes: a JSON object, then only spaces (0x20, the padding
// the format allows). nlohmann's lexer ends its input at a NUL byte, which let "{...}\0garbage"
// through, so NUL is refused before parsing. Returns the JSON text without the padding.
Result<std::string_view> HeaderJsonText(std::span<const std::byte> bytes) {
  std::string_view s(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  if (s.empty() || s.front() != '{')
    return Status::Corruption("header is not a JSON object (it must start with '{')");
  if (size_t nul = s.find('\0'); nul != std::string_view::npos)
    return Status::Corruption("header has a NUL byte at offset " + std::to_string(nul) +
                              " of its " + std::to_string(s.size()) + " bytes");
  const size_t end = s.find_last_not_of(' ') + 1;  // s.front() is '{', so not npos
  if (s[end - 1] != '}')
    return Status::Corruption("header is not valid JSON: it must end with '}', followed only by "
                              "padding spaces (0x20)");
  return s.substr(0, end);
}

}  // namespace

Status SafetensorsFile::ParseHeader(std::span<const std::byte> json_bytes) {
  HCT_ASSIGN_OR_RETURN(std::string_view text, HeaderJsonText(json_bytes));
  const char* first = text.data();
  const char* last = first + text.size();

  HeaderReader reader(file_size_ - data_offset_, &tensors_, &by_name_, &metadata_);
  const bool parsed = ojson::sax_parse(first, last, &reader, nlohmann::json::input_format_t::json,
                                       /*strict=*/true, /*ignore_comments=*/false);
  if (!reader.status().ok()) return reader.status();
  if (!parsed) return Status::Corruption("header is not valid JSON");
  const uint64_t data_size = file_size_ - data_offset_;

  // Coverage: sorted by offset, each tensor must start where the previous one ended.
  data_order_.resize(tensors_.size());
  for (size_t i = 0; i < data_order_.size(); ++i) data_order_[i] = i;
  std::sort(data_order_.begin(), data_order_.end(), [&](size_t a, size_t b) {
    const TensorInfo &x = tensors_[a], &y = tensors_[b];
    if (x.data_begin != y.data_begin) return x.data_begin < y.data_begin;
    if (x.data_end != y.data_end) return x.data_end < y.data_end;
    return a < b;
  });
  uint64_t end = 0;
  const TensorInfo* prev = nullptr;
  for (size_t i : data_order_) {
    const TensorInfo& t = tensors_[i];
    if (t.data_begin < end)
      return TensorError(Code::kCorruption, t.name,
                         "data_offsets " + Range(t.data_begin, t.data_end) + " overlap tensor '" +
                             prev->name + "' " + Range(prev->data_begin, prev->data_end));
    if (t.data_begin > end)
      return TensorError(Code::kCorruption, t.name,
                         "gap of " + std::to_string(t.data_begin - end) +
                             " bytes in the data section before data_offsets " +
                             Range(t.data_begin, t.data_end) +
                             (prev ? " (after tensor '" + prev->name + "')" : std::string()));
    end = t.data_end;
    prev = &t;
  }
  if (end != data_size)
    return Status::Corruption(
        std::to_string(data_size - end) + " bytes after the last tensor in the data section (" +
        std::to_string(data_size) + " bytes, tensors cover " + std::to_string(end) + ")");
  return Status::OK();
}

const TensorInfo* SafetensorsFile::Find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

Status SafetensorsFile::CheckTensorOwned(const TensorInfo& t) const {
  auto it = by_name_.find(t.name);
  if (it == by_name_.end())
    return Status::NotFound(path_ + ": tensor '" + t.name + "' is not in this file");
  const TensorInfo& mine = tensors_[it->second];
  if (mine.data_begin != t.data_begin || mine.data_end != t.data_end)
    return Status::InvalidArgument(path_ + ": tensor '" + t.name +
                                   "' has a different byte range in this file");
  return Status::OK();
}

Result<std::span<const std::byte>> SafetensorsFile::data(const TensorInfo& t) const {
  HCT_RETURN_IF_ERROR(CheckTensorOwned(t));
  if (!base_)
    return Status::InvalidArgument(path_ + ": tensor '" + t.name +
                                   "': opened for pread, no mapped data (use Read)");
  return std::span<const std::byte>(base_ + data_offset_ + t.data_begin, t.num_bytes());
}

Result<std::span<const std::byte>> SafetensorsFile::data_section() const {
  if (!base_) return Status::InvalidArgument(path_ + ": opened for pread, no mapped data");
  return std::span<const std::byte>(base_ + data_offset_, data_size());
}

Status SafetensorsFile::ReadAt(const TensorInfo& t, uint64_t offset,
                               std::span<std::byte> dst) const {
  HCT_RETURN_IF_ERROR(CheckTensorOwned(t));
  if (offset > t.num_bytes() || dst.size() > t.num_bytes() - offset)
    return Status::OutOfRange(path_ + ": tensor '" + t.name + "': read of " +
                              std::to_string(dst.size()) + " bytes at " + std::to_string(offset) +
                              " passes its end (" + std::to_string(t.num_bytes()) + " bytes)");
  const uint64_t at = data_offset_ + t.data_begin + offset;
  if (base_) {
    if (!dst.empty()) std::memcpy(dst.data(), base_ + at, dst.size());
    return Status::OK();
  }
  Status s = backing_->file.ReadAt(at, dst);
  if (!s.ok()) return std::move(s).WithContext("tensor '" + t.name + "'");
  return s;
}

Status SafetensorsFile::Read(const TensorInfo& t, std::span<std::byte> dst) const {
  if (dst.size() != t.num_bytes())
    return Status::InvalidArgument(path_ + ": tensor '" + t.name + "': buffer of " +
                                   std::to_string(dst.size()) + " bytes for " +
                                   std::to_string(t.num_bytes()) + " bytes of data");
  return ReadAt(t, 0, dst);
}

}  // namespace hct
