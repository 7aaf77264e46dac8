#include "cache/detail/locks.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <utility>

#include "hct/cache.h"
#include "hct/detail/check_host.h"

namespace hct::detail {

Result<FileLock> FileLock::Acquire(const std::string& path, bool exclusive, bool wait,
                                   bool create) {
  int fd = ::open(path.c_str(), (create ? O_RDWR | O_CREAT : O_RDONLY) | O_CLOEXEC, 0644);
  if (fd < 0) return Status::FromErrno("open lock", path, errno);
  int op = (exclusive ? LOCK_EX : LOCK_SH) | (wait ? 0 : LOCK_NB);
  int rc;
  do {
    rc = ::flock(fd, op);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    int e = errno;
    ::close(fd);
    if (e == EWOULDBLOCK) return Status::Busy(path + ": locked by another process");
    return Status::FromErrno("flock", path, e);
  }
  FileLock l;
  l.fd_ = fd;
  return l;
}

FileLock::FileLock(FileLock&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
FileLock& FileLock::operator=(FileLock&& o) noexcept {
  if (this != &o) {
    Release();
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}
FileLock::~FileLock() { Release(); }
void FileLock::Release() {
  if (fd_ >= 0) ::close(fd_);  // closing the last descriptor drops the flock
  fd_ = -1;
}

namespace {
std::atomic<long> g_crash_count{0};
std::atomic<long>& CrashTarget() {
  static std::atomic<long> target{[] {
    const char* v = std::getenv("HCT_CACHE_CRASH_AT");
    return v ? std::atol(v) : 0L;
  }()};
  return target;
}
}  // namespace

void CrashPoint(const char* where) {
  long n = g_crash_count.fetch_add(1) + 1;
  long target = CrashTarget().load();
  if (target > 0 && n == target) ::kill(::getpid(), SIGKILL);
}

void SetCrashAt(long n) {
  g_crash_count.store(0);
  CrashTarget().store(n);
}

long CrashPointsPassed() { return g_crash_count.load(); }

}  // namespace hct::detail

namespace hct {

// ------------------------------------------------------------------------------------ Lease
Result<Lease> Lease::Acquire(const std::string& path) {
  // An evict or re-warm may unlink or replace the file between our open and our lock; after
  // locking, the path must still name the inode we locked, else retry on the new file.
  for (int attempt = 0; attempt < 16; ++attempt) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) return Status::NotFound(path + ": cache entry is gone (evicted)");
      return Status::FromErrno("open", path, errno);
    }
    int rc;
    do {
      rc = ::flock(fd, LOCK_SH);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
      int e = errno;
      ::close(fd);
      return Status::FromErrno("flock", path, e);
    }
    struct stat a {}, b {};
    if (::fstat(fd, &a) == 0 && ::stat(path.c_str(), &b) == 0 && a.st_ino == b.st_ino &&
        a.st_dev == b.st_dev) {
      Lease l;
      l.fd_ = fd;
      l.path_ = path;
      return l;
    }
    ::close(fd);
  }
  return Status::Busy(path + ": entry keeps changing; could not take a lease");
}

Lease::Lease(Lease&& o) noexcept : fd_(std::exchange(o.fd_, -1)), path_(std::move(o.path_)) {}
Lease& Lease::operator=(Lease&& o) noexcept {
  if (this != &o) {
    Release();
    fd_ = std::exchange(o.fd_, -1);
    path_ = std::move(o.path_);
  }
  return *this;
}
Lease::~Lease() { Release(); }
void Lease::Release() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

}  // namespace hct
