// zstd helpers (codec/detail/zstd_util.h). The literal-mode switch is an experimental zstd
// parameter, hence ZSTD_STATIC_LINKING_ONLY; it is only used for measurements.
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

#include "codec/detail/zstd_util.h"

#include <memory>
#include <string>

#include "hct/detail/check_host.h"

namespace hct::detail {
namespace {

struct CCtxFree {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct DCtxFree {
  void operator()(ZSTD_DCtx* c) const { ZSTD_freeDCtx(c); }
};

ZSTD_CCtx* ThreadCCtx() {
  thread_local std::unique_ptr<ZSTD_CCtx, CCtxFree> ctx(ZSTD_createCCtx());
  return ctx.get();
}
ZSTD_DCtx* ThreadDCtx() {
  thread_local std::unique_ptr<ZSTD_DCtx, DCtxFree> ctx(ZSTD_createDCtx());
  return ctx.get();
}

}  // namespace

Status ZstdCompress(std::span<const std::byte> src, const ZstdSettings& s,
                    std::vector<std::byte>* out) {
  ZSTD_CCtx* cctx = ThreadCCtx();
  if (cctx == nullptr) return Status::ResourceExhausted("ZSTD_createCCtx failed");
  HCT_CHECK(zstd, ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters));
  HCT_CHECK(zstd, ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, s.level));
  if (s.strategy != 0)
    HCT_CHECK(zstd, ZSTD_CCtx_setParameter(cctx, ZSTD_c_strategy, s.strategy));
  if (s.literal_mode != 0)
    HCT_CHECK(zstd, ZSTD_CCtx_setParameter(cctx, ZSTD_c_literalCompressionMode, s.literal_mode));
  if (s.min_match != 0)
    HCT_CHECK(zstd, ZSTD_CCtx_setParameter(cctx, ZSTD_c_minMatch, s.min_match));
  // Frames carry their content size so a decoder can check it before writing.
  HCT_CHECK(zstd, ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1));
  const size_t old = out->size();
  out->resize(old + ZSTD_compressBound(src.size()));
  size_t n = 0;
  Status st = HCT_CALL_STATUS(
      zstd, n = ZSTD_compress2(cctx, out->data() + old, out->size() - old, src.data(), src.size()));
  if (!st.ok()) {
    out->resize(old);
    return st;
  }
  out->resize(old + n);
  return Status::OK();
}

Status ZstdDecompressExact(std::span<const std::byte> src, std::span<std::byte> dst) {
  ZSTD_DCtx* dctx = ThreadDCtx();
  if (dctx == nullptr) return Status::ResourceExhausted("ZSTD_createDCtx failed");
  const unsigned long long content = ZSTD_getFrameContentSize(src.data(), src.size());
  if (content == ZSTD_CONTENTSIZE_ERROR)
    return Status::Corruption("zstd frame header is invalid");
  if (content != ZSTD_CONTENTSIZE_UNKNOWN && content != dst.size())
    return Status::Corruption("zstd frame holds " + std::to_string(content) + " bytes, expected " +
                              std::to_string(dst.size()));
  size_t n = 0;
  Status st = HCT_CALL_STATUS(
      zstd, n = ZSTD_decompressDCtx(dctx, dst.data(), dst.size(), src.data(), src.size()));
  if (!st.ok()) return Status(Code::kCorruption, st.message());
  if (n != dst.size())
    return Status::Corruption("zstd frame decoded to " + std::to_string(n) + " bytes, expected " +
                              std::to_string(dst.size()));
  return Status::OK();
}

}  // namespace hct::detail
