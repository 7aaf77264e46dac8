// Safetensors writer: streaming, atomic (temp file + rename), header padded for alignment.
#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "hct/detail/file.h"
#include "hct/safetensors.h"

namespace hct {

struct SafetensorsWriter::Impl {
  SafetensorsWriterOptions options;
  detail::AtomicFile file;
  std::vector<TensorInfo> tensors;
  std::set<std::string, std::less<>> names;
  std::map<std::string, std::string> metadata;
  // Small appends are gathered here: a model of 100k small tensors made 100k write calls.
  std::vector<std::byte> pending;
  uint64_t total = 0;    // declared data bytes
  uint64_t written = 0;  // data bytes appended so far
  size_t next = 0;       // index of the tensor the next appended byte belongs to
  bool header_done = false;
  bool finished = false;

  Status Flush() {
    if (pending.empty()) return Status::OK();
    Status s = file.Append(pending);
    pending.clear();
    return s;
  }
};

SafetensorsWriter::SafetensorsWriter() = default;
SafetensorsWriter::SafetensorsWriter(SafetensorsWriter&&) noexcept = default;
SafetensorsWriter& SafetensorsWriter::operator=(SafetensorsWriter&&) noexcept = default;
SafetensorsWriter::~SafetensorsWriter() = default;

Result<SafetensorsWriter> SafetensorsWriter::Create(const std::string& path,
                                                    SafetensorsWriterOptions options) {
  const uint64_t a = options.data_alignment;
  if (a < 8 || (a & (a - 1)) != 0 || a > (uint64_t{1} << 30))
    return Status::InvalidArgument(path + ": data_alignment " + std::to_string(a) +
                                   " is not a power of two in [8, 2^30]");
  SafetensorsWriter w;
  w.impl_ = std::make_unique<Impl>();
  w.impl_->options = options;
  HCT_ASSIGN_OR_RETURN(w.impl_->file, detail::AtomicFile::Create(path, options.overwrite));
  return w;
}

const std::string& SafetensorsWriter::path() const { return impl_->file.path(); }
const std::vector<TensorInfo>& SafetensorsWriter::tensors() const { return impl_->tensors; }

Status SafetensorsWriter::SetMetadata(std::string key, std::string value) {
  if (!impl_) return Status::InvalidArgument("SafetensorsWriter: not created");
  if (impl_->header_done)
    return Status::InvalidArgument(path() + ": metadata '" + key + "' set after data was written");
  impl_->metadata[std::move(key)] = std::move(value);
  return Status::OK();
}

Status SafetensorsWriter::Declare(std::string name, DType dtype, std::vector<uint64_t> shape) {
  if (!impl_) return Status::InvalidArgument("SafetensorsWriter: not created");
  Impl& m = *impl_;
  auto fail = [&](Code c, const std::string& msg) {
    return Status(c, path() + ": tensor '" + name + "': " + msg);
  };
  if (m.header_done) return fail(Code::kInvalidArgument, "declared after data was written");
  if (name == "__metadata__") return fail(Code::kInvalidArgument, "reserved name");
  if (m.names.find(name) != m.names.end()) return fail(Code::kInvalidArgument, "declared twice");
  auto count = ElementCount(shape);
  if (!count)
    return fail(Code::kOutOfRange, "shape " + ShapeString(shape) + " has more than 2^64 elements");
  const uint64_t bits = static_cast<uint64_t>(DTypeBits(dtype));
  if (*count > UINT64_MAX / bits)
    return fail(Code::kOutOfRange, "shape " + ShapeString(shape) + " x " +
                                       std::string(DTypeName(dtype)) + " overflows 64 bits");
  if (*count * bits % 8 != 0)
    return fail(Code::kInvalidArgument, "shape " + ShapeString(shape) + " x " +
                                            std::string(DTypeName(dtype)) +
                                            " is not a whole number of bytes");
  const uint64_t bytes = *count * bits / 8;
  if (bytes > UINT64_MAX - m.total)
    return fail(Code::kOutOfRange, "total data size overflows 64 bits");
  TensorInfo t;
  t.name = name;  // copied: the set keeps the original
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.data_begin = m.total;
  t.data_end = m.total + bytes;
  m.total = t.data_end;
  m.names.insert(m.names.end(), std::move(name));  // constant time for names in sorted order
  m.tensors.push_back(std::move(t));
  return Status::OK();
}

namespace {

constexpr size_t kPendingBytes = size_t{1} << 20;

// A JSON string: as is when it needs no escaping (printable ASCII without '"' and '\\', the
// names of real checkpoints), else through nlohmann, which escapes and refuses invalid UTF-8.
void AppendJsonString(std::string& out, std::string_view s) {
  const bool plain = std::all_of(s.begin(), s.end(), [](char c) {
    return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
  });
  if (!plain) {
    out += nlohmann::json(s).dump();
    return;
  }
  out += '"';
  out += s;
  out += '"';
}

// Compact JSON of the header in declaration order, "__metadata__" first as the reference writer
// does. Written as text: an ordered_json tree inserts each key by linear search, which made
// headers of many tensors quadratic. nlohmann still escapes each string (and throws on invalid
// UTF-8).
std::string HeaderJson(const std::map<std::string, std::string>& metadata,
                       const std::vector<TensorInfo>& tensors) {
  using nlohmann::json;
  std::string out = "{";
  if (!metadata.empty()) out += "\"__metadata__\":" + json(metadata).dump();
  for (const TensorInfo& t : tensors) {
    if (out.size() > 1) out += ',';
    AppendJsonString(out, t.name);
    out += ":{\"dtype\":\"";
    out += DTypeName(t.dtype);
    out += "\",\"shape\":[";
    for (size_t i = 0; i < t.shape.size(); ++i) {
      if (i) out += ',';
      out += std::to_string(t.shape[i]);
    }
    out += "],\"data_offsets\":[";
    out += std::to_string(t.data_begin);
    out += ',';
    out += std::to_string(t.data_end);
    out += "]}";
  }
  return out + "}";
}

}  // namespace

Status SafetensorsWriter::WriteHeader() {
  Impl& m = *impl_;
  std::string json;
  try {
    json = HeaderJson(m.metadata, m.tensors);  // throws on names or metadata not valid UTF-8
  } catch (const std::exception& e) {
    return Status::InvalidArgument(path() + ": header: " + e.what());
  }
  // Pad with spaces (valid JSON whitespace) so the data section starts aligned.
  const uint64_t a = m.options.data_alignment;
  const uint64_t unpadded = 8 + json.size();
  json.append((a - unpadded % a) % a, ' ');
  if (json.size() > kSafetensorsMaxHeaderBytes)
    return Status::InvalidArgument(path() + ": header of " + std::to_string(json.size()) +
                                   " bytes exceeds the safetensors limit");
  std::byte len[8];
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<std::byte>((n >> (8 * i)) & 0xff);
  HCT_RETURN_IF_ERROR(m.file.Append(len, sizeof len));
  HCT_RETURN_IF_ERROR(m.file.Append(json.data(), json.size()));
  m.header_done = true;
  return Status::OK();
}


Status SafetensorsWriter::Append(std::span<const std::byte> bytes) {
  if (!impl_) return Status::InvalidArgument("SafetensorsWriter: not created");
  Impl& m = *impl_;
  if (m.finished) return Status::InvalidArgument(path() + ": append after Finish");
  if (!m.header_done) HCT_RETURN_IF_ERROR(WriteHeader());
  if (bytes.size() > m.total - m.written)
    return Status::OutOfRange(path() + ": appending " + std::to_string(bytes.size()) +
                              " bytes passes the declared data size (" + std::to_string(m.total) +
                              " bytes, " + std::to_string(m.written) + " written)");
  const bool large = bytes.size() >= kPendingBytes / 2;
  if (large || m.pending.size() + bytes.size() > kPendingBytes) HCT_RETURN_IF_ERROR(m.Flush());
  if (large)
    HCT_RETURN_IF_ERROR(m.file.Append(bytes));  // straight from the caller's buffer, in order
  else
    m.pending.insert(m.pending.end(), bytes.begin(), bytes.end());
  m.written += bytes.size();
  // Zero-size tensors at the current position stay due, so Write() can still name them.
  while (m.next < m.tensors.size() &&
         (m.tensors[m.next].data_end < m.written ||
          (m.tensors[m.next].data_end == m.written && m.tensors[m.next].num_bytes() > 0)))
    ++m.next;
  return Status::OK();
}

Status SafetensorsWriter::Write(std::string_view name, std::span<const std::byte> bytes) {
  if (!impl_) return Status::InvalidArgument("SafetensorsWriter: not created");
  Impl& m = *impl_;
  // Skip past zero-size tensors that precede `name` at the current position.
  size_t i = m.next;
  while (i < m.tensors.size() && m.tensors[i].name != name &&
         m.tensors[i].data_begin == m.written && m.tensors[i].num_bytes() == 0)
    ++i;
  if (i >= m.tensors.size() || m.tensors[i].name != name || m.tensors[i].data_begin != m.written)
    return Status::InvalidArgument(
        path() + ": tensor '" + std::string(name) + "': written out of order (next due: " +
        (m.next < m.tensors.size() ? "'" + m.tensors[m.next].name + "'" : std::string("none")) +
        ")");
  if (bytes.size() != m.tensors[i].num_bytes())
    return Status::InvalidArgument(path() + ": tensor '" + std::string(name) +
                                   "': " + std::to_string(bytes.size()) + " bytes given, " +
                                   std::to_string(m.tensors[i].num_bytes()) + " declared");
  return Append(bytes);
}

Status SafetensorsWriter::Finish() {
  if (!impl_) return Status::InvalidArgument("SafetensorsWriter: not created");
  Impl& m = *impl_;
  if (m.finished) return Status::InvalidArgument(path() + ": Finish called twice");
  if (!m.header_done) HCT_RETURN_IF_ERROR(WriteHeader());
  if (m.written != m.total)
    return Status::InvalidArgument(path() + ": " + std::to_string(m.written) + " of " +
                                   std::to_string(m.total) + " declared data bytes written" +
                                   (m.next < m.tensors.size()
                                        ? " (tensor '" + m.tensors[m.next].name + "' incomplete)"
                                        : std::string()));
  HCT_RETURN_IF_ERROR(m.Flush());
  HCT_RETURN_IF_ERROR(m.file.Commit());
  m.finished = true;
  return Status::OK();
}

Status WriteSafetensors(const std::string& path, std::span<const TensorData> tensors,
                        const std::map<std::string, std::string>& metadata,
                        SafetensorsWriterOptions options) {
  HCT_ASSIGN_OR_RETURN(SafetensorsWriter w, SafetensorsWriter::Create(path, options));
  for (const auto& [k, v] : metadata) HCT_RETURN_IF_ERROR(w.SetMetadata(k, v));
  for (const TensorData& t : tensors) HCT_RETURN_IF_ERROR(w.Declare(t.name, t.dtype, t.shape));
  for (const TensorData& t : tensors) HCT_RETURN_IF_ERROR(w.Write(t.name, t.bytes));
  return w.Finish();
}

}  // namespace hct
