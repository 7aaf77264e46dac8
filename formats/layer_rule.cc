// LayerOfTensor (hct/safetensors.h): the one layer-of-name rule, shared by the cache and the runtime.
#include <cctype>
#include <cstdlib>
#include <string>
#include <string_view>

#include "hct/safetensors.h"

namespace hct {

std::optional<int> LayerOfTensor(std::string_view name) {
  static const char* kKeys[] = {"layers.", "h.", "blocks.", "layer."};
  // The first component (split on '.') that is one of the keys and is followed by a number.
  size_t start = 0;
  while (start < name.size()) {
    for (const char* key : kKeys) {
      std::string_view k(key);
      if (name.compare(start, k.size(), k) != 0) continue;
      size_t p = start + k.size();
      size_t q = p;
      while (q < name.size() && std::isdigit(static_cast<unsigned char>(name[q]))) ++q;
      if (q > p && q - p <= 9 && (q == name.size() || name[q] == '.'))
        return std::atoi(std::string(name.substr(p, q - p)).c_str());
    }
    size_t dot = name.find('.', start);
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return std::nullopt;
}

}  // namespace hct
