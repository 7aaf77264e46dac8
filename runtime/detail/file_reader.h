// runtime/detail/file_reader.h: the files a runtime reads, each opened once with a buffered and
// (when the file system allows it) an O_DIRECT descriptor, and the one read of a byte range
// with O_DIRECT and its buffered fallback (internal).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <utility>

#include "hct/runtime.h"

namespace hct::detail {

inline constexpr uint64_t kAlign = 4096;  // O_DIRECT offset/length/buffer alignment we use
inline uint64_t AlignDown(uint64_t x) { return x & ~(kAlign - 1); }
inline uint64_t AlignUp(uint64_t x) { return (x + kAlign - 1) & ~(kAlign - 1); }
// Bytes of the 4096-aligned cover of [off, off + n): what an O_DIRECT read of it needs.
inline uint64_t CoverBytes(uint64_t off, uint64_t n) { return AlignUp(off + n) - AlignDown(off); }

struct OpenFile {
  std::string path;
  int fd = -1;         // buffered
  int direct_fd = -1;  // O_DIRECT, -1 when the file system refuses it (or O_DIRECT is off)
  uint64_t size = 0;
};

// Reads into dst until at least min_bytes of the `want` asked for are there (pread from off).
// OutOfRange when the file ends first ("file shrank while reading").
Status ReadFully(int fd, std::byte* dst, uint64_t want, uint64_t min_bytes, uint64_t off,
                 const std::string& path);

// Reads bytes [off, off + n) of `f` into `buf` (4096-aligned, CoverBytes(off, n) long) and
// returns where they are: buf + off % 4096. `direct`: one O_DIRECT read of the aligned cover,
// read buffered instead when the file system refuses O_DIRECT for it (IOError).
Result<std::byte*> ReadRange(const OpenFile& f, bool direct, std::byte* buf, uint64_t off,
                             uint64_t n);

// ReadRange of [off, off + n) in steps of `step` bytes (a multiple of 4096; 0: one step), each
// landing where the one read would put it, with the XXH3-64 of the bytes in *xxh3 (when not
// null) hashed step by step right after each step's read, while it is in the core's cache.
Result<std::byte*> ReadHashed(const OpenFile& f, bool direct, std::byte* buf, uint64_t off,
                              uint64_t n, uint64_t* xxh3, uint64_t step);

// Whether less than half of the pages of these ranges of `f` are in the page cache (mincore on
// a mapping that is never touched).
bool MostlyCold(const OpenFile& f, std::span<const std::pair<uint64_t, uint64_t>> ranges);
// Whether to read these ranges with O_DIRECT: mode on, or auto and mostly cold.
bool UseDirect(const OpenFile& f, ODirectMode mode,
               std::span<const std::pair<uint64_t, uint64_t>> ranges);

// The open files of a runtime by path, opened on first use and kept open.
class FileTable {
 public:
  explicit FileTable(ODirectMode mode) : mode_(mode) {}
  FileTable(const FileTable&) = delete;
  FileTable& operator=(const FileTable&) = delete;
  ~FileTable();
  // NotFound when the file does not exist; IOError naming the path otherwise.
  Result<const OpenFile*> Open(const std::string& path);
  ODirectMode mode() const { return mode_; }

 private:
  ODirectMode mode_;
  std::map<std::string, std::unique_ptr<OpenFile>> files_;
};

}  // namespace hct::detail
