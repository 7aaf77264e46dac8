// ParseSize (include/hct/units.h).
#include <cctype>
#include <cmath>
#include <string>

#include "hct/units.h"

namespace hct {
namespace {

// The shift of a unit spelled K, KB, KiB (any case), or 0 for none / "B"; -1 when unknown.
int UnitShift(std::string unit) {
  unit.erase(0, unit.find_first_not_of(' '));  // "5 G" as "5G"
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (unit.size() > 1 && unit.back() == 'B') unit.pop_back();   // "GB" -> "G", "GIB" -> "GI"
  if (unit.size() == 2 && unit.back() == 'I') unit.pop_back();  // "GI" -> "G"
  if (unit.empty() || unit == "B") return 0;
  static constexpr std::string_view kUnits = "KMGTP";
  const size_t pos = unit.size() == 1 ? kUnits.find(unit[0]) : std::string_view::npos;
  return pos == std::string_view::npos ? -1 : 10 * static_cast<int>(pos + 1);
}

}  // namespace

Result<uint64_t> ParseSize(std::string_view text, uint64_t max) {
  const std::string shown(text);
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument("size '" + shown + "': " + why +
                                   " (expected a number with an optional unit K, M, G, T, P, "
                                   "powers of 1024, e.g. 500G)");
  };
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  if (text.empty()) return bad("empty");
  if (text[0] == '-' || text[0] == '+') return bad("no sign allowed");
  size_t i = 0, dots = 0, digits = 0;
  for (; i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.');
       ++i)
    (text[i] == '.' ? dots : digits)++;
  if (digits == 0 || dots > 1) return bad("not a number");
  const int shift = UnitShift(std::string(text.substr(i)));
  if (shift < 0) return bad("unknown unit '" + std::string(text.substr(i)) + "'");
  const std::string num(text.substr(0, i));
  if (dots == 0) {  // integers exactly, without going through a double
    uint64_t v = 0;
    for (char c : num) {
      const uint64_t d = static_cast<uint64_t>(c - '0');
      if (v > (std::numeric_limits<uint64_t>::max() - d) / 10) return bad("too large");
      v = v * 10 + d;
    }
    if (shift && v > (std::numeric_limits<uint64_t>::max() >> shift)) return bad("too large");
    v <<= shift;
    if (v > max) return bad("above the limit " + std::to_string(max));
    return v;
  }
  const double bytes = std::ldexp(std::strtod(num.c_str(), nullptr), shift);
  // 2^64 as a double: anything at or above it does not fit.
  if (!std::isfinite(bytes) || bytes >= 18446744073709551616.0) return bad("too large");
  const uint64_t v = static_cast<uint64_t>(bytes + 0.5);  // nearest byte
  if (v > max) return bad("above the limit " + std::to_string(max));
  return v;
}

}  // namespace hct
