// runtime/detail/verify.h: checksum verification of loaded bytes (whole-tensor XXH3-64 and
// block checksums) and the one message of a checksum failure (internal).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "hct/runtime.h"

namespace hct::detail {

// "tensor 'w'"
std::string TensorCtx(const std::string& name);

// The one form of a checksum failure, naming file and tensor (and `part` when not empty:
// "block 2 (bytes 16384..24576 of the tensor)", "chunk 3 (stored bytes)"):
//   Corruption: <file>: tensor '<name>': [<part>: ]checksum mismatch: XXH3 <got>, expected <want>
Status ChecksumMismatch(const std::string& file, const std::string& tensor,
                        const std::string& part, uint64_t got, uint64_t want);

// XXH3-64 of [data, data + n) against `want` (ChecksumMismatch on a mismatch).
Status CheckWhole(const std::string& name, const FileRange& r, const std::byte* data, uint64_t n,
                  uint64_t want);

// Piece length (whole blocks) for a tensor of `length` bytes at `r` verified by block checksums
// when a piece must fit `slot_bytes` (with room for the O_DIRECT cover at unaligned offsets);
// 0: not verified by blocks (none, a count that does not match, a block larger than a slot).
uint64_t BlockPieceBytes(const FileRange& r, uint64_t length, bool verify, uint64_t slot_bytes);

// Verifies bytes [tensor_off, tensor_off + n) of the tensor (tensor_off on a block boundary).
Status CheckBlocks(const std::string& name, const FileRange& r, uint64_t tensor_off,
                   const std::byte* data, uint64_t n);

// Reads bytes [file_off, file_off + n) of the tensor (buffered fd; file_off - r.offset on a block
// boundary) into dst, hashing each step right after its read while it is in the core's cache.
// Steps are copy_step bytes (512K when 0); `after(done)` runs after each step when copy_step > 0
// with the bytes of the piece read (and hashed) so far.
Status ReadAndCheckBlocks(int fd, std::byte* dst, uint64_t file_off, uint64_t n,
                          const std::string& name, const FileRange& r, uint64_t copy_step,
                          const std::function<Status(uint64_t)>& after);

}  // namespace hct::detail
