// Advisory locks for the cache (internal). flock(2) locks belong to an open file description, so
// they conflict between processes and between two opens in one process, and the kernel drops them
// when the process dies (no stale locks after a crash).
#pragma once

#include <string>

#include "hct/status.h"

namespace hct::detail {

class FileLock {
 public:
  // Opens (creating when `create`) `path` and takes flock LOCK_SH or LOCK_EX. With `wait` false,
  // Busy when another holder conflicts.
  static Result<FileLock> Acquire(const std::string& path, bool exclusive, bool wait,
                                  bool create = true);
  FileLock() = default;
  FileLock(FileLock&& o) noexcept;
  FileLock& operator=(FileLock&& o) noexcept;
  ~FileLock();
  void Release();
  int fd() const { return fd_; }
  bool held() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// Fault injection for the crash tests: when $HCT_CACHE_CRASH_AT is N > 0, the N-th call (counted
// over the whole process) kills the process with SIGKILL. `where` names the point for logs.
void CrashPoint(const char* where);
// Tests: arm (n > 0) or disarm (0) the crash point counter in this process, resetting the count.
void SetCrashAt(long n);
// Crash points passed so far in this process (to size the tests' kill ranges).
long CrashPointsPassed();

}  // namespace hct::detail
