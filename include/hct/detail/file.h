// hct/detail/file.h: the file primitives every component shares (internal).
//
// ReadFile: pread-based reads with bounds checks. MappedFile: read-only mmap.
// AtomicFile: writes to "<path>.tmp.<pid>.<n>", then fsync, rename and fsync of the directory,
// so a reader or an index never sees a partial file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "hct/status.h"

namespace hct::detail {

class ReadFile {
 public:
  static Result<ReadFile> Open(const std::string& path, bool direct = false);
  ReadFile() = default;
  ReadFile(ReadFile&& o) noexcept;
  ReadFile& operator=(ReadFile&& o) noexcept;
  ~ReadFile();

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }
  int fd() const { return fd_; }
  // Reads exactly dst.size() bytes at offset; OutOfRange when that passes the end of the file.
  Status ReadAt(uint64_t offset, std::span<std::byte> dst) const;

 private:
  int fd_ = -1;
  uint64_t size_ = 0;
  std::string path_;
};

class MappedFile {
 public:
  static Result<MappedFile> Open(const std::string& path);
  MappedFile() = default;
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  ~MappedFile();

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }
  const std::byte* data() const { return data_; }
  std::span<const std::byte> bytes() const { return {data_, size_}; }

 private:
  const std::byte* data_ = nullptr;
  uint64_t size_ = 0;
  std::string path_;
};

class AtomicFile {
 public:
  // Creates the temporary file next to `path`. Fails with AlreadyExists when `path` exists and
  // !overwrite.
  static Result<AtomicFile> Create(const std::string& path, bool overwrite);
  AtomicFile() = default;
  AtomicFile(AtomicFile&& o) noexcept;
  AtomicFile& operator=(AtomicFile&& o) noexcept;
  ~AtomicFile();  // removes the temporary file unless Commit() succeeded

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return tmp_; }
  int fd() const { return fd_; }
  uint64_t offset() const { return off_; }
  Status Append(std::span<const std::byte> data);
  Status Append(const void* data, size_t n) {
    return Append({static_cast<const std::byte*>(data), n});
  }
  // Appends zero bytes up to the next multiple of `alignment`.
  Status PadTo(uint64_t alignment);
  Status WriteAt(uint64_t offset, std::span<const std::byte> data);
  // fsync, rename over `path`, fsync the directory.
  Status Commit();
  void Abandon();

 private:
  int fd_ = -1;
  uint64_t off_ = 0;
  bool overwrite_ = false;
  std::string path_, tmp_;
};

// Prefix of temporary names AtomicFile uses, so cleaners can recognise leftovers.
inline constexpr const char* kTempMarker = ".tmp.";

// fsync a directory (after a rename into it).
Status SyncDir(const std::string& dir);

}  // namespace hct::detail
