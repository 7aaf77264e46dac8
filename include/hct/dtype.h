// hct/dtype.h: element types, named as in the safetensors spec.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace hct {

enum class DType : uint8_t {
  kBOOL,
  kU8,
  kI8,
  kF8_E5M2,
  kF8_E4M3,
  kF8_E8M0,
  kI16,
  kU16,
  kF16,
  kBF16,
  kI32,
  kU32,
  kF32,
  kC64,  // complex64: two F32
  kF64,
  kI64,
  kU64,
  kF4,      // float4 e2m1, two per byte
  kF6_E2M3, // float6, four per three bytes
  kF6_E3M2,
};

inline constexpr int kNumDTypes = 20;

// Bits per element (4 for F4, 6 for F6_*).
int DTypeBits(DType t);
// Safetensors name: "BF16", "F8_E4M3", ...
std::string_view DTypeName(DType t);
// Parses a safetensors dtype name; nullopt when unknown.
std::optional<DType> ParseDType(std::string_view name);
bool IsFloat(DType t);
// Byte size of n elements, rounding sub-byte types up; nullopt on overflow or when n elements of
// a sub-byte type do not fill whole bytes.
std::optional<uint64_t> DTypeBytes(DType t, uint64_t n);

}  // namespace hct
