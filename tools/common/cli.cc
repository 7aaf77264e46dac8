// tools/common/cli.h.
#include "tools/common/cli.h"

#include <cstdio>

namespace hct::cli {

int ExitFor(const Status& s) {
  switch (s.code()) {
    case Code::kOk: return kOk;
    case Code::kInvalidArgument: return kUsage;
    case Code::kNotFound: return kNotFound;
    case Code::kIOError: return kIO;
    case Code::kCorruption:
    case Code::kOutOfRange:
    case Code::kUnsupported: return kCorrupt;
    case Code::kBusy: return kBusy;
    case Code::kResourceExhausted: return kNoSpace;
    case Code::kAlreadyExists: return kExists;
    default: return kInternal;
  }
}

std::string Escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\r') out += "\\r";
    else if (c < 0x20 || c == 0x7f) {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string EscapeText(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t start = 0; start <= text.size();) {
    size_t nl = text.find('\n', start);
    out += Escape(text.substr(start, nl == std::string_view::npos ? nl : nl - start));
    if (nl == std::string_view::npos) break;
    out += '\n';
    start = nl + 1;
  }
  return out;
}

int GuardedMain(const char* tool, const std::function<int()>& body) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "%s: out of memory\n", tool);
    return kNoSpace;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: internal error: %s\n", tool, Escape(e.what()).c_str());
    return kInternal;
  } catch (...) {
    std::fprintf(stderr, "%s: internal error\n", tool);
    return kInternal;
  }
}

}  // namespace hct::cli
