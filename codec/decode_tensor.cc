// DecodeTensor (hct/codec.h): one tensor of an HCT file through the CPU reference decoders.
#include <optional>
#include <string>
#include <vector>

#include "hct/codec.h"
#include "hct/container.h"
#include "hct/detail/model_files.h"

namespace hct {

Status DecodeTensor(const HctFile& f, const TensorEntry& t, std::span<std::byte> out,
                    const ParallelFor& pf) {
  // The context is made only for an error: a model of many small tensors decodes each of them
  // through here, and the strings were a visible share of the time (issue 10 item 7).
  auto ctx = [&] { return f.path() + ": tensor '" + t.name + "'"; };
  const std::optional<uint64_t> total = DTypeBytes(t.dtype, t.num_elements);
  if (!total) return detail::BytesOf(t.dtype, t.num_elements, ctx()).status();
  if (out.size() != *total)
    return Status::InvalidArgument(ctx() + ": output buffer has " + std::to_string(out.size()) +
                                   " bytes, the tensor " + std::to_string(*total));
  Result<ChunkDecoder> dec = ChunkDecoder::Create(t.codec, t.codec_params, t.dtype);
  if (!dec.ok()) return dec.status().WithContext(ctx());
  std::vector<std::byte> stored;  // reused when the chunks are decoded one after another
  auto decode = [&](size_t i, std::vector<std::byte>& buf) -> Status {
    const ChunkEntry& c = t.chunks[i];
    const std::optional<uint64_t> off = DTypeBytes(t.dtype, c.elem_offset);
    const std::optional<uint64_t> len = DTypeBytes(t.dtype, c.elem_count);
    if (!off || !len || *off > out.size() || *len > out.size() - *off)
      return Status::Corruption("chunk " + std::to_string(i) + " lies outside the tensor");
    buf.resize(c.stored_size);
    Status s = f.ReadChunk(t, i, buf);
    if (s.ok())
      s = dec->Decode(buf, ChunkMeta(c.decoded_size, c.decoded_xxh3, c.elem_offset, c.elem_count),
                      out.subspan(*off, *len));
    if (!s.ok()) return std::move(s).WithContext("chunk " + std::to_string(i));
    return s;
  };
  if (!pf || t.chunks.size() <= 1) {
    for (size_t i = 0; i < t.chunks.size(); ++i)
      if (Status s = decode(i, stored); !s.ok()) return std::move(s).WithContext(ctx());
    return Status::OK();
  }
  std::vector<Status> st(t.chunks.size());
  pf(t.chunks.size(), [&](size_t i) {
    std::vector<std::byte> buf;
    st[i] = decode(i, buf);
  });
  for (Status& s : st)
    if (!s.ok()) return std::move(s).WithContext(ctx());
  return Status::OK();
}

}  // namespace hct
