// hct/detail/check.h: the one check macro for third-party library calls.
//
//   HCT_CHECK(zstd, n = ZSTD_decompress(...));   // returns a Status from the caller on error
//   Status s = HCT_CALL_STATUS(cuda, cudaMemcpyAsync(...));  // same check, as a value
//
// `lib` is one of zstd, sqlite, cuda, posix (and cublas in the benchmarks). The matching
// `detail/check_<lib>.h` (bench/bench_check_cublas.h) defines how that library reports failure; the resulting Status
// (Code::kInternal, or kIOError for posix) records the call text, file and line.
#pragma once

#include <string>
#include <string_view>

#include "hct/status.h"

namespace hct::detail {

struct zstd_tag {};
struct sqlite_tag {};
struct cuda_tag {};
struct cublas_tag {};
struct posix_tag {};

// "ZSTD_decompress(dst, n, src, m) failed: Corrupted block detected [codec/codec.cc:42]"
inline Status CallFailed(Code code, std::string_view call, std::string_view what,
                         const char* file, int line) {
  std::string m;
  m.reserve(call.size() + what.size() + 64);
  m.append(call).append(" failed: ").append(what).append(" [").append(file).append(":");
  m.append(std::to_string(line)).append("]");
  return Status(code, std::move(m));
}

}  // namespace hct::detail

#define HCT_CALL_STATUS(lib, call) \
  ::hct::detail::CheckCall(::hct::detail::lib##_tag{}, (call), #call, __FILE__, __LINE__)

#define HCT_CHECK(lib, call)                                  \
  do {                                                        \
    ::hct::Status _hct_chk = HCT_CALL_STATUS(lib, call);      \
    if (!_hct_chk.ok()) return _hct_chk;                      \
  } while (0)
