// libFuzzer target for the safetensors header parser: parses the input as a whole file image
// (SafetensorsFile::Parse, no copy) and walks every tensor, checking the invariants the parser
// promises. Seeds: tests/data/fuzz/safetensors/ (scripts/make_safetensors_testdata.py).
//   scripts/fuzz.sh build-fuzz 30
//   build-fuzz/tests/fuzz/fuzz_safetensors -runs=1000000 -max_len=65536
//   build-fuzz/corpus/safetensors \
//       tests/data/fuzz/safetensors
#include <cstddef>
#include <cstdint>
#include <span>

#include "hct/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  auto f = hct::SafetensorsFile::Parse(bytes, "fuzz.safetensors");
  if (!f.ok()) {
    if (f.status().message().empty()) __builtin_trap();
    return 0;
  }
  uint64_t covered = 0;
  unsigned acc = 0;
  for (const hct::TensorInfo& t : f->tensors()) {
    if (f->Find(t.name) != &t) __builtin_trap();
    if (f->data_offset() + t.data_end > size) __builtin_trap();
    auto count = hct::ElementCount(t.shape);
    auto nbytes = count ? hct::DTypeBytes(t.dtype, *count) : std::nullopt;
    if (!nbytes || *nbytes != t.num_bytes()) __builtin_trap();
    auto span = f->data(t);
    if (!span.ok()) __builtin_trap();
    // Touch the first and last byte so ASan sees any out-of-bounds span.
    if (!span->empty())
      acc += static_cast<unsigned>(span->front()) + static_cast<unsigned>(span->back());
    std::byte b[1];
    if (t.num_bytes() > 0 && !f->ReadAt(t, t.num_bytes() - 1, b).ok()) __builtin_trap();
    covered += t.num_bytes();
  }
  if (covered != f->data_size()) __builtin_trap();
  for (const auto& [k, v] : f->metadata()) acc += static_cast<unsigned>(k.size() + v.size());
  static volatile unsigned sink;
  sink = acc;  // keeps the touches from being optimised away
  return 0;
}
