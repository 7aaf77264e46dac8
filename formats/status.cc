#include "hct/status.h"

#include <cstring>

namespace hct {

std::string_view CodeName(Code c) {
  switch (c) {
    case Code::kOk: return "OK";
    case Code::kInvalidArgument: return "Invalid argument";
    case Code::kNotFound: return "Not found";
    case Code::kCorruption: return "Corruption";
    case Code::kIOError: return "IO error";
    case Code::kUnsupported: return "Unsupported";
    case Code::kOutOfRange: return "Out of range";
    case Code::kAlreadyExists: return "Already exists";
    case Code::kBusy: return "Busy";
    case Code::kResourceExhausted: return "Resource exhausted";
    case Code::kInternal: return "Internal";
  }
  return "Unknown";
}

Status Status::FromErrno(std::string_view op, std::string_view path, int err) {
  std::string m(op);
  m.append(" ").append(path).append(": ").append(std::strerror(err));
  return Status(err == ENOSPC || err == EDQUOT ? Code::kResourceExhausted
                : err == ENOENT              ? Code::kNotFound
                                             : Code::kIOError,
                std::move(m));
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string s(CodeName(code_));
  s.append(": ").append(msg_);
  return s;
}

Status Status::WithContext(std::string_view ctx) const& {
  Status s = *this;
  return std::move(s).WithContext(ctx);
}

Status Status::WithContext(std::string_view ctx) && {
  if (ok()) return std::move(*this);
  std::string m(ctx);
  m.append(": ").append(msg_);
  msg_ = std::move(m);
  return std::move(*this);
}

}  // namespace hct
