// Cache location, sizes and the layer rule.
#include <xxhash.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "hct/cache.h"

namespace hct {

std::vector<uint64_t> BlockXxh3(std::span<const std::byte> bytes, uint64_t block_bytes) {
  std::vector<uint64_t> out;
  if (block_bytes == 0) return out;
  out.reserve((bytes.size() + block_bytes - 1) / block_bytes);
  for (uint64_t o = 0; o < bytes.size(); o += block_bytes)
    out.push_back(XXH3_64bits(bytes.data() + o, std::min<uint64_t>(block_bytes, bytes.size() - o)));
  return out;
}

Result<std::string> ResolveCacheDir(const std::string& flag) {
  if (!flag.empty()) return flag;
  auto env = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    return v ? std::string(v) : std::string();
  };
  if (std::string d = env("HCT_CACHE_DIR"); !d.empty()) return d;
  if (std::string x = env("XDG_CACHE_HOME"); !x.empty()) return x + "/hct";
  if (std::string h = env("HOME"); !h.empty()) return h + "/.cache/hct";
  return Status::InvalidArgument(
      "no cache directory: pass --cache-dir or set HCT_CACHE_DIR, XDG_CACHE_HOME or HOME");
}

// ParseSize moved to formats/size.cc (include/hct/units.h): one parser for the project.

std::string FormatSize(uint64_t bytes) {
  const char* units[] = {"", "K", "M", "G", "T", "P"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0) {
    std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(bytes));
  } else {
    std::snprintf(buf, sizeof buf, v < 10 ? "%.2f%s" : v < 100 ? "%.1f%s" : "%.0f%s", v,
                  units[u]);
  }
  return buf;
}

}  // namespace hct
