#include "hct/detail/file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <filesystem>
#include <utility>
#include <vector>

namespace hct::detail {

// ---------------------------------------------------------------------------- ReadFile
Result<ReadFile> ReadFile::Open(const std::string& path, bool direct) {
  int flags = O_RDONLY | O_CLOEXEC;
#ifdef O_DIRECT
  if (direct) flags |= O_DIRECT;
#endif
  int fd = ::open(path.c_str(), flags);
  if (fd < 0) return Status::FromErrno("open", path, errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    return Status::FromErrno("stat", path, e);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::InvalidArgument(path + ": not a regular file");
  }
  ReadFile f;
  f.fd_ = fd;
  f.size_ = static_cast<uint64_t>(st.st_size);
  f.path_ = path;
  return f;
}

ReadFile::ReadFile(ReadFile&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)), size_(o.size_), path_(std::move(o.path_)) {}
ReadFile& ReadFile::operator=(ReadFile&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(o.fd_, -1);
    size_ = o.size_;
    path_ = std::move(o.path_);
  }
  return *this;
}
ReadFile::~ReadFile() {
  if (fd_ >= 0) ::close(fd_);
}

Status ReadFile::ReadAt(uint64_t offset, std::span<std::byte> dst) const {
  if (offset > size_ || dst.size() > size_ - offset)
    return Status::OutOfRange(path_ + ": read of " + std::to_string(dst.size()) + " bytes at " +
                              std::to_string(offset) + " passes the end of the file (" +
                              std::to_string(size_) + " bytes)");
  size_t done = 0;
  while (done < dst.size()) {
    ssize_t n = ::pread(fd_, dst.data() + done, dst.size() - done, offset + done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("read", path_, errno);
    }
    if (n == 0)
      return Status::IOError(path_ + ": file shrank while being read (truncated meanwhile?)");
    done += static_cast<size_t>(n);
  }
  return Status::OK();
}

// -------------------------------------------------------------------------- MappedFile
Result<MappedFile> MappedFile::Open(const std::string& path) {
  HCT_ASSIGN_OR_RETURN(ReadFile rf, ReadFile::Open(path));
  MappedFile m;
  m.path_ = path;
  m.size_ = rf.size();
  if (m.size_ > 0) {
    void* p = ::mmap(nullptr, m.size_, PROT_READ, MAP_SHARED, rf.fd(), 0);
    if (p == MAP_FAILED) return Status::FromErrno("mmap", path, errno);
    m.data_ = static_cast<const std::byte*>(p);
  }
  return m;
}

MappedFile::MappedFile(MappedFile&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)),
      path_(std::move(o.path_)) {}
MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    path_ = std::move(o.path_);
  }
  return *this;
}
MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
}

// -------------------------------------------------------------------------- AtomicFile
namespace {
std::atomic<uint64_t> g_tmp_counter{0};

std::string DirOf(const std::string& path) {
  std::filesystem::path p(path);
  auto d = p.parent_path();
  return d.empty() ? std::string(".") : d.string();
}
}  // namespace

Status SyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("open directory", dir, errno);
  int rc = ::fsync(fd);
  int e = errno;
  ::close(fd);
  if (rc != 0) return Status::FromErrno("fsync directory", dir, e);
  return Status::OK();
}

Result<AtomicFile> AtomicFile::Create(const std::string& path, bool overwrite) {
  if (!overwrite && ::access(path.c_str(), F_OK) == 0)
    return Status::AlreadyExists(path + ": exists (use --force to overwrite)");
  AtomicFile f;
  f.path_ = path;
  f.overwrite_ = overwrite;
  f.tmp_ = path + kTempMarker + std::to_string(::getpid()) + "." +
           std::to_string(g_tmp_counter.fetch_add(1));
  f.fd_ = ::open(f.tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (f.fd_ < 0) return Status::FromErrno("create", f.tmp_, errno);
  return f;
}

AtomicFile::AtomicFile(AtomicFile&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)), off_(o.off_), overwrite_(o.overwrite_),
      path_(std::move(o.path_)), tmp_(std::move(o.tmp_)) {}
AtomicFile& AtomicFile::operator=(AtomicFile&& o) noexcept {
  if (this != &o) {
    Abandon();
    fd_ = std::exchange(o.fd_, -1);
    off_ = o.off_;
    overwrite_ = o.overwrite_;
    path_ = std::move(o.path_);
    tmp_ = std::move(o.tmp_);
  }
  return *this;
}
AtomicFile::~AtomicFile() { Abandon(); }

void AtomicFile::Abandon() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
    ::unlink(tmp_.c_str());
  }
}

Status AtomicFile::WriteAt(uint64_t offset, std::span<const std::byte> data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pwrite(fd_, data.data() + done, data.size() - done, offset + done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("write", tmp_, errno);
    }
    done += static_cast<size_t>(n);
  }
  return Status::OK();
}

Status AtomicFile::Append(std::span<const std::byte> data) {
  if (fd_ < 0) return Status::InvalidArgument(path_ + ": write after commit");
  HCT_RETURN_IF_ERROR(WriteAt(off_, data));
  off_ += data.size();
  return Status::OK();
}

Status AtomicFile::PadTo(uint64_t alignment) {
  uint64_t rem = off_ % alignment;
  if (rem == 0) return Status::OK();
  std::vector<std::byte> zeros(alignment - rem);
  return Append(zeros);
}

Status AtomicFile::Commit() {
  if (fd_ < 0) return Status::InvalidArgument(path_ + ": commit twice");
  if (::fsync(fd_) != 0) return Status::FromErrno("fsync", tmp_, errno);
  if (!overwrite_ && ::access(path_.c_str(), F_OK) == 0)
    return Status::AlreadyExists(path_ + ": appeared while writing (use --force to overwrite)");
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) return Status::FromErrno("rename", tmp_, errno);
  ::close(fd_);
  fd_ = -1;
  return SyncDir(DirOf(path_));
}

}  // namespace hct::detail
