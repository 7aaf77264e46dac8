// Check rules for the host libraries: zstd, SQLite and POSIX calls.
#pragma once

#include <cerrno>
#include <cstring>

#include "hct/detail/check.h"

#if __has_include(<zstd.h>)
#include <zstd.h>
#endif
#if __has_include(<sqlite3.h>)
#include <sqlite3.h>
#endif

namespace hct::detail {

#if __has_include(<zstd.h>)
// zstd returns a size that doubles as an error code.
inline Status CheckCall(zstd_tag, size_t rc, const char* call, const char* file, int line) {
  if (!ZSTD_isError(rc)) return Status::OK();
  return CallFailed(Code::kInternal, call, ZSTD_getErrorName(rc), file, line);
}
#endif

#if __has_include(<sqlite3.h>)
// SQLITE_OK, SQLITE_ROW and SQLITE_DONE are successes; anything else is an error.
inline Status CheckCall(sqlite_tag, int rc, const char* call, const char* file, int line) {
  if (rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE) return Status::OK();
  Code code = (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) ? Code::kBusy
              : (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB) ? Code::kCorruption
              : (rc == SQLITE_FULL) ? Code::kResourceExhausted
              : (rc == SQLITE_IOERR || rc == SQLITE_CANTOPEN || rc == SQLITE_READONLY)
                  ? Code::kIOError
                  : Code::kInternal;
  return CallFailed(code, call, sqlite3_errstr(rc), file, line);
}
#endif

// POSIX calls return -1 and set errno.
template <class Int>
inline Status CheckCall(posix_tag, Int rc, const char* call, const char* file, int line) {
  if (rc != Int(-1)) return Status::OK();
  int err = errno;
  return CallFailed(err == ENOSPC ? Code::kResourceExhausted : Code::kIOError, call,
                    std::strerror(err), file, line);
}

}  // namespace hct::detail
