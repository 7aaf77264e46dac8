// hct/status.h: the one error style at the library boundary (after leveldb's Status).
//
// Every fallible public function returns Status or Result<T>. A Status carries a code and a
// message that names what failed (file, tensor, library call and source location).
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace hct {

enum class Code : int {
  kOk = 0,
  kInvalidArgument,  // caller passed something unusable (bad option, bad shape)
  kNotFound,         // file, tensor or cache entry absent
  kCorruption,       // checksum mismatch, malformed header, inconsistent index
  kIOError,          // a system call failed (open, read, write, rename, fsync...)
  kUnsupported,      // valid but not handled: newer major version, unknown codec, dtype
  kOutOfRange,       // offsets or sizes past an end, integer overflow in a shape
  kAlreadyExists,    // refusing to overwrite without --force
  kBusy,             // leased or locked by another process
  kResourceExhausted,// out of memory, disk full, budget exceeded
  kInternal,         // a library call (CUDA, zstd, SQLite, FFTW, cuBLAS, cuFFT) failed
};

std::string_view CodeName(Code c);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(Code code, std::string msg) : code_(code), msg_(std::move(msg)) {}

  static Status OK() { return Status(); }
  static Status InvalidArgument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
  static Status NotFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
  static Status Corruption(std::string m) { return {Code::kCorruption, std::move(m)}; }
  static Status IOError(std::string m) { return {Code::kIOError, std::move(m)}; }
  static Status Unsupported(std::string m) { return {Code::kUnsupported, std::move(m)}; }
  static Status OutOfRange(std::string m) { return {Code::kOutOfRange, std::move(m)}; }
  static Status AlreadyExists(std::string m) { return {Code::kAlreadyExists, std::move(m)}; }
  static Status Busy(std::string m) { return {Code::kBusy, std::move(m)}; }
  static Status ResourceExhausted(std::string m) { return {Code::kResourceExhausted, std::move(m)}; }
  static Status Internal(std::string m) { return {Code::kInternal, std::move(m)}; }
  // IOError from errno, naming the operation and path: "open /x/y: No such file or directory".
  static Status FromErrno(std::string_view op, std::string_view path, int err);

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return msg_; }
  // "Corruption: model.hct: tensor 'w': chunk 3 checksum mismatch".
  std::string ToString() const;

  // Prefixes context ("file.safetensors", "tensor 'x'") so errors name what they are about.
  Status WithContext(std::string_view ctx) const&;
  Status WithContext(std::string_view ctx) &&;

 private:
  Code code_ = Code::kOk;
  std::string msg_;
};

// A value or the Status saying why there is none.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status s) : v_(std::move(s)) {      // NOLINT: implicit by design
    assert(!std::get<Status>(v_).ok() && "Result constructed from an OK status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  Status status() const { return ok() ? Status::OK() : std::get<Status>(v_); }

  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace hct

#define HCT_CONCAT_INNER_(a, b) a##b
#define HCT_CONCAT_(a, b) HCT_CONCAT_INNER_(a, b)

// Returns the Status of `expr` from the enclosing function when it is not OK.
#define HCT_RETURN_IF_ERROR(expr)                 \
  do {                                            \
    ::hct::Status _hct_st = (expr);               \
    if (!_hct_st.ok()) return _hct_st;            \
  } while (0)

// `HCT_ASSIGN_OR_RETURN(auto x, MakeX());` unwraps a Result or returns its Status.
#define HCT_ASSIGN_OR_RETURN(lhs, expr) \
  HCT_ASSIGN_OR_RETURN_IMPL_(HCT_CONCAT_(_hct_res_, __LINE__), lhs, expr)
#define HCT_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()
