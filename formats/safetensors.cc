// Safetensors reader: header parsing and complete validation (see hct/safetensors.h).
#include "hct/safetensors.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "hct/detail/file.h"

namespace hct {
namespace {

// A sorted (std::map) tree: nlohmann::ordered_json finds and inserts keys by linear search,
// which made parsing quadratic in the number of tensors (a 10 MB header took 23 s). Header order
// is recorded separately from the parser's key events.
using ojson = nlohmann::json;

// Deeper JSON than this cannot be a valid header (object > tensor > shape array); refusing it
// early keeps a hostile header from building a deep tree.
constexpr int kMaxJsonDepth = 8;

struct JsonTooDeep {};

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

// Reads a JSON array of unsigned integers (shape, data_offsets).
bool ReadU64Array(const ojson& j, std::vector<uint64_t>* out) {
  if (!j.is_array()) return false;
  out->clear();
  out->reserve(j.size());
  for (const ojson& v : j) {
    if (!v.is_number_unsigned()) return false;
    out->push_back(v.get<uint64_t>());
  }
  return true;
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

// Builds the JSON tree through nlohmann's plain DOM builder and adds what the header needs: a
// depth limit (a hostile header cannot build a deep tree), duplicate keys (nlohmann keeps one
// silently) and the order of the root keys (the tree is sorted). Not nlohmann's parser
// callback: its DOM builder rescans the parent object after every object ends, which is
// quadratic in the number of tensors (a 10 MB header took minutes).
class HeaderSax {
 public:
  explicit HeaderSax(ojson& root) : root_(root), dom_(root, /*allow_exceptions=*/true) {}

  const std::vector<std::string>& order() const { return order_; }
  int duplicate_depth() const { return duplicate_depth_; }  // -1: none
  const std::string& duplicate() const { return duplicate_; }

  bool null() { return dom_.null(); }
  bool boolean(bool v) { return dom_.boolean(v); }
  bool number_integer(ojson::number_integer_t v) { return dom_.number_integer(v); }
  bool number_unsigned(ojson::number_unsigned_t v) { return dom_.number_unsigned(v); }
  bool number_float(ojson::number_float_t v, const std::string& s) {
    return dom_.number_float(v, s);
  }
  bool string(std::string& v) { return dom_.string(v); }
  bool binary(ojson::binary_t& v) { return dom_.binary(v); }
  bool start_object(std::size_t n) {
    Open();
    keys_.emplace_back();
    return dom_.start_object(n);
  }
  bool key(std::string& k) {
    // Root keys (one per tensor) are looked up in the tree itself rather than copied.
    const bool dup = depth_ == 1 ? root_.contains(k) : !keys_.back().insert(k).second;
    if (dup && duplicate_depth_ < 0) {
      duplicate_ = k;
      duplicate_depth_ = static_cast<int>(depth_);
    }
    if (depth_ == 1) order_.push_back(k);
    return dom_.key(k);
  }
  bool end_object() {
    keys_.pop_back();
    --depth_;
    return dom_.end_object();
  }
  bool start_array(std::size_t n) {
    Open();
    return dom_.start_array(n);
  }
  bool end_array() {
    --depth_;
    return dom_.end_array();
  }
  bool parse_error(std::size_t pos, const std::string& token,
                   const nlohmann::detail::exception& ex) {
    return dom_.parse_error(pos, token, ex);  // throws ex
  }

 private:
  void Open() {
    if (depth_ >= kMaxJsonDepth) throw JsonTooDeep{};
    ++depth_;
  }

  const ojson& root_;
  nlohmann::detail::json_sax_dom_parser<ojson> dom_;
  size_t depth_ = 0;                        // open objects and arrays
  std::vector<std::set<std::string>> keys_;  // keys of each open object
  std::vector<std::string> order_;          // root keys in header order
  std::string duplicate_;
  int duplicate_depth_ = -1;
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

  ojson root;
  HeaderSax sax(root);
  try {
    ojson::sax_parse(first, last, &sax, nlohmann::json::input_format_t::json, /*strict=*/true,
                     /*ignore_comments=*/false);
  } catch (const JsonTooDeep&) {
    return Status::Corruption("header JSON nests deeper than " + std::to_string(kMaxJsonDepth) +
                              " levels");
  } catch (const std::exception& e) {
    return Status::Corruption(std::string("header is not valid JSON: ") + e.what());
  }
  if (sax.duplicate_depth() == 1)
    return TensorError(Code::kCorruption, sax.duplicate(), "duplicate name in the header");
  if (sax.duplicate_depth() >= 0)
    return Status::Corruption("header has a duplicate key '" + sax.duplicate() + "'");
  if (!root.is_object()) return Status::Corruption("header is not a JSON object");

  const uint64_t data_size = file_size_ - data_offset_;
  tensors_.reserve(root.size());
  for (const std::string& name : sax.order()) {
    const ojson& v = root.find(name).value();
    if (name == "__metadata__") {
      if (!v.is_object()) return Status::Corruption("__metadata__ is not a JSON object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          return Status::Corruption("__metadata__ value of '" + m.key() + "' is a " +
                                    m.value().type_name() + ", not a string");
        metadata_.emplace(m.key(), m.value().get<std::string>());
      }
      continue;
    }
    if (!v.is_object()) return TensorError(Code::kCorruption, name, "entry is not a JSON object");
    TensorInfo t;
    t.name = name;
    const ojson *dtype = nullptr, *shape = nullptr, *offsets = nullptr;
    for (auto f = v.begin(); f != v.end(); ++f) {
      if (f.key() == "dtype")
        dtype = &f.value();
      else if (f.key() == "shape")
        shape = &f.value();
      else if (f.key() == "data_offsets")
        offsets = &f.value();
      else
        return TensorError(Code::kCorruption, name, "unknown field '" + f.key() + "'");
    }
    if (!dtype || !shape || !offsets)
      return TensorError(Code::kCorruption, name,
                         std::string("missing field '") +
                             (!dtype   ? "dtype"
                              : !shape ? "shape"
                                       : "data_offsets") +
                             "'");
    if (!dtype->is_string()) return TensorError(Code::kCorruption, name, "dtype is not a string");
    auto dt = ParseDType(dtype->get<std::string>());
    if (!dt)
      return TensorError(Code::kUnsupported, name,
                         "unknown dtype '" + dtype->get<std::string>() + "'");
    t.dtype = *dt;
    if (!ReadU64Array(*shape, &t.shape))
      return TensorError(Code::kCorruption, name,
                         "shape is not an array of non-negative 64-bit integers");
    std::vector<uint64_t> off;
    if (!ReadU64Array(*offsets, &off) || off.size() != 2)
      return TensorError(Code::kCorruption, name,
                         "data_offsets is not a pair of non-negative 64-bit integers");
    t.data_begin = off[0];
    t.data_end = off[1];
    const std::string shape_s = ShapeString(t.shape);
    const std::string dtype_s(DTypeName(t.dtype));
    auto count = ElementCount(t.shape);
    if (!count)
      return TensorError(Code::kOutOfRange, name,
                         "shape " + shape_s + " has more than 2^64 elements");
    const uint64_t bits = static_cast<uint64_t>(DTypeBits(t.dtype));
    if (*count > UINT64_MAX / bits)
      return TensorError(Code::kOutOfRange, name,
                         "shape " + shape_s + " x " + dtype_s + " overflows 64 bits");
    if (*count * bits % 8 != 0)
      return TensorError(Code::kCorruption, name,
                         "shape " + shape_s + " x " + dtype_s + " is " +
                             std::to_string(*count * bits) + " bits, not whole bytes");
    const uint64_t bytes = *count * bits / 8;
    if (t.data_end < t.data_begin)
      return TensorError(
          Code::kCorruption, name,
          "data_offsets " + Range(t.data_begin, t.data_end) + " end before they begin");
    if (t.data_end - t.data_begin != bytes)
      return TensorError(Code::kCorruption, name,
                         "data_offsets " + Range(t.data_begin, t.data_end) +
                             " do not match shape " + shape_s + " x " + dtype_s + " = " +
                             std::to_string(bytes) + " bytes");
    if (t.data_end > data_size)
      return TensorError(Code::kOutOfRange, name,
                         "data_offsets " + Range(t.data_begin, t.data_end) +
                             " pass the end of the data section (" + std::to_string(data_size) +
                             " bytes; truncated?)");
    by_name_.emplace(name, tensors_.size());
    tensors_.push_back(std::move(t));
  }

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
  return backing_->file.ReadAt(at, dst).WithContext("tensor '" + t.name + "'");
}

Status SafetensorsFile::Read(const TensorInfo& t, std::span<std::byte> dst) const {
  if (dst.size() != t.num_bytes())
    return Status::InvalidArgument(path_ + ": tensor '" + t.name + "': buffer of " +
                                   std::to_string(dst.size()) + " bytes for " +
                                   std::to_string(t.num_bytes()) + " bytes of data");
  return ReadAt(t, 0, dst);
}

}  // namespace hct
