#include "hct/dtype.h"

#include <array>

namespace hct {
namespace {

struct Info {
  DType t;
  std::string_view name;
  int bits;
  bool is_float;
};

constexpr std::array<Info, kNumDTypes> kInfo = {{
    {DType::kBOOL, "BOOL", 8, false},      {DType::kU8, "U8", 8, false},
    {DType::kI8, "I8", 8, false},          {DType::kF8_E5M2, "F8_E5M2", 8, true},
    {DType::kF8_E4M3, "F8_E4M3", 8, true}, {DType::kF8_E8M0, "F8_E8M0", 8, true},
    {DType::kI16, "I16", 16, false},       {DType::kU16, "U16", 16, false},
    {DType::kF16, "F16", 16, true},        {DType::kBF16, "BF16", 16, true},
    {DType::kI32, "I32", 32, false},       {DType::kU32, "U32", 32, false},
    {DType::kF32, "F32", 32, true},        {DType::kC64, "C64", 64, true},
    {DType::kF64, "F64", 64, true},        {DType::kI64, "I64", 64, false},
    {DType::kU64, "U64", 64, false},       {DType::kF4, "F4", 4, true},
    {DType::kF6_E2M3, "F6_E2M3", 6, true}, {DType::kF6_E3M2, "F6_E3M2", 6, true},
}};

const Info& Get(DType t) { return kInfo[static_cast<size_t>(t)]; }

}  // namespace

int DTypeBits(DType t) { return Get(t).bits; }
std::string_view DTypeName(DType t) { return Get(t).name; }
bool IsFloat(DType t) { return Get(t).is_float; }

std::optional<DType> ParseDType(std::string_view name) {
  for (const Info& i : kInfo)
    if (i.name == name) return i.t;
  return std::nullopt;
}

std::optional<uint64_t> DTypeBytes(DType t, uint64_t n) {
  const uint64_t bits = static_cast<uint64_t>(DTypeBits(t));
  if (n != 0 && n > UINT64_MAX / bits) return std::nullopt;
  const uint64_t total = n * bits;
  if (total % 8 != 0) return std::nullopt;
  return total / 8;
}

}  // namespace hct
