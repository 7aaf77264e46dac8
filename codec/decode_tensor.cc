// DecodeTensor (hct/codec.h): one tensor of an HCT file through the CPU reference decoders.
#include <string>
#include <vector>

#include "hct/codec.h"
#include "hct/container.h"
#include "hct/detail/model_files.h"

namespace hct {

Status DecodeTensor(const HctFile& f, const TensorEntry& t, std::span<std::byte> out,
                    const ParallelFor& pf) {
  const std::string ctx = f.path() + ": tensor '" + t.name + "'";
  HCT_ASSIGN_OR_RETURN(uint64_t total, detail::BytesOf(t.dtype, t.num_elements, ctx));
  if (out.size() != total)
    return Status::InvalidArgument(ctx + ": output buffer has " + std::to_string(out.size()) +
                                   " bytes, the tensor " + std::to_string(total));
  Result<ChunkDecoder> dec = ChunkDecoder::Create(t.codec, t.codec_params, t.dtype);
  if (!dec.ok()) return dec.status().WithContext(ctx);
  std::vector<Status> st(t.chunks.size());
  auto body = [&](size_t i) {
    const ChunkEntry& c = t.chunks[i];
    Result<uint64_t> off = detail::BytesOf(t.dtype, c.elem_offset, "chunk offset");
    Result<uint64_t> len = detail::BytesOf(t.dtype, c.elem_count, "chunk size");
    if (!off.ok() || !len.ok() || *off + *len > out.size()) {
      st[i] = Status::Corruption("chunk " + std::to_string(i) + " lies outside the tensor");
      return;
    }
    std::vector<std::byte> stored(c.stored_size);
    st[i] = f.ReadChunk(t, i, stored);
    if (st[i].ok())
      st[i] = dec->Decode(stored,
                          ChunkMeta(c.decoded_size, c.decoded_xxh3, c.elem_offset, c.elem_count),
                          out.subspan(*off, *len));
    if (!st[i].ok()) st[i] = std::move(st[i]).WithContext("chunk " + std::to_string(i));
  };
  if (pf)
    pf(t.chunks.size(), body);
  else
    for (size_t i = 0; i < t.chunks.size(); ++i) body(i);
  for (Status& s : st)
    if (!s.ok()) return std::move(s).WithContext(ctx);
  return Status::OK();
}

}  // namespace hct
