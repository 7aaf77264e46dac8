// Helpers of the tensor-parallel slice tests (CPU and GPU): files of random tensors of every
// dtype in odd shapes, and the expected slice computed element by element (independently of
// the runtime's byte arithmetic).
#pragma once

#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "hct/cache.h"
#include "hct/dtype.h"
#include "hct/runtime.h"

namespace hct::test {

// Bits [k * b, k * b + b) of a packed little-endian bit string (elements of b bits, b <= 64).
inline uint64_t GetElem(const std::vector<std::byte>& v, uint64_t k, int b) {
  uint64_t x = 0;
  for (int i = 0; i < b; ++i) {
    const uint64_t bit = k * uint64_t(b) + uint64_t(i);
    x |= uint64_t((uint8_t(v[bit / 8]) >> (bit % 8)) & 1u) << i;
  }
  return x;
}

inline void SetElem(std::vector<std::byte>& v, uint64_t k, int b, uint64_t x) {
  for (int i = 0; i < b; ++i) {
    const uint64_t bit = k * uint64_t(b) + uint64_t(i);
    uint8_t& c = reinterpret_cast<uint8_t&>(v[bit / 8]);
    c = uint8_t((c & ~(1u << (bit % 8))) | (((x >> i) & 1u) << (bit % 8)));
  }
}

// The slice of a row-major tensor `full` of `shape`, element by element: output element
// (i0, ..., in) is input element (i0 + start, ...) (leading) or (..., in + start) (trailing).
inline std::vector<std::byte> ExpectedSlice(const std::vector<std::byte>& full, DType dt,
                                            const std::vector<int64_t>& shape,
                                            const TensorSlice& s) {
  const int b = DTypeBits(dt);
  const bool lead = s.dim == SliceDim::kLeading || shape.size() == 1;
  uint64_t outer = 1, inner = 1;  // leading: outer = dims after 0; trailing: rows
  for (size_t i = 1; i < shape.size(); ++i) outer *= uint64_t(shape[i]);
  for (size_t i = 0; i + 1 < shape.size(); ++i) inner *= uint64_t(shape[i]);
  const uint64_t n = uint64_t(lead ? shape.front() : shape.back());
  const uint64_t count = lead ? uint64_t(s.length) * outer : inner * uint64_t(s.length);
  std::vector<std::byte> out((count * uint64_t(b) + 7) / 8);
  for (uint64_t j = 0; j < count; ++j) {
    uint64_t src;
    if (lead) {
      src = (j / outer + uint64_t(s.start)) * outer + j % outer;
    } else {
      const uint64_t row = j / uint64_t(s.length), col = j % uint64_t(s.length);
      src = row * n + col + uint64_t(s.start);
    }
    SetElem(out, j, b, GetElem(full, src, b));
  }
  return out;
}

struct SliceTensor {
  TensorSpec spec;
  std::vector<std::byte> bytes;
};

// Odd shapes (byte-exact for every dtype: sub-byte dtypes get widths that fill whole bytes).
inline std::vector<int64_t> OddShape(DType dt, size_t i) {
  const int b = DTypeBits(dt);
  if (b == 4) return {7, 10};       // 5 bytes a row
  if (b == 6) return {5, 12};       // 9 bytes a row
  switch (i % 3) {
    case 0: return {13, 37};
    case 1: return {5, 3, 21};      // 3-D: leading 5, trailing 21, 15 rows
    default: return {29};           // 1-D: both dimensions are the same
  }
}

// Every dtype in odd shapes at odd offsets of one file, junk between. `checksums`: each spec
// carries the whole-tensor XXH3 (what a verified range looks like); `block_bytes` > 0: block
// checksums of that size too.
inline std::vector<SliceTensor> MakeSliceFile(const std::string& path, uint32_t seed,
                                              bool checksums, uint64_t block_bytes = 0,
                                              int copies = 1) {
  std::mt19937_64 rng(seed);
  std::vector<unsigned char> all;
  auto junk = [&](size_t n) {
    for (size_t k = 0; k < n; ++k) all.push_back(static_cast<unsigned char>(rng()));
  };
  junk(11 + rng() % 3000);
  std::vector<SliceTensor> out;
  for (int i = 0; i < kNumDTypes * copies; ++i) {
    const DType dt = static_cast<DType>(i % kNumDTypes);
    SliceTensor t;
    t.spec.dtype = dt;
    t.spec.shape = OddShape(dt, size_t(i));
    if (i >= kNumDTypes) t.spec.shape[0] *= 97;  // larger copies: several 4 KiB blocks
    uint64_t n = 1;
    for (int64_t d : t.spec.shape) n *= uint64_t(d);
    t.spec.length = *DTypeBytes(dt, n);
    t.spec.name = "t" + std::to_string(i) + "." + std::string(DTypeName(dt));
    t.bytes.resize(t.spec.length);
    for (auto& x : t.bytes) x = std::byte(rng());
    FileRange r;
    r.path = path;
    r.offset = all.size();
    if (checksums) r.xxh3 = XXH3_64bits(t.bytes.data(), t.bytes.size());
    if (block_bytes) {
      r.block_xxh3 = BlockXxh3(t.bytes, block_bytes);
      r.block_bytes = block_bytes;
    }
    t.spec.source = FileSource(std::move(r));
    for (std::byte x : t.bytes) all.push_back(static_cast<unsigned char>(x));
    junk(1 + rng() % 3000);
    out.push_back(std::move(t));
  }
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(all.data()),
                                              std::streamsize(all.size()));
  return out;
}

// The slices a test tries on `s`: every rank of world 1..4 (torch.chunk rule: uneven and empty
// parts too) on both dimensions, that fall on byte boundaries.
inline std::vector<TensorSlice> SlicesToTry(const TensorSpec& s) {
  std::vector<TensorSlice> v;
  for (SliceDim d : {SliceDim::kLeading, SliceDim::kTrailing})
    for (int world = 1; world <= 4; ++world)
      for (int rank = 0; rank < world; ++rank) {
        auto sl = EvenSlice(s, d, rank, world, SplitRule::kChunk);
        if (sl.ok() && SliceOf(s, *sl).ok()) v.push_back(*sl);
      }
  return v;
}

inline std::string Describe(const TensorSpec& s, const TensorSlice& sl) {
  return s.name + (sl.dim == SliceDim::kLeading ? " leading [" : " trailing [") +
         std::to_string(sl.start) + ", " + std::to_string(sl.start + sl.length) + ")";
}

}  // namespace hct::test
