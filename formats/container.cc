// HCT container reader and the format pieces shared with the writer (docs/hct-format.md).
#include "hct/container.h"

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack
#include <xxhash.h>

#include <algorithm>
#include <exception>
#include <tuple>
#include <utility>

#include <nlohmann/json.hpp>

#include "formats/detail/container_format.h"
#include "formats/detail/index_reader.h"
#include "hct/detail/file.h"

namespace hct {

using nlohmann::json;

uint64_t TensorDecodedXxh3(std::span<const ChunkEntry> chunks) {
  XXH3_state_t st;
  XXH3_64bits_reset(&st);
  for (const ChunkEntry& c : chunks) {
    unsigned char le[8];
    detail::PutLE(le, c.decoded_xxh3, 8);
    XXH3_64bits_update(&st, le, 8);
  }
  return XXH3_64bits_digest(&st);
}

namespace detail {
namespace {

std::string ChunkCtx(size_t i) { return "chunk " + std::to_string(i); }

std::string Range(uint64_t a, uint64_t b) {
  std::string s = "[";
  s.append(std::to_string(a)).append(", ").append(std::to_string(b)).append(")");
  return s;
}

// Sizes a decoder allocates from, checked before anything is: a codec decodes a chunk to its
// elements' bytes (lossless) or to symbols of at most 16 bits per element (lossy), so
// decoded_size <= max(element bytes, 2 x elem_count); both are at most kHctMaxChunkBytes.
// (A checksum-valid index claiming 2^40 decoded bytes, or 2^33 elements in one chunk, made
// decoders die of std::bad_alloc.)
Status CheckChunkSizes(DType dtype, const ChunkEntry& c) {
  const uint64_t bits = static_cast<uint64_t>(DTypeBits(dtype));
  if (c.elem_count > kHctMaxChunkBytes * 8 / bits)
    return Status::OutOfRange(std::to_string(c.elem_count) + " elements of " +
                              std::string(DTypeName(dtype)) + " are more than the " +
                              std::to_string(kHctMaxChunkBytes) + " bytes a chunk may cover");
  const uint64_t bytes = (c.elem_count * bits + 7) / 8;  // no overflow: elem_count <= 2^35
  const uint64_t limit = std::min(kHctMaxChunkBytes, std::max(bytes, 2 * c.elem_count));
  if (c.decoded_size > limit)
    return Status::OutOfRange("decoded_size " + std::to_string(c.decoded_size) + " exceeds " +
                              std::to_string(limit) + " bytes (" + std::to_string(c.elem_count) +
                              " elements of " + std::string(DTypeName(dtype)) + ")");
  // Within the bound, the decoded size is one of exactly those forms: the elements' bytes, or
  // one or two bytes of symbol per element. Anything else (0 among them) is a damaged index,
  // which a decoder would only find later as a buffer of the wrong size.
  if (c.decoded_size != bytes && c.decoded_size != c.elem_count &&
      c.decoded_size != 2 * c.elem_count)
    return Status::Corruption("decoded_size " + std::to_string(c.decoded_size) + " is neither " +
                              std::to_string(bytes) + " (the bytes of " +
                              std::to_string(c.elem_count) + " elements of " +
                              std::string(DTypeName(dtype)) + ") nor 1 or 2 bytes per element");
  return Status::OK();
}

}  // namespace

std::string Hex64(uint64_t v) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) s[i] = kDigits[v & 15];
  return s;
}

bool ParseHex64(std::string_view s, uint64_t* out) {
  if (s.size() != 16) return false;
  uint64_t v = 0;
  for (char c : s) {
    int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (d < 0) return false;
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  *out = v;
  return true;
}

void EncodeHeader(HctVersion v, uint32_t flags, unsigned char out[kHctHeaderUsed]) {
  std::memcpy(out, kHctMagic, 8);
  PutLE(out + 8, v.major, 2);
  PutLE(out + 10, v.minor, 2);
  PutLE(out + 12, flags, 4);
}

uint64_t FooterChecksum(const unsigned char in[kHctFooterSize]) { return XXH3_64bits(in, 32); }

void EncodeFooter(HctFooter f, unsigned char out[kHctFooterSize]) {
  PutLE(out, f.index_offset, 8);
  PutLE(out + 8, f.index_length, 8);
  PutLE(out + 16, f.index_xxh3, 8);
  PutLE(out + 24, f.major, 2);
  PutLE(out + 26, f.minor, 2);
  PutLE(out + 28, f.reserved, 4);
  PutLE(out + 32, FooterChecksum(out), 8);
  std::memcpy(out + 40, kHctMagic, 8);
}

HctFooter DecodeFooter(const unsigned char in[kHctFooterSize]) {
  HctFooter f;
  f.index_offset = GetLE(in, 8);
  f.index_length = GetLE(in + 8, 8);
  f.index_xxh3 = GetLE(in + 16, 8);
  f.major = static_cast<uint16_t>(GetLE(in + 24, 2));
  f.minor = static_cast<uint16_t>(GetLE(in + 26, 2));
  f.reserved = static_cast<uint32_t>(GetLE(in + 28, 4));
  f.footer_xxh3 = GetLE(in + 32, 8);
  return f;
}

Status ValidateTensor(const TensorEntry& t, uint64_t data_end) {
  if (t.name.empty()) return Status::Corruption("tensor with an empty name");
  const bool raw = t.codec == kRawCodec;
  if (t.codec.empty()) return Status::Corruption("empty codec name");
  if (t.codec_params.empty() || t.codec_params.front() != '{')
    return Status::Corruption("codec_params is not an object");
  uint64_t n = 1;
  for (uint64_t d : t.shape) {
    if (d != 0 && n > UINT64_MAX / d) {
      std::string s = "shape [";
      for (size_t i = 0; i < t.shape.size(); ++i) s += (i ? ", " : "") + std::to_string(t.shape[i]);
      return Status::OutOfRange(s + "] overflows a 64-bit element count");
    }
    n *= d;
  }
  if (n != t.num_elements)
    return Status::Corruption("num_elements " + std::to_string(t.num_elements) +
                              " differs from the shape's product " + std::to_string(n));
  const std::optional<uint64_t> total_bytes = DTypeBytes(t.dtype, n);
  if (!total_bytes)
    return Status::OutOfRange(std::to_string(n) + " elements of " +
                              std::string(DTypeName(t.dtype)) +
                              " do not make a whole number of bytes within 64 bits");
  uint64_t next_elem = 0, decoded_sum = 0;
  for (size_t i = 0; i < t.chunks.size(); ++i) {
    const ChunkEntry& c = t.chunks[i];
    auto fail = [&](Status s) { return s.ok() ? s : std::move(s).WithContext(ChunkCtx(i)); };
    if (c.offset % kHctAlignment != 0)
      return fail(
          Status::Corruption("offset " + std::to_string(c.offset) + " is not aligned to 4096"));
    if (c.stored_size == 0) return fail(Status::Corruption("stored_size is 0"));
    if (c.offset < kHctHeaderSize || c.offset > data_end || c.stored_size > data_end - c.offset)
      return fail(
          Status::OutOfRange("bytes " +
                             (c.offset > UINT64_MAX - c.stored_size
                                  ? std::to_string(c.offset) + " + " + std::to_string(c.stored_size)
                                  : Range(c.offset, c.offset + c.stored_size)) +
                             " lie outside the chunk data " + Range(kHctHeaderSize, data_end)));
    if (c.elem_count == 0) return fail(Status::Corruption("elem_count is 0"));
    if (c.elem_offset != next_elem)
      return fail(Status::Corruption("elements start at " + std::to_string(c.elem_offset) +
                                     ", expected " + std::to_string(next_elem) +
                                     " (chunks must be contiguous and in order)"));
    if (c.elem_count > n - next_elem)
      return fail(Status::OutOfRange("elements " + std::to_string(c.elem_offset) + " + " +
                                     std::to_string(c.elem_count) + " pass the tensor's " +
                                     std::to_string(n) + " elements"));
    next_elem += c.elem_count;
    if (c.decoded_size > UINT64_MAX - decoded_sum)
      return fail(Status::OutOfRange("decoded sizes overflow 64 bits"));
    decoded_sum += c.decoded_size;
    if (raw) {
      const std::optional<uint64_t> start = DTypeBytes(t.dtype, c.elem_offset);
      const std::optional<uint64_t> bytes = DTypeBytes(t.dtype, c.elem_count);
      if (!start || !bytes)
        return fail(Status::Corruption("raw chunk does not start and end on a byte boundary"));
      if (c.stored_size != *bytes || c.decoded_size != *bytes)
        return fail(Status::Corruption(
            "raw chunk of " + std::to_string(c.elem_count) + " elements must store and decode to " +
            std::to_string(*bytes) + " bytes, not " + std::to_string(c.stored_size) + " / " +
            std::to_string(c.decoded_size)));
      if (c.decoded_xxh3 != c.xxh3)
        return fail(Status::Corruption("raw chunk decoded_xxh3 differs from its xxh3"));
    }
    HCT_RETURN_IF_ERROR(fail(CheckChunkSizes(t.dtype, c)));
  }
  if (next_elem != n)
    return Status::Corruption("chunks cover " + std::to_string(next_elem) + " of " +
                              std::to_string(n) + " elements");
  if (decoded_sum != t.decoded_size)
    return Status::Corruption("decoded_size " + std::to_string(t.decoded_size) +
                              " differs from the sum of its chunks' " +
                              std::to_string(decoded_sum));
  if (raw && t.decoded_size != *total_bytes)
    return Status::Corruption("raw tensor decodes to " + std::to_string(t.decoded_size) +
                              " bytes, its dtype and shape need " + std::to_string(*total_bytes));
  const uint64_t h = TensorDecodedXxh3(t.chunks);
  if (h != t.decoded_xxh3)
    return Status::Corruption("decoded_xxh3 " + Hex64(t.decoded_xxh3) +
                              " differs from the hash of its chunks' decoded_xxh3 " + Hex64(h));
  return Status::OK();
}

json TensorToJson(const TensorEntry& t) {
  json chunks = json::array();
  for (const ChunkEntry& c : t.chunks)
    chunks.push_back({{"offset", c.offset},
                      {"stored_size", c.stored_size},
                      {"xxh3", Hex64(c.xxh3)},
                      {"decoded_size", c.decoded_size},
                      {"decoded_xxh3", Hex64(c.decoded_xxh3)},
                      {"elem_offset", c.elem_offset},
                      {"elem_count", c.elem_count}});
  json j = {{"name", t.name},
            {"dtype", std::string(DTypeName(t.dtype))},
            {"shape", t.shape},
            {"codec", t.codec},
            {"codec_params", json::parse(t.codec_params)},
            {"decoded_size", t.decoded_size},
            {"decoded_xxh3", Hex64(t.decoded_xxh3)},
            {"chunks", std::move(chunks)}};
  if (!t.metadata.empty()) j["metadata"] = t.metadata;
  return j;
}

}  // namespace detail

using detail::GetLE;

// ---------------------------------------------------------------------------- HctFile
HctFile::HctFile() = default;
HctFile::HctFile(HctFile&&) noexcept = default;
HctFile& HctFile::operator=(HctFile&&) noexcept = default;
HctFile::~HctFile() = default;

Result<HctFile> HctFile::Open(const std::string& path) {
  HCT_ASSIGN_OR_RETURN(detail::ReadFile rf, detail::ReadFile::Open(path));
  HctFile f;
  f.path_ = path;
  f.file_size_ = rf.size();
  f.file_ = std::make_unique<detail::ReadFile>(std::move(rf));
  return Load(std::move(f));
}

Result<HctFile> HctFile::Parse(std::span<const std::byte> bytes, std::string name) {
  HctFile f;
  f.path_ = std::move(name);
  f.file_size_ = bytes.size();
  f.mem_ = bytes;
  return Load(std::move(f));
}

Status HctFile::ReadAt(uint64_t offset, std::span<std::byte> dst) const {
  if (file_) return file_->ReadAt(offset, dst);
  if (offset > mem_.size() || dst.size() > mem_.size() - offset)
    return Status::OutOfRange("read of " + std::to_string(dst.size()) + " bytes at " +
                              std::to_string(offset) + " passes the end (" +
                              std::to_string(mem_.size()) + " bytes)");
  if (!dst.empty()) std::memcpy(dst.data(), mem_.data() + offset, dst.size());
  return Status::OK();
}

Result<HctFile> HctFile::Load(HctFile f) {
  const std::string ctx = f.path_;
  auto fail = [&](Status s) { return std::move(s).WithContext(ctx); };
  const uint64_t size = f.file_size_;

  // Header first: a newer major may lay out everything after the version differently.
  unsigned char head[detail::kHctHeaderUsed] = {};
  const uint64_t head_n = std::min<uint64_t>(size, sizeof head);
  HCT_RETURN_IF_ERROR(fail(f.ReadAt(0, {reinterpret_cast<std::byte*>(head), head_n})));
  if (head_n < 8 || std::memcmp(head, kHctMagic, 8) != 0) {
    if (head_n >= 4 && std::memcmp(head, kHctMagic, std::min<uint64_t>(head_n, 8)) == 0)
      return fail(Status::Corruption("truncated: " + std::to_string(size) + " bytes"));
    return fail(Status::Corruption("not an HCT file (bad magic)"));
  }
  if (head_n < detail::kHctHeaderUsed)
    return fail(Status::Corruption("truncated: " + std::to_string(size) + " bytes"));
  f.version_.major = static_cast<uint16_t>(GetLE(head + 8, 2));
  f.version_.minor = static_cast<uint16_t>(GetLE(head + 10, 2));
  const uint32_t flags = static_cast<uint32_t>(GetLE(head + 12, 4));
  const std::string ver = std::to_string(f.version_.major) + "." + std::to_string(f.version_.minor);
  if (f.version_.major == 0) return fail(Status::Corruption("invalid format version " + ver));
  if (f.version_.major > kHctMajorVersion)
    return fail(Status::Unsupported("file format " + ver + " is newer than this reader (" +
                                    std::to_string(kHctMajorVersion) + ".x); upgrade hct"));
  if (flags != 0)
    return fail(Status::Unsupported("header flags 0x" + detail::Hex64(flags).substr(8) +
                                    " ask for features this reader lacks; upgrade hct"));
  if (size < kHctHeaderSize + kHctFooterSize)
    return fail(Status::Corruption("truncated: " + std::to_string(size) +
                                   " bytes, less than a header and a footer"));

  unsigned char foot[kHctFooterSize];
  HCT_RETURN_IF_ERROR(
      fail(f.ReadAt(size - kHctFooterSize, {reinterpret_cast<std::byte*>(foot), sizeof foot})));
  if (std::memcmp(foot + 40, kHctMagic, 8) != 0)
    return fail(Status::Corruption("no footer magic at the end: truncated or unfinished file"));
  const detail::HctFooter ft = detail::DecodeFooter(foot);
  if (ft.footer_xxh3 != detail::FooterChecksum(foot))
    return fail(Status::Corruption("footer checksum mismatch"));
  if (ft.major != f.version_.major || ft.minor != f.version_.minor)
    return fail(Status::Corruption("footer version " + std::to_string(ft.major) + "." +
                                   std::to_string(ft.minor) + " differs from header version " +
                                   ver));
  const uint64_t index_end = size - kHctFooterSize;
  if (ft.index_length == 0 || ft.index_length > kHctMaxIndexSize)
    return fail(Status::OutOfRange("index length " + std::to_string(ft.index_length) +
                                   " is outside [1, " + std::to_string(kHctMaxIndexSize) + "]"));
  if (ft.index_offset < kHctHeaderSize || ft.index_offset > index_end ||
      index_end - ft.index_offset != ft.index_length)
    return fail(Status::OutOfRange(
        "index at " + std::to_string(ft.index_offset) + " of " + std::to_string(ft.index_length) +
        " bytes does not end at the footer (file of " + std::to_string(size) + " bytes)"));
  f.index_offset_ = ft.index_offset;

  std::string text(ft.index_length, '\0');
  HCT_RETURN_IF_ERROR(
      fail(f.ReadAt(ft.index_offset, {reinterpret_cast<std::byte*>(text.data()), text.size()})));
  const uint64_t h = XXH3_64bits(text.data(), text.size());
  if (h != ft.index_xxh3)
    return fail(Status::Corruption("index checksum mismatch (footer says " +
                                   detail::Hex64(ft.index_xxh3) + ", index hashes to " +
                                   detail::Hex64(h) + ")"));
  HCT_RETURN_IF_ERROR(
      fail(detail::ReadHctIndex(text, f.index_offset_, &f.metadata_, &f.tensors_, &f.by_name_)));
  text.clear();
  text.shrink_to_fit();

  // Chunks of all tensors must not share bytes.
  struct Span {
    uint64_t begin, end;
    size_t tensor, chunk;
  };
  std::vector<Span> spans;
  size_t n_chunks = 0;
  for (const TensorEntry& t : f.tensors_) n_chunks += t.chunks.size();
  spans.reserve(n_chunks);
  for (size_t ti = 0; ti < f.tensors_.size(); ++ti)
    for (size_t ci = 0; ci < f.tensors_[ti].chunks.size(); ++ci) {
      const ChunkEntry& c = f.tensors_[ti].chunks[ci];
      spans.push_back({c.offset, c.offset + c.stored_size, ti, ci});
    }
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return std::tie(a.begin, a.tensor, a.chunk) < std::tie(b.begin, b.tensor, b.chunk);
  });
  for (size_t k = 1; k < spans.size(); ++k) {
    const Span &a = spans[k - 1], &b = spans[k];
    if (b.begin < a.end)
      return fail(
          Status::Corruption("tensor '" + f.tensors_[b.tensor].name + "': chunk " +
                             std::to_string(b.chunk) + ": bytes " + detail::Range(b.begin, b.end) +
                             " overlap tensor '" + f.tensors_[a.tensor].name + "' chunk " +
                             std::to_string(a.chunk) + " " + detail::Range(a.begin, a.end)));
  }
  return f;
}

const TensorEntry* HctFile::Find(std::string_view name) const {
  auto it = by_name_.find(std::string(name));
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

Status HctFile::ReadChunk(const TensorEntry& t, size_t i, std::span<std::byte> dst) const {
  auto fail = [&](Status s) {  // contexts only for an error: this runs once per chunk
    return s.ok() ? s : std::move(s).WithContext("tensor '" + t.name + "'").WithContext(path_);
  };
  if (i >= t.chunks.size())
    return fail(Status::OutOfRange("chunk " + std::to_string(i) + " of " +
                                   std::to_string(t.chunks.size())));
  const ChunkEntry& c = t.chunks[i];
  if (dst.size() != c.stored_size)
    return fail(Status::InvalidArgument("chunk " + std::to_string(i) + ": buffer of " +
                                        std::to_string(dst.size()) + " bytes for " +
                                        std::to_string(c.stored_size) + " stored bytes"));
  // Entries not from this file could point anywhere; keep reads inside the chunk area.
  if (c.offset > index_offset_ || c.stored_size > index_offset_ - c.offset)
    return fail(Status::OutOfRange("chunk " + std::to_string(i) + " lies outside the chunk data"));
  HCT_RETURN_IF_ERROR(fail(ReadAt(c.offset, dst)));
  const uint64_t h = XXH3_64bits(dst.data(), dst.size());
  if (h != c.xxh3)
    return fail(Status::Corruption("chunk " + std::to_string(i) +
                                   " checksum mismatch (index says " + detail::Hex64(c.xxh3) +
                                   ", stored bytes hash to " + detail::Hex64(h) + ")"));
  return Status::OK();
}

Result<std::vector<std::byte>> HctFile::ReadChunk(const TensorEntry& t, size_t i) const {
  if (i >= t.chunks.size())
    return Status::OutOfRange("chunk " + std::to_string(i) + " of " +
                              std::to_string(t.chunks.size()))
        .WithContext("tensor '" + t.name + "'")
        .WithContext(path_);
  std::vector<std::byte> buf(t.chunks[i].stored_size);
  HCT_RETURN_IF_ERROR(ReadChunk(t, i, buf));
  return buf;
}

Status HctFile::ReadRawTensor(const TensorEntry& t, std::span<std::byte> dst) const {
  auto fail = [&](Status s) {
    return std::move(s).WithContext("tensor '" + t.name + "'").WithContext(path_);
  };
  if (t.codec != kRawCodec)
    return fail(Status::Unsupported("unknown codec '" + t.codec +
                                    "' (the container decodes only 'raw'; other codecs are "
                                    "decoded by hct::convert)"));
  if (dst.size() != t.decoded_size)
    return fail(Status::InvalidArgument("buffer of " + std::to_string(dst.size()) +
                                        " bytes for a tensor of " +
                                        std::to_string(t.decoded_size)));
  uint64_t pos = 0;
  for (size_t i = 0; i < t.chunks.size(); ++i) {
    const ChunkEntry& c = t.chunks[i];
    if (c.stored_size > dst.size() - pos)
      return fail(Status::Corruption("chunk " + std::to_string(i) + " passes the tensor's end"));
    // Stored bytes are the decoded bytes, so ReadChunk's check covers decoded_xxh3 too
    // (the index validation made them equal).
    HCT_RETURN_IF_ERROR(ReadChunk(t, i, dst.subspan(pos, c.stored_size)));
    pos += c.stored_size;
  }
  return Status::OK();
}

Status HctFile::VerifyData() const {
  std::vector<std::byte> buf;
  for (const TensorEntry& t : tensors_)
    for (size_t i = 0; i < t.chunks.size(); ++i) {
      buf.resize(t.chunks[i].stored_size);
      HCT_RETURN_IF_ERROR(ReadChunk(t, i, buf));
    }
  return Status::OK();
}

}  // namespace hct
