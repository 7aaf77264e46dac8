// Tensor-parallel slices (hct::Runtime::LoadSlice, EvenSlice, SliceOf; docs/tensor-parallel.md):
// a slice along the leading or trailing dimension, read from only the bytes that hold it.
//  - File ranges and cache entries, leading dimension: one contiguous sub-range. Checksummed
//    entries (cache blocks) are read out to whole checksum blocks so that every byte handed out
//    is verified; a range with only a whole-tensor checksum is read whole.
//  - Trailing dimension: a strided range (FileRange::row_bytes, one pread per row segment)
//    when there is nothing to verify; with checksums (and verify on) the whole tensor is read,
//    verified, and its columns copied out.
//  - HCT tensors: the chunks that overlap the slice's elements (row bands for the leading
//    dimension) as a tensor of their own (a sub-entry rebased at its first chunk), decoded by
//    the ordinary compressed path; trailing-dimension slices decode every chunk (HCT 1.0 chunks
//    are element ranges, so every chunk holds some of each column band).
#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "hct/runtime.h"
#include "runtime/detail/device.h"
#include "runtime/detail/engine.h"
#include "runtime/detail/sources.h"
#include "runtime/detail/verify.h"

#if HCT_WITH_CUDA
#include <cuda_runtime_api.h>

#include "hct/detail/check_cuda.h"
#endif

namespace hct {
namespace {

std::string Ctx(const TensorSpec& s) { return "tensor '" + s.name + "'"; }

// Where a slice's bytes are in the packed tensor: `rows` rows of `row_bytes`, the slice being
// bytes [seg_off, seg_off + seg_bytes) of each (leading dimension and 1-D tensors: one row).
struct Geometry {
  uint64_t rows = 1, row_bytes = 0, seg_off = 0, seg_bytes = 0;
  uint64_t elem_begin = 0, elem_end = 0;  // contiguous slices: the elements covered
  bool contiguous() const { return rows == 1; }
};

Result<uint64_t> Bytes(const TensorSpec& s, uint64_t elems) {
  auto b = DTypeBytes(s.dtype, elems);
  if (!b)
    return Status::Unsupported(std::to_string(elems) + " elements of " +
                               std::string(DTypeName(s.dtype)) +
                               " do not end on a byte boundary: slice at whole bytes")
        .WithContext(Ctx(s));
  return *b;
}

Result<Geometry> GeometryOf(const TensorSpec& s, const TensorSlice& sl) {
  if (s.shape.empty()) return Status::InvalidArgument("a scalar has no slices").WithContext(Ctx(s));
  const bool lead = sl.dim == SliceDim::kLeading || s.shape.size() == 1;
  const int64_t n = lead ? s.shape.front() : s.shape.back();
  if (sl.start < 0 || sl.length < 0 || sl.start > n || sl.length > n - sl.start)
    return Status::InvalidArgument("slice [" + std::to_string(sl.start) + ", " +
                                   std::to_string(sl.start + sl.length) + ") of a dimension of " +
                                   std::to_string(n))
        .WithContext(Ctx(s));
  uint64_t inner = 1;  // elements per index of the sliced dimension (leading) or rows (trailing)
  for (size_t i = lead ? 1 : 0; i < (lead ? s.shape.size() : s.shape.size() - 1); ++i)
    inner *= uint64_t(s.shape[i]);
  Geometry g;
  if (lead) {
    g.elem_begin = uint64_t(sl.start) * inner;
    g.elem_end = uint64_t(sl.start + sl.length) * inner;
    HCT_ASSIGN_OR_RETURN(g.seg_off, Bytes(s, g.elem_begin));
    HCT_ASSIGN_OR_RETURN(const uint64_t end, Bytes(s, g.elem_end));
    g.seg_bytes = end - g.seg_off;
    g.row_bytes = s.length;
    return g;
  }
  g.rows = inner;
  HCT_ASSIGN_OR_RETURN(g.row_bytes, Bytes(s, uint64_t(n)));
  HCT_ASSIGN_OR_RETURN(g.seg_off, Bytes(s, uint64_t(sl.start)));
  HCT_ASSIGN_OR_RETURN(g.seg_bytes, Bytes(s, uint64_t(sl.length)));
  return g;
}

// A spec for `name` reading `source` (the dtype and shape of what is read).
TensorSpec ReadSpec(const TensorSpec& like, DType dtype, std::vector<int64_t> shape,
                    uint64_t length, std::shared_ptr<const TensorSource> source) {
  TensorSpec r;
  r.name = like.name;
  r.layer = like.layer;
  r.dtype = dtype;
  r.shape = std::move(shape);
  r.length = length;
  r.source = std::move(source);
  return r;
}

// What a copied slice holds on to: the loaded tensor it was copied from (its memory is released
// with the slice's handle, so that no free has to wait on the copy), the slice's own memory,
// and the event recorded after the copy.
struct CopyKeep {
  LoadedTensor from;
  std::shared_ptr<void> mem;
  EventHandle event = nullptr;
  ~CopyKeep() {
#if HCT_WITH_CUDA
    if (event) (void)cudaEventDestroy(static_cast<cudaEvent_t>(event));
#endif
  }
};

// `out` from loaded tensor `from`: bytes [seg_off, seg_off + seg_bytes) of each of g.rows rows
// of g.row_bytes starting at byte `base` of `from`. Without `dst`, a contiguous slice is a view
// of `from`'s memory; otherwise the bytes are copied (host: memcpy; GPU: one 2-D copy on
// `stream`, ordered after the load, with its own event).
Result<LoadedTensor> CopyOut(Runtime& rt, LoadedTensor from, uint64_t base, const Geometry& g,
                             const TensorSpec& out, StreamHandle stream, void* dst) {
  auto spec = std::make_shared<const TensorSpec>(out);
  const auto* src = static_cast<const std::byte*>(from.data()) + base + g.seg_off;
  auto keep = std::make_shared<CopyKeep>();
  if (!dst && g.contiguous()) {
    void* data = const_cast<std::byte*>(src);
    EventHandle ev = from.event();
    keep->from = std::move(from);
    return LoadedTensor(LoadedTensor::Key{}, spec, data, keep, ev, rt.placement(), rt.device());
  }
  if (!dst) {
    HCT_ASSIGN_OR_RETURN(keep->mem, rt.Allocate(out.length));
    dst = keep->mem.get();
  }
  if (rt.placement() == Placement::kHost) {
    HCT_RETURN_IF_ERROR(from.Wait());
    for (uint64_t r = 0; r < g.rows; ++r)
      std::memcpy(static_cast<std::byte*>(dst) + r * g.seg_bytes, src + r * g.row_bytes,
                  g.seg_bytes);
    return LoadedTensor(LoadedTensor::Key{}, spec, dst, keep, nullptr, rt.placement(), rt.device());
  }
#if HCT_WITH_CUDA
  detail::DeviceGuard guard(rt.device());  // the copy and its event on the runtime's device
  auto cs = static_cast<cudaStream_t>(stream);
  HCT_CHECK(cuda, cudaMemcpy2DAsync(dst, g.seg_bytes, src, g.row_bytes, g.seg_bytes, g.rows,
                                    cudaMemcpyDeviceToDevice, cs));
  cudaEvent_t ev;
  HCT_CHECK(cuda, cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  keep->event = ev;
  HCT_CHECK(cuda, cudaEventRecord(ev, cs));
  keep->from = std::move(from);
  return LoadedTensor(LoadedTensor::Key{}, spec, dst, keep, ev, rt.placement(), rt.device());
#else
  (void)stream;
  return Status::Internal("device placement without CUDA");
#endif
}

// A slice of a file range or cache entry.
Result<LoadedTensor> RangeSlice(Runtime& rt, const TensorSpec& s, const TensorSpec& out,
                                const Geometry& g, StreamHandle stream, void* dst,
                                uint64_t dst_bytes) {
  const FileRange& fr = *s.file();
  const bool blocks = !fr.block_xxh3.empty() && fr.block_bytes > 0 &&
                      fr.block_xxh3.size() == (s.length + fr.block_bytes - 1) / fr.block_bytes;
  const bool checked = rt.options().verify && (fr.xxh3 || blocks);
  auto src = std::make_shared<TensorSource>();
  src->cache = s.source->cache;
  src->tensor_id = s.source->tensor_id;
  FileRange sub;
  sub.path = fr.path;
  if (!g.contiguous() && !checked) {  // rows' segments, nothing to verify
    sub.offset = fr.offset + g.seg_off;
    sub.row_bytes = g.seg_bytes;
    sub.row_pitch = g.row_bytes;
    src->range = std::move(sub);
    return rt.Load(ReadSpec(out, out.dtype, out.shape, out.length, src), stream, dst, dst_bytes);
  }
  // The bytes read: the slice; out to whole checksum blocks; or the whole tensor.
  uint64_t a = g.seg_off, b = g.seg_off + g.seg_bytes;
  if (!g.contiguous() || (checked && !blocks)) {
    a = 0, b = s.length;
    sub.xxh3 = fr.xxh3;
    sub.block_xxh3 = fr.block_xxh3;
    sub.block_bytes = fr.block_bytes;
  } else if (checked) {
    const uint64_t B = fr.block_bytes;
    a = a / B * B;
    b = std::min(s.length, (b + B - 1) / B * B);
    sub.block_xxh3.assign(fr.block_xxh3.begin() + int64_t(a / B),
                          fr.block_xxh3.begin() + int64_t((b + B - 1) / B));
    sub.block_bytes = B;
    sub.offset = fr.offset + a;
    // One-shot loads verify blocks only when a block fits a ring slot, else the whole-tensor
    // XXH3: blocks that cannot be verified alone make it a whole-tensor read.
    if (a == 0 && b == s.length) sub.xxh3 = fr.xxh3;
    else if (!detail::BlockPieceBytes(sub, b - a, true, rt.options().chunk_bytes)) {
      a = 0, b = s.length;
      sub.xxh3 = fr.xxh3;
      sub.block_xxh3 = fr.block_xxh3;
    }
  }
  sub.offset = fr.offset + a;
  src->range = std::move(sub);
  if (g.contiguous() && a == g.seg_off && b == g.seg_off + g.seg_bytes)
    return rt.Load(ReadSpec(out, out.dtype, out.shape, out.length, src), stream, dst, dst_bytes);
  HCT_ASSIGN_OR_RETURN(LoadedTensor wide,
                       rt.Load(ReadSpec(out, DType::kU8, {int64_t(b - a)}, b - a, src), stream));
  Geometry rg = g;
  rg.seg_off -= a;
  return CopyOut(rt, std::move(wide), 0, rg, out, stream, dst);
}

// The sub-entry of chunks [k0, k1) of `h`'s tensor, rebased at chunk k0's first element, as an
// HctRef that keeps `parent` (and so the model and its files) alive.
struct SubHct {
  detail::HctRef ref;
  TensorEntry entry;
  std::shared_ptr<const detail::HctRef> parent;
};

Result<std::shared_ptr<const detail::HctRef>> ChunkRange(
    std::shared_ptr<const detail::HctRef> parent, size_t k0, size_t k1) {
  const TensorEntry& e = *parent->entry;
  auto sub = std::make_shared<SubHct>();
  TensorEntry& t = sub->entry;
  t.name = e.name, t.dtype = e.dtype, t.codec = e.codec, t.codec_params = e.codec_params;
  const uint64_t base = e.chunks[k0].elem_offset;
  for (size_t k = k0; k < k1; ++k) {
    ChunkEntry c = e.chunks[k];
    c.elem_offset -= base;
    t.decoded_size += c.decoded_size;
    t.num_elements += c.elem_count;
    t.chunks.push_back(c);
  }
  t.shape = {t.num_elements};
  t.decoded_xxh3 = TensorDecodedXxh3(t.chunks);
  if (IsDctqCodec(e.codec)) {  // the 2-D view of the covered row bands
    const uint64_t cols = parent->decoder.dctq().cols;
    nlohmann::json p = nlohmann::json::parse(t.codec_params);
    p["rows"] = t.num_elements / cols;
    t.codec_params = p.dump();
  }
  auto dec = ChunkDecoder::Create(t.codec, t.codec_params, t.dtype);
  if (!dec.ok()) return dec.status().WithContext("tensor '" + e.name + "'");
  sub->ref = detail::HctRef{parent->model, parent->file, &sub->entry, std::move(*dec),
                            parent->lossy, 0};
  for (const ChunkEntry& c : t.chunks)
    sub->ref.max_decoded_chunk = std::max(sub->ref.max_decoded_chunk, c.decoded_size);
  sub->parent = std::move(parent);
  const detail::HctRef* r = &sub->ref;
  return std::shared_ptr<const detail::HctRef>(std::move(sub), r);
}

// A slice of an HCT tensor: the chunks overlapping its elements (all of them for a trailing
// slice), decoded as one tensor, then the slice (the decoded chunks themselves when they are
// exactly the slice).
Result<LoadedTensor> HctSlice(Runtime& rt, const TensorSpec& s, const TensorSpec& out,
                              const Geometry& g, StreamHandle stream, void* dst,
                              uint64_t dst_bytes) {
  const std::shared_ptr<const detail::HctRef>& h = s.source->hct;
  const std::vector<ChunkEntry>& ch = h->entry->chunks;
  uint64_t e0 = g.elem_begin, e1 = g.elem_end;
  if (!g.contiguous()) e0 = 0, e1 = h->entry->num_elements;
  size_t k0 = 0;
  while (k0 < ch.size() && ch[k0].elem_offset + ch[k0].elem_count <= e0) ++k0;
  size_t k1 = k0;
  while (k1 < ch.size() && ch[k1].elem_offset < e1) ++k1;
  if (k0 == k1) return Status::Corruption("no chunk covers the slice").WithContext(Ctx(s));
  HCT_ASSIGN_OR_RETURN(auto ref, ChunkRange(h, k0, k1));
  const uint64_t c0 = ch[k0].elem_offset, c1 = ch[k1 - 1].elem_offset + ch[k1 - 1].elem_count;
  auto src = std::make_shared<TensorSource>();
  src->hct = std::move(ref);
  if (g.contiguous() && c0 == e0 && c1 == e1)
    return rt.Load(ReadSpec(out, out.dtype, out.shape, out.length, src), stream, dst, dst_bytes);
  HCT_ASSIGN_OR_RETURN(const uint64_t base, Bytes(s, c0));
  HCT_ASSIGN_OR_RETURN(const uint64_t end, Bytes(s, c1));
  HCT_ASSIGN_OR_RETURN(LoadedTensor wide, rt.Load(ReadSpec(out, s.dtype, {int64_t(c1 - c0)},
                                                           end - base, src), stream));
  Geometry rg = g;
  if (g.contiguous()) rg.seg_off -= base;
  return CopyOut(rt, std::move(wide), 0, rg, out, stream, dst);
}

}  // namespace

Result<TensorSlice> EvenSlice(const TensorSpec& spec, SliceDim dim, int rank, int world,
                              SplitRule rule) {
  if (spec.shape.empty())
    return Status::InvalidArgument("a scalar has no slices").WithContext(Ctx(spec));
  if (world < 1 || rank < 0 || rank >= world)
    return Status::InvalidArgument("rank " + std::to_string(rank) + " of world " +
                                   std::to_string(world))
        .WithContext(Ctx(spec));
  const int64_t n = dim == SliceDim::kLeading ? spec.shape.front() : spec.shape.back();
  TensorSlice s;
  s.dim = dim;
  if (n % world == 0) {
    s.start = n / world * rank;
    s.length = n / world;
    return s;
  }
  if (rule == SplitRule::kExact)
    return Status::InvalidArgument(
               std::string(dim == SliceDim::kLeading ? "leading" : "trailing") + " dimension " +
               std::to_string(n) + " does not split evenly into " + std::to_string(world) +
               " parts")
        .WithContext(Ctx(spec));
  const int64_t part = (n + world - 1) / world;  // torch.chunk
  s.start = std::min(n, part * rank);
  s.length = std::min(n, s.start + part) - s.start;
  return s;
}

Result<TensorSpec> SliceOf(const TensorSpec& spec, const TensorSlice& slice) {
  HCT_ASSIGN_OR_RETURN(Geometry g, GeometryOf(spec, slice));
  TensorSpec out = ReadSpec(spec, spec.dtype, spec.shape, g.rows * g.seg_bytes, nullptr);
  const bool lead = slice.dim == SliceDim::kLeading || spec.shape.size() == 1;
  (lead ? out.shape.front() : out.shape.back()) = slice.length;
  return out;
}

Result<LoadedTensor> Runtime::LoadSlice(const TensorSpec& spec, const TensorSlice& slice,
                                        StreamHandle stream, void* dst, uint64_t dst_bytes) {
  HCT_ASSIGN_OR_RETURN(TensorSpec out, SliceOf(spec, slice));
  HCT_ASSIGN_OR_RETURN(Geometry g, GeometryOf(spec, slice));
  if (dst && dst_bytes < out.length)
    return Status::InvalidArgument("destination holds " + std::to_string(dst_bytes) +
                                   " bytes, the slice needs " + std::to_string(out.length))
        .WithContext(Ctx(spec));
  if (!spec.source) return Status::InvalidArgument("no source").WithContext(Ctx(spec));
  if (out.length == 0)
    return LoadedTensor(LoadedTensor::Key{}, std::make_shared<const TensorSpec>(out), nullptr, nullptr, nullptr,
                        placement(), device());
  if (spec.file()) {
    auto r = RangeSlice(*this, spec, out, g, stream, dst, dst_bytes);
    // A cache entry that is gone or corrupt: its HCT source, as whole-tensor loads do.
    const bool fall_back = !r.ok() && spec.has_compressed_source() &&
                           (r.status().code() == Code::kNotFound ||
                            r.status().code() == Code::kCorruption);
    if (!fall_back) return r;
  }
  if (!spec.has_compressed_source())
    return Status::InvalidArgument("no source").WithContext(Ctx(spec));
  return HctSlice(*this, spec, out, g, stream, dst, dst_bytes);
}

}  // namespace hct
