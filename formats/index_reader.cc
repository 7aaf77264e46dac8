// HCT index JSON reader (formats/detail/index_reader.h): nlohmann's SAX events go straight
// into TensorEntry values, with no JSON tree of the index.
//
// Why: a 100k-tensor index (29 MB) parsed into an nlohmann tree and then copied field by field
// took 70% of `hct-convert decode` (issue 10 item 7): several allocations per JSON value, then
// freeing them all. Here the work per tensor is the lexing plus the allocations TensorEntry
// itself needs (shape, chunks, codec_params).
//
// The checks and their messages are those of the tree reader this replaces, in the same order
// (docs/hct-format.md section 4): required members and their types, then ValidateTensor, then
// the unique name. Errors are kept, not returned at once, so that precedence stays that of a
// reader that parses everything first: invalid JSON anywhere wins over a root that is not an
// object, which wins over the root's metadata, then a missing `tensors`, then the first bad
// tensor in file order. One rule is new: a member the reader interprets may appear only once
// in its object (a tree kept the last one silently).
#include "formats/detail/index_reader.h"

#include <algorithm>
#include <exception>
#include <iterator>
#include <new>
#include <optional>
#include <nlohmann/json.hpp>
#include <utility>

#include "formats/detail/container_format.h"

namespace hct::detail {
namespace {

using nlohmann::json;

Status Missing(std::string_view field) {
  return Status::Corruption("missing required field '" + std::string(field) + "'");
}
Status WrongType(std::string_view field, std::string_view want) {
  return Status::Corruption("field '" + std::string(field) + "' is not " + std::string(want));
}
Status Duplicate(std::string_view field) {
  return Status::Corruption("duplicate member '" + std::string(field) + "'");
}

// How one member was found.
enum class Got : uint8_t { kAbsent, kOk, kWrong, kWrongItem };

// Members of a tensor and of a chunk, in the order their checks run.
constexpr std::string_view kTensorFields[] = {"name",         "dtype",        "shape",
                                              "codec",        "codec_params", "decoded_size",
                                              "decoded_xxh3", "metadata",     "chunks"};
enum : uint8_t { kName, kDtype, kShape, kCodec, kParams, kDecSize, kDecXxh3, kMeta, kChunks };
constexpr std::string_view kChunkFields[] = {"offset",       "stored_size", "xxh3",
                                             "decoded_size", "decoded_xxh3", "elem_offset",
                                             "elem_count"};
enum : uint8_t { kOffset, kStored, kXxh3, kCDecSize, kCDecXxh3, kElemOffset, kElemCount };
constexpr uint8_t kUnknown = 255;

template <size_t N>
uint8_t FieldIndex(const std::string_view (&names)[N], std::string_view k) {
  for (size_t i = 0; i < N; ++i)
    if (names[i] == k) return static_cast<uint8_t>(i);
  return kUnknown;
}

// An object of strings (root and tensor `metadata`), filled as it is read.
struct StringMap {
  std::map<std::string, std::string>* out = nullptr;
  Got got = Got::kAbsent;
  std::string key;      // of the value being read
  std::string bad_key;  // smallest key whose value is not a string, as a sorted tree reports
  std::string dup_key;  // first repeated key

  void Reset(std::map<std::string, std::string>* m) {
    out = m;
    got = Got::kAbsent;
    bad_key.clear();
    dup_key.clear();
  }
  void Key(std::string& k) {
    if (dup_key.empty() && out->count(k)) dup_key = k;
    key = std::move(k);
  }
  void Value(std::string& v) { out->emplace(key, std::move(v)); }
  void NotAString() {
    if (bad_key.empty() || key < bad_key) bad_key = key;
  }
  Status Check(std::string_view field) const {
    if (got == Got::kWrong) return WrongType(field, "an object");
    if (!dup_key.empty()) return Duplicate(std::string(field) + "." + dup_key);
    if (!bad_key.empty()) return WrongType(std::string(field) + "." + bad_key, "a string");
    return Status::OK();
  }
};

// A JSON value built from SAX events (codec_params, the one free-form member).
class ValueBuilder {
 public:
  bool active() const { return !stack_.empty(); }
  void Begin(json* root, bool object) {
    *root = object ? json::object() : json::array();
    stack_.assign(1, root);
  }
  void Clear() { dup_key_.clear(); }
  void Put(json&& v) { (void)Insert(std::move(v)); }
  void Open(bool object) { stack_.push_back(Insert(object ? json::object() : json::array())); }
  void Close() { stack_.pop_back(); }
  void Key(std::string& k) { key_ = std::move(k); }
  const std::string& dup_key() const { return dup_key_; }

 private:
  // The parent is never appended to while a child is open, so the pointers stay valid.
  json* Insert(json&& v) {
    json& top = *stack_.back();
    if (top.is_array()) {
      top.push_back(std::move(v));
      return &top.back();
    }
    auto [it, inserted] = top.get_ref<json::object_t&>().try_emplace(key_, std::move(v));
    if (!inserted && dup_key_.empty()) dup_key_ = key_;
    return &it->second;
  }
  std::vector<json*> stack_;
  std::string key_;
  std::string dup_key_;
};

class IndexReader {
 public:
  IndexReader(uint64_t index_offset, std::map<std::string, std::string>* metadata,
              std::vector<TensorEntry>* tensors, std::unordered_map<std::string, size_t>* by_name)
      : index_offset_(index_offset), tensors_(tensors), by_name_(by_name) {
    root_meta_.Reset(metadata);
  }
  Status Result(bool parsed) const;

  // SAX interface.
  bool null() { return Scalar(json(nullptr)); }
  bool boolean(bool v) { return Scalar(json(v)); }
  bool number_integer(json::number_integer_t v) { return Scalar(json(v)); }
  bool number_float(json::number_float_t v, const std::string&) { return Scalar(json(v)); }
  bool binary(json::binary_t&) { return Scalar(json()); }
  bool number_unsigned(json::number_unsigned_t v);
  bool string(std::string& v);
  bool start_object(std::size_t) { return Open(true); }
  bool start_array(std::size_t) { return Open(false); }
  bool end_object() { return Close(); }
  bool end_array() { return Close(); }
  bool key(std::string& k);
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) {
    json_error_ = Status::Corruption(std::string("index is not valid JSON: ") + ex.what());
    return false;
  }

 private:
  enum class Ctx : uint8_t { kRoot, kRootMeta, kTensors, kTensor, kShape, kTensorMeta, kChunks,
                             kChunk };
  // Where the next value goes.
  enum class Slot : uint8_t { kIgnore, kRootValue, kRootMeta, kRootTensors, kTensorElem,
                              kTensorField, kShapeItem, kMapValue, kChunkElem, kChunkField };

  Slot Target() const;
  bool Scalar(json&& v);  // any value that is not a string, an unsigned integer or a container
  void Wrong(Slot s);
  bool Open(bool object);
  bool Close();
  StringMap& Map() { return ctx_.back() == Ctx::kRootMeta ? root_meta_ : tensor_meta_; }
  void BeginTensor();
  void FinishTensor();
  Status CheckTensor();
  Status CheckFields();
  Status CheckChunk(size_t i);

  const uint64_t index_offset_;
  std::vector<TensorEntry>* tensors_;
  std::unordered_map<std::string, size_t>* by_name_;

  std::vector<Ctx> ctx_;  // open objects and arrays the reader interprets
  size_t skip_ = 0;       // depth inside a value that is ignored (unknown or already wrong)
  ValueBuilder params_;   // inside codec_params when active
  uint8_t field_ = kUnknown;  // member of the innermost object whose value comes next

  Status json_error_;
  bool root_not_object_ = false;
  uint32_t root_seen_ = 0;  // bit 0 metadata, bit 1 tensors
  Status root_error_;
  StringMap root_meta_;
  Got tensors_got_ = Got::kAbsent;
  Status tensor_error_;  // the first bad tensor's
  size_t tensor_index_ = 0;

  // The tensor being read.
  TensorEntry cur_;
  json cur_params_;  // codec_params as read; stored in cur_ as text once the tensor is checked
  Got got_[std::size(kTensorFields)] = {};
  uint8_t dup_ = kUnknown;
  std::string dtype_;
  StringMap tensor_meta_;
  struct ChunkGot {
    bool object = true;
    uint8_t dup = kUnknown;
    Got got[std::size(kChunkFields)] = {};
  };
  std::vector<ChunkGot> chunk_got_;  // one per element of `chunks`
};

IndexReader::Slot IndexReader::Target() const {
  if (skip_) return Slot::kIgnore;
  if (ctx_.empty()) return Slot::kRootValue;
  switch (ctx_.back()) {
    case Ctx::kRoot:
      return field_ == 0 ? Slot::kRootMeta : field_ == 1 ? Slot::kRootTensors : Slot::kIgnore;
    case Ctx::kRootMeta:
    case Ctx::kTensorMeta:
      return Slot::kMapValue;
    case Ctx::kTensors:
      return tensor_error_.ok() ? Slot::kTensorElem : Slot::kIgnore;  // the first error stands
    case Ctx::kTensor:
      return field_ == kUnknown ? Slot::kIgnore : Slot::kTensorField;
    case Ctx::kShape:
      return Slot::kShapeItem;
    case Ctx::kChunks:
      return Slot::kChunkElem;
    case Ctx::kChunk:
      return field_ == kUnknown ? Slot::kIgnore : Slot::kChunkField;
  }
  return Slot::kIgnore;
}

void IndexReader::Wrong(Slot s) {
  switch (s) {
    case Slot::kIgnore: break;
    case Slot::kRootValue: root_not_object_ = true; break;
    case Slot::kRootMeta: root_meta_.got = Got::kWrong; break;
    case Slot::kRootTensors: tensors_got_ = Got::kWrong; break;
    case Slot::kTensorElem:
      tensor_error_ =
          Status::Corruption("tensor entry " + std::to_string(tensor_index_++) + " is not an object");
      break;
    case Slot::kTensorField: got_[field_] = Got::kWrong; break;
    case Slot::kShapeItem: got_[kShape] = Got::kWrongItem; break;
    case Slot::kMapValue: Map().NotAString(); break;
    case Slot::kChunkElem:
      chunk_got_.emplace_back().object = false;
      cur_.chunks.emplace_back();
      break;
    case Slot::kChunkField: chunk_got_.back().got[field_] = Got::kWrong; break;
  }
}

bool IndexReader::Scalar(json&& v) {
  if (!skip_ && params_.active()) {
    params_.Put(std::move(v));
    return true;
  }
  Wrong(Target());
  return true;
}

bool IndexReader::number_unsigned(json::number_unsigned_t v) {
  if (!skip_ && params_.active()) return Scalar(json(v));
  const Slot s = Target();
  uint64_t* dst = nullptr;
  if (s == Slot::kTensorField && field_ == kDecSize) {
    dst = &cur_.decoded_size;
  } else if (s == Slot::kShapeItem) {
    cur_.shape.push_back(v);
    return true;
  } else if (s == Slot::kChunkField && field_ != kXxh3 && field_ != kCDecXxh3) {
    ChunkEntry& c = cur_.chunks.back();
    dst = field_ == kOffset       ? &c.offset
          : field_ == kStored     ? &c.stored_size
          : field_ == kCDecSize   ? &c.decoded_size
          : field_ == kElemOffset ? &c.elem_offset
                                  : &c.elem_count;
  }
  if (!dst) {
    Wrong(s);
    return true;
  }
  *dst = v;
  (s == Slot::kTensorField ? got_[field_] : chunk_got_.back().got[field_]) = Got::kOk;
  return true;
}

bool IndexReader::string(std::string& v) {
  if (!skip_ && params_.active()) return Scalar(json(std::move(v)));
  const Slot s = Target();
  if (s == Slot::kMapValue) {
    Map().Value(v);
    return true;
  }
  Got* got = nullptr;
  uint64_t* hex = nullptr;
  if (s == Slot::kTensorField) {
    got = &got_[field_];
    if (field_ == kName) cur_.name = std::move(v);
    else if (field_ == kDtype) dtype_ = std::move(v);
    else if (field_ == kCodec) cur_.codec = std::move(v);
    else if (field_ == kDecXxh3) hex = &cur_.decoded_xxh3;
    else got = nullptr;
  } else if (s == Slot::kChunkField && (field_ == kXxh3 || field_ == kCDecXxh3)) {
    got = &chunk_got_.back().got[field_];
    ChunkEntry& c = cur_.chunks.back();
    hex = field_ == kXxh3 ? &c.xxh3 : &c.decoded_xxh3;
  }
  if (!got) {
    Wrong(s);
    return true;
  }
  *got = !hex || ParseHex64(v, hex) ? Got::kOk : Got::kWrong;
  return true;
}

bool IndexReader::Open(bool object) {
  if (skip_) {
    ++skip_;
    return true;
  }
  if (params_.active()) {
    params_.Open(object);
    return true;
  }
  const Slot s = Target();
  Ctx next = Ctx::kRoot;
  bool fits = false;
  if (object) {
    if (s == Slot::kRootValue) {
      next = Ctx::kRoot, fits = true;
    } else if (s == Slot::kRootMeta) {
      next = Ctx::kRootMeta, fits = true;
      root_meta_.got = Got::kOk;
    } else if (s == Slot::kTensorElem) {
      next = Ctx::kTensor, fits = true;
      BeginTensor();
    } else if (s == Slot::kTensorField && field_ == kParams) {
      got_[kParams] = Got::kOk;
      params_.Begin(&cur_params_, true);
      return true;
    } else if (s == Slot::kTensorField && field_ == kMeta) {
      next = Ctx::kTensorMeta, fits = true;
      got_[kMeta] = tensor_meta_.got = Got::kOk;
    } else if (s == Slot::kChunkElem) {
      next = Ctx::kChunk, fits = true;
      chunk_got_.emplace_back();
      cur_.chunks.emplace_back();
    }
  } else if (s == Slot::kRootTensors) {
    next = Ctx::kTensors, fits = true;
    tensors_got_ = Got::kOk;
  } else if (s == Slot::kTensorField && (field_ == kShape || field_ == kChunks)) {
    next = field_ == kShape ? Ctx::kShape : Ctx::kChunks, fits = true;
    got_[field_] = Got::kOk;
  }
  if (!fits) {
    Wrong(s);
    ++skip_;
    return true;
  }
  ctx_.push_back(next);
  field_ = kUnknown;
  return true;
}

bool IndexReader::Close() {
  if (skip_) {
    --skip_;
    return true;
  }
  if (params_.active()) {
    params_.Close();
    return true;
  }
  const Ctx c = ctx_.back();
  ctx_.pop_back();
  if (c == Ctx::kTensor) FinishTensor();
  return true;
}

bool IndexReader::key(std::string& k) {
  if (skip_) return true;
  if (params_.active()) {
    params_.Key(k);
    return true;
  }
  switch (ctx_.back()) {
    case Ctx::kRoot: {
      field_ = k == "metadata" ? 0 : k == "tensors" ? 1 : kUnknown;
      if (field_ != kUnknown && (root_seen_ & (1u << field_)) && root_error_.ok())
        root_error_ = Duplicate(k);
      if (field_ != kUnknown) root_seen_ |= 1u << field_;
      break;
    }
    case Ctx::kRootMeta:
    case Ctx::kTensorMeta:
      Map().Key(k);
      break;
    case Ctx::kTensor:
      field_ = FieldIndex(kTensorFields, k);
      if (field_ != kUnknown && got_[field_] != Got::kAbsent && dup_ == kUnknown) dup_ = field_;
      break;
    case Ctx::kChunk: {
      field_ = FieldIndex(kChunkFields, k);
      ChunkGot& g = chunk_got_.back();
      if (field_ != kUnknown && g.got[field_] != Got::kAbsent && g.dup == kUnknown) g.dup = field_;
      break;
    }
    default:
      break;  // arrays have no keys
  }
  return true;
}

void IndexReader::BeginTensor() {
  cur_ = TensorEntry();
  std::fill(std::begin(got_), std::end(got_), Got::kAbsent);
  dup_ = kUnknown;
  dtype_.clear();
  tensor_meta_.Reset(&cur_.metadata);
  cur_params_ = json();
  params_.Clear();
  chunk_got_.clear();
}

void IndexReader::FinishTensor() {
  const size_t i = tensor_index_++;
  Status s;
  if (dup_ != kUnknown) {
    s = Duplicate(kTensorFields[dup_]).WithContext("tensor " + std::to_string(i));
  } else if (got_[kName] != Got::kOk) {
    s = (got_[kName] == Got::kAbsent ? Missing("name") : WrongType("name", "a string"))
            .WithContext("tensor " + std::to_string(i));
  } else if (s = CheckTensor(); s.ok()) {
    // Entered before the move: the name is the map's key, the entry keeps its own copy.
    if (!by_name_->emplace(cur_.name, tensors_->size()).second)
      s = Status::Corruption("duplicate tensor name '" + cur_.name + "'");
    else
      tensors_->push_back(std::move(cur_));
  }
  if (!s.ok()) tensor_error_ = std::move(s);
}

// Rules 6-8 of the format's section 4 for the tensor just read (its name is known).
// Contexts are made only for an error: a string per tensor was a visible part of the time.
Status IndexReader::CheckTensor() {
  Status s = CheckFields();
  if (s.ok()) {
    // Product overflow is ValidateTensor's to report; here it only needs a defined value.
    uint64_t n = 1;
    for (uint64_t d : cur_.shape) n = (d != 0 && n > UINT64_MAX / d) ? 0 : n * d;
    cur_.num_elements = n;
    s = ValidateTensor(cur_, index_offset_);
  }
  if (!s.ok()) return std::move(s).WithContext("tensor '" + cur_.name + "'");
  return s;
}

// Presence and types, in the order of the table in section 2.2.
Status IndexReader::CheckFields() {
  auto need = [&](uint8_t f, std::string_view want) {
    if (got_[f] == Got::kAbsent) return Missing(kTensorFields[f]);
    if (got_[f] != Got::kOk) return WrongType(kTensorFields[f], want);
    return Status::OK();
  };
  HCT_RETURN_IF_ERROR(need(kDtype, "a string"));
  std::optional<DType> dt = ParseDType(dtype_);
  if (!dt) return Status::Unsupported("unknown dtype '" + dtype_ + "'");
  cur_.dtype = *dt;
  if (got_[kShape] == Got::kWrongItem)
    return WrongType("shape", "an array of non-negative integers");
  HCT_RETURN_IF_ERROR(need(kShape, "an array"));
  HCT_RETURN_IF_ERROR(need(kCodec, "a string"));
  HCT_RETURN_IF_ERROR(need(kParams, "an object"));
  if (!params_.dup_key().empty()) return Duplicate("codec_params." + params_.dup_key());
  cur_.codec_params = cur_params_.dump();
  HCT_RETURN_IF_ERROR(need(kDecSize, "a non-negative integer"));
  HCT_RETURN_IF_ERROR(need(kDecXxh3, "16 lowercase hex digits"));
  if (got_[kMeta] == Got::kWrong) return WrongType("metadata", "an object");
  HCT_RETURN_IF_ERROR(tensor_meta_.Check("metadata"));
  HCT_RETURN_IF_ERROR(need(kChunks, "an array"));
  for (size_t i = 0; i < cur_.chunks.size(); ++i)
    if (Status s = CheckChunk(i); !s.ok()) return std::move(s).WithContext("chunk " + std::to_string(i));
  return Status::OK();
}

Status IndexReader::CheckChunk(size_t i) {
  const ChunkGot& g = chunk_got_[i];
  if (!g.object) return Status::Corruption("chunk entry is not an object");
  if (g.dup != kUnknown) return Duplicate(kChunkFields[g.dup]);
  for (uint8_t f = 0; f < std::size(kChunkFields); ++f) {
    if (g.got[f] == Got::kAbsent) return Missing(kChunkFields[f]);
    if (g.got[f] != Got::kOk)
      return WrongType(kChunkFields[f], f == kXxh3 || f == kCDecXxh3 ? "16 lowercase hex digits"
                                                                     : "a non-negative integer");
  }
  return Status::OK();
}

Status IndexReader::Result(bool parsed) const {
  if (!json_error_.ok()) return json_error_;
  if (!parsed) return Status::Corruption("index is not valid JSON");
  if (root_not_object_) return Status::Corruption("index is not a JSON object");
  if (!root_error_.ok()) return root_error_;
  HCT_RETURN_IF_ERROR(root_meta_.Check("metadata"));
  if (tensors_got_ == Got::kAbsent) return Missing("tensors");
  if (tensors_got_ != Got::kOk) return WrongType("tensors", "an array");
  return tensor_error_;
}

}  // namespace

Status ReadHctIndex(std::string_view text, uint64_t index_offset,
                    std::map<std::string, std::string>* metadata,
                    std::vector<TensorEntry>* tensors,
                    std::unordered_map<std::string, size_t>* by_name) {
  IndexReader reader(index_offset, metadata, tensors, by_name);
  bool parsed = false;
  try {
    parsed = json::sax_parse(text.data(), text.data() + text.size(), &reader,
                             json::input_format_t::json, /*strict=*/true,
                             /*ignore_comments=*/false);
  } catch (const std::bad_alloc&) {
    throw;  // the tools turn it into their out-of-memory exit
  } catch (const std::exception& e) {  // defensive: nothing above should throw otherwise
    return Status::Corruption(std::string("malformed index: ") + e.what());
  }
  return reader.Result(parsed);
}

}  // namespace hct::detail
