// HCT container writer (docs/hct-format.md).
#include <xxhash.h>

#include <exception>
#include <optional>
#include <unordered_set>
#include <utility>

#include <nlohmann/json.hpp>

#include "formats/detail/container_format.h"
#include "hct/detail/file.h"
#include "hct/container.h"

namespace hct {

using nlohmann::json;

struct HctWriter::State {
  detail::AtomicFile file;
  std::map<std::string, std::string> metadata;
  std::vector<TensorEntry> tensors;
  std::unordered_set<std::string> names;
  std::optional<TensorEntry> cur;
  uint64_t next_elem = 0;
  Status failed;  // sticky: after a write error the file is unusable
  bool finished = false;
};

HctWriter::HctWriter(std::unique_ptr<State> s) : s_(std::move(s)) {}
HctWriter::HctWriter(HctWriter&&) noexcept = default;
HctWriter& HctWriter::operator=(HctWriter&&) noexcept = default;
HctWriter::~HctWriter() = default;

const std::string& HctWriter::path() const { return s_->file.path(); }
uint64_t HctWriter::bytes_written() const { return s_->file.offset(); }

namespace {

// nlohmann refuses to serialise invalid UTF-8; find out now rather than at Finish().
Status CheckSerialisable(const json& j, std::string_view what) {
  try {
    (void)j.dump();
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string(what) + " cannot be written as JSON: " + e.what());
  }
  return Status::OK();
}

}  // namespace

Result<HctWriter> HctWriter::Create(const std::string& path, bool overwrite) {
  auto s = std::make_unique<State>();
  HCT_ASSIGN_OR_RETURN(s->file, detail::AtomicFile::Create(path, overwrite));
  unsigned char head[detail::kHctHeaderUsed];
  detail::EncodeHeader(HctVersion{}, 0, head);
  HCT_RETURN_IF_ERROR(s->file.Append(head, sizeof head));
  HCT_RETURN_IF_ERROR(s->file.PadTo(kHctHeaderSize));
  return HctWriter(std::move(s));
}

Status HctWriter::SetMetadata(std::string key, std::string value) {
  if (s_->finished) return Status::InvalidArgument(path() + ": SetMetadata after Finish");
  HCT_RETURN_IF_ERROR(CheckSerialisable(json{{key, value}}, "metadata '" + key + "'"));
  s_->metadata[std::move(key)] = std::move(value);
  return Status::OK();
}

Status HctWriter::BeginTensor(std::string name, DType dtype, std::vector<uint64_t> shape,
                              std::string codec, std::string codec_params) {
  auto fail = [&](Status s) {
    return std::move(s).WithContext("tensor '" + name + "'").WithContext(path());
  };
  HCT_RETURN_IF_ERROR(s_->failed);
  if (s_->finished) return fail(Status::InvalidArgument("BeginTensor after Finish"));
  if (s_->cur)
    return fail(Status::InvalidArgument("BeginTensor before EndTensor of '" + s_->cur->name + "'"));
  if (name.empty()) return fail(Status::InvalidArgument("empty tensor name"));
  if (s_->names.count(name)) return fail(Status::AlreadyExists("duplicate tensor name"));
  if (codec.empty()) return fail(Status::InvalidArgument("empty codec name"));
  const json params = codec_params.empty()
                          ? json::object()
                          : json::parse(codec_params, nullptr, /*allow_exceptions=*/false);
  if (!params.is_object())
    return fail(Status::InvalidArgument("codec_params must be a JSON object"));
  HCT_RETURN_IF_ERROR(fail(CheckSerialisable(name, "name")));
  HCT_RETURN_IF_ERROR(fail(CheckSerialisable(codec, "codec")));
  HCT_RETURN_IF_ERROR(fail(CheckSerialisable(params, "codec_params")));
  TensorEntry t;
  t.name = std::move(name);
  t.dtype = dtype;
  t.shape = std::move(shape);
  uint64_t n = 1;
  for (uint64_t d : t.shape) {
    if (d != 0 && n > UINT64_MAX / d)
      return fail(Status::OutOfRange("shape overflows a 64-bit element count"));
    n *= d;
  }
  if (!DTypeBytes(dtype, n))
    return fail(Status::InvalidArgument(std::to_string(n) + " elements of " +
                                        std::string(DTypeName(dtype)) +
                                        " do not make a whole number of bytes"));
  t.num_elements = n;
  t.codec = std::move(codec);
  t.codec_params = params.dump();  // the reader's form: compact, keys sorted
  s_->cur = std::move(t);
  s_->next_elem = 0;
  return Status::OK();
}

Status HctWriter::AppendChunk(std::span<const std::byte> stored, uint64_t decoded_size,
                              uint64_t decoded_xxh3, uint64_t elem_offset, uint64_t elem_count) {
  HCT_RETURN_IF_ERROR(s_->failed);
  if (!s_->cur) return Status::InvalidArgument(path() + ": AppendChunk outside a tensor");
  TensorEntry& t = *s_->cur;
  const size_t i = t.chunks.size();
  auto fail = [&](Status s) {
    return std::move(s)
        .WithContext("chunk " + std::to_string(i))
        .WithContext("tensor '" + t.name + "'")
        .WithContext(path());
  };
  if (stored.empty()) return fail(Status::InvalidArgument("empty stored bytes"));
  if (elem_count == 0) return fail(Status::InvalidArgument("elem_count is 0"));
  if (elem_offset != s_->next_elem)
    return fail(Status::InvalidArgument("elements start at " + std::to_string(elem_offset) +
                                        ", expected " + std::to_string(s_->next_elem)));
  if (elem_count > t.num_elements - elem_offset)
    return fail(Status::OutOfRange("elements pass the tensor's " + std::to_string(t.num_elements)));
  ChunkEntry c;
  c.stored_size = stored.size();
  c.xxh3 = XXH3_64bits(stored.data(), stored.size());
  c.decoded_size = decoded_size;
  c.decoded_xxh3 = decoded_xxh3;
  c.elem_offset = elem_offset;
  c.elem_count = elem_count;
  if (t.codec == kRawCodec) {
    const auto bytes = DTypeBytes(t.dtype, elem_count);
    if (!DTypeBytes(t.dtype, elem_offset) || !bytes || *bytes != stored.size() ||
        decoded_size != stored.size() || decoded_xxh3 != c.xxh3)
      return fail(Status::InvalidArgument(
          "raw chunk: stored bytes must be the elements' bytes (decoded_size and decoded_xxh3 "
          "equal to the stored ones)"));
  }
  Status st = s_->file.PadTo(kHctAlignment);
  c.offset = s_->file.offset();
  if (st.ok()) st = s_->file.Append(stored);
  if (!st.ok()) {
    s_->failed = st;
    return st;
  }
  t.chunks.push_back(c);
  s_->next_elem += elem_count;
  return Status::OK();
}

Status HctWriter::AppendRawChunk(std::span<const std::byte> bytes, uint64_t elem_offset,
                                 uint64_t elem_count) {
  const uint64_t h = XXH3_64bits(bytes.data(), bytes.size());
  return AppendChunk(bytes, bytes.size(), h, elem_offset, elem_count);
}

Status HctWriter::EndTensor(std::map<std::string, std::string> metadata) {
  HCT_RETURN_IF_ERROR(s_->failed);
  if (!s_->cur) return Status::InvalidArgument(path() + ": EndTensor outside a tensor");
  TensorEntry& t = *s_->cur;
  auto fail = [&](Status s) {
    return std::move(s).WithContext("tensor '" + t.name + "'").WithContext(path());
  };
  HCT_RETURN_IF_ERROR(fail(CheckSerialisable(json(metadata), "metadata")));
  t.metadata = std::move(metadata);
  t.decoded_size = 0;
  for (const ChunkEntry& c : t.chunks) {
    if (c.decoded_size > UINT64_MAX - t.decoded_size)
      return fail(Status::OutOfRange("decoded sizes overflow 64 bits"));
    t.decoded_size += c.decoded_size;
  }
  t.decoded_xxh3 = TensorDecodedXxh3(t.chunks);
  if (s_->next_elem != t.num_elements)
    return fail(Status::InvalidArgument("chunks cover " + std::to_string(s_->next_elem) + " of " +
                                        std::to_string(t.num_elements) + " elements"));
  // The reader's own checks, so a file this writer finishes always opens.
  HCT_RETURN_IF_ERROR(fail(detail::ValidateTensor(t, s_->file.offset())));
  s_->names.insert(t.name);
  s_->tensors.push_back(std::move(t));
  s_->cur.reset();
  return Status::OK();
}

Status HctWriter::AddRawTensor(std::string name, DType dtype, std::vector<uint64_t> shape,
                               std::span<const std::byte> data, uint64_t chunk_elems) {
  HCT_RETURN_IF_ERROR(BeginTensor(name, dtype, std::move(shape), std::string(kRawCodec)));
  // On failure the tensor is dropped (bytes already written stay unreferenced, which the
  // format allows), so the writer stays usable.
  Status st = AddRawChunks(dtype, data, chunk_elems);
  if (!st.ok()) {
    s_->cur.reset();
    return st;
  }
  return EndTensor();
}

Status HctWriter::AddRawChunks(DType dtype, std::span<const std::byte> data, uint64_t chunk_elems) {
  const std::string& name = s_->cur->name;
  uint64_t n = s_->cur->num_elements;
  const auto total = DTypeBytes(dtype, s_->cur->num_elements);
  if (!total || *total != data.size())
    return Status::InvalidArgument("tensor '" + name + "': " + std::to_string(data.size()) +
                                   " bytes given, dtype and shape need " +
                                   (total ? std::to_string(*total) : std::string("?")))
        .WithContext(path());
  if (chunk_elems == 0) chunk_elems = n;
  for (uint64_t e = 0; e < n;) {
    const uint64_t cnt = std::min(chunk_elems, n - e);
    const auto off = DTypeBytes(dtype, e);
    const auto len = DTypeBytes(dtype, cnt);
    if (!off || !len)
      return Status::InvalidArgument("tensor '" + name + "': chunk of " + std::to_string(cnt) +
                                     " elements does not fall on byte boundaries")
          .WithContext(path());
    HCT_RETURN_IF_ERROR(AppendRawChunk(data.subspan(*off, *len), e, cnt));
    e += cnt;
  }
  return Status::OK();
}

Status HctWriter::Finish() {
  HCT_RETURN_IF_ERROR(s_->failed);
  if (s_->finished) return Status::InvalidArgument(path() + ": Finish twice");
  if (s_->cur)
    return Status::InvalidArgument("Finish inside tensor '" + s_->cur->name + "'")
        .WithContext(path());
  json tensors = json::array();
  for (const TensorEntry& t : s_->tensors) tensors.push_back(detail::TensorToJson(t));
  // Keys are sorted by nlohmann::json (std::map), output compact: identical inputs give
  // identical bytes.
  const json root = {{"metadata", s_->metadata}, {"tensors", std::move(tensors)}};
  std::string text;
  try {
    text = root.dump();
  } catch (const std::exception& e) {
    return Status::Internal(std::string("index serialisation failed: ") + e.what())
        .WithContext(path());
  }
  if (text.size() > kHctMaxIndexSize)
    return Status::ResourceExhausted("index of " + std::to_string(text.size()) +
                                     " bytes exceeds the format's limit")
        .WithContext(path());
  detail::HctFooter ft;
  ft.index_offset = s_->file.offset();
  ft.index_length = text.size();
  ft.index_xxh3 = XXH3_64bits(text.data(), text.size());
  ft.major = kHctMajorVersion;
  ft.minor = kHctMinorVersion;
  unsigned char foot[kHctFooterSize];
  detail::EncodeFooter(ft, foot);
  Status st = s_->file.Append(text.data(), text.size());
  if (st.ok()) st = s_->file.Append(foot, sizeof foot);
  if (st.ok()) st = s_->file.Commit();
  if (!st.ok()) {
    s_->failed = st;
    return st;
  }
  s_->finished = true;
  return Status::OK();
}

}  // namespace hct
