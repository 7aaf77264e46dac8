#include "runtime/detail/verify.h"

#include <xxhash.h>

#include <algorithm>
#include <cstdio>
#include <memory>

#include "runtime/detail/file_reader.h"

namespace hct::detail {

std::string TensorCtx(const std::string& name) { return "tensor '" + name + "'"; }

Status ChecksumMismatch(const std::string& file, const std::string& tensor,
                        const std::string& part, uint64_t got, uint64_t want) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "checksum mismatch: XXH3 %016llx, expected %016llx",
                (unsigned long long)got, (unsigned long long)want);
  return Status::Corruption(part.empty() ? std::string(buf) : part + ": " + buf)
      .WithContext(TensorCtx(tensor))
      .WithContext(file);
}

Status CheckWhole(const std::string& name, const FileRange& r, const std::byte* data, uint64_t n,
                  uint64_t want) {
  const uint64_t h = XXH3_64bits(data, n);
  return h == want ? Status::OK() : ChecksumMismatch(r.path, name, "", h, want);
}

uint64_t BlockPieceBytes(const FileRange& r, uint64_t length, bool verify, uint64_t slot_bytes) {
  if (!verify || r.block_xxh3.empty() || r.block_bytes == 0 || r.block_bytes % kAlign != 0)
    return 0;
  if (r.block_xxh3.size() != (length + r.block_bytes - 1) / r.block_bytes) return 0;
  // The O_DIRECT cover of a piece starting at an unaligned offset takes one more page.
  const uint64_t room = slot_bytes - (r.offset % kAlign ? kAlign : 0);
  return room / r.block_bytes * r.block_bytes;  // 0 when a block does not fit a slot
}

namespace {
Status BlockMismatch(const std::string& name, const FileRange& r, uint64_t from, uint64_t len,
                     uint64_t h) {
  const uint64_t b = from / r.block_bytes;
  const std::string part = "block " + std::to_string(b) + " (bytes " + std::to_string(from) +
                           ".." + std::to_string(from + len) + " of the tensor)";
  return ChecksumMismatch(r.path, name, part, h, r.block_xxh3[b]);
}
}  // namespace

Status CheckBlocks(const std::string& name, const FileRange& r, uint64_t tensor_off,
                   const std::byte* data, uint64_t n) {
  for (uint64_t o = 0; o < n; o += r.block_bytes) {
    const uint64_t len = std::min(r.block_bytes, n - o);
    const uint64_t h = XXH3_64bits(data + o, len);
    if (h != r.block_xxh3[(tensor_off + o) / r.block_bytes])
      return BlockMismatch(name, r, tensor_off + o, len, h);
  }
  return Status::OK();
}

Status ReadAndCheckBlocks(int fd, std::byte* dst, uint64_t file_off, uint64_t n,
                          const std::string& name, const FileRange& r, uint64_t copy_step,
                          const std::function<Status(uint64_t)>& after) {
  const uint64_t kHashStep = copy_step ? copy_step : 512 << 10;
  thread_local std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> state(XXH3_createState(),
                                                                              &XXH3_freeState);
  if (!state) return Status::ResourceExhausted("XXH3_createState");
  const uint64_t t0 = file_off - r.offset;
  for (uint64_t o = 0; o < n; o += r.block_bytes) {
    const uint64_t len = std::min(r.block_bytes, n - o);
    XXH3_64bits_reset(state.get());
    for (uint64_t k = 0; k < len; k += kHashStep) {
      const uint64_t step = std::min(kHashStep, len - k);
      HCT_RETURN_IF_ERROR(ReadFully(fd, dst + o + k, step, step, file_off + o + k, r.path)
                              .WithContext(TensorCtx(name)));
      XXH3_64bits_update(state.get(), dst + o + k, step);
      if (copy_step) HCT_RETURN_IF_ERROR(after(o + k + step).WithContext(TensorCtx(name)));
    }
    const uint64_t h = XXH3_64bits_digest(state.get());
    if (h != r.block_xxh3[(t0 + o) / r.block_bytes]) return BlockMismatch(name, r, t0 + o, len, h);
  }
  return Status::OK();
}

}  // namespace hct::detail
