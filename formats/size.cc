// ParseSize (include/hct/units.h).
#include <cctype>
#include <algorithm>
#include <limits>
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
  // Exactly, in decimal: bytes = mantissa x 2^shift / 10^k for "<int>.<k digits>". A size is a
  // whole number of bytes (or weights): "1.5K" is 1536, "1.5" or "0.1G" has no meaning and is
  // refused rather than rounded (issue 10 campaign: "--chunk-size 1.5" was taken as 2).
  const size_t dot = num.find('.');
  std::string int_part = num.substr(0, dot), frac = dot == std::string::npos ? "" : num.substr(dot + 1);
  while (!frac.empty() && frac.back() == '0') frac.pop_back();
  int_part.erase(0, std::min(int_part.find_first_not_of('0'), int_part.size()));
  if (int_part.size() + frac.size() > 36) return bad("too large or too precise");
  unsigned __int128 mant = 0, scale = 1;
  for (char c : int_part + frac) mant = mant * 10 + static_cast<unsigned>(c - '0');
  for (size_t k = 0; k < frac.size(); ++k) scale *= 10;
  const unsigned __int128 whole = mant / scale, rest = mant % scale;
  // bytes = whole << shift + (rest << shift) / scale; the first term bounds the size.
  if (whole > (static_cast<unsigned __int128>(std::numeric_limits<uint64_t>::max()) >> shift))
    return bad("too large");
  const unsigned __int128 part = rest << shift;  // rest < 10^36 < 2^120, shift <= 50: may wrap
  if (rest != 0 && (frac.size() > 19 || part % scale != 0))
    return bad("not a whole number of bytes");
  const unsigned __int128 bytes = (whole << shift) + (rest == 0 ? 0 : part / scale);
  if (bytes > std::numeric_limits<uint64_t>::max()) return bad("too large");
  const uint64_t v = static_cast<uint64_t>(bytes);
  if (v > max) return bad("above the limit " + std::to_string(max));
  return v;
}

}  // namespace hct
