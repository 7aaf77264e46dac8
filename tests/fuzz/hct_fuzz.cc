// libFuzzer target for the HCT container parser (hct::HctFile::Parse) and chunk reads.
//
// Input byte 0 picks the mode:
//   even: the rest is a whole file, parsed as is (header, footer and checksum checks);
//   odd:  the rest is index JSON, wrapped into a file with a valid header, 4 data pages and a
//         footer whose checksums match, so the JSON and index validation get exercised (random
//         bytes would almost never pass the index checksum).
// Every parsed tensor is walked and each chunk read from the buffer.
#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "hct/container.h"

namespace {

void PutLE(unsigned char* p, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}

std::vector<std::byte> WrapIndex(const uint8_t* json, size_t n) {
  const size_t data = 4 * hct::kHctAlignment;  // chunk area: pages at 4096..20480
  std::vector<std::byte> f(hct::kHctHeaderSize + data + n + hct::kHctFooterSize);
  auto* u = reinterpret_cast<unsigned char*>(f.data());
  std::memcpy(u, hct::kHctMagic, 8);
  PutLE(u + 8, hct::kHctMajorVersion, 2);
  for (size_t i = 0; i < data; ++i) u[hct::kHctHeaderSize + i] = static_cast<unsigned char>(i * 7);
  const uint64_t index_off = hct::kHctHeaderSize + data;
  if (n) std::memcpy(u + index_off, json, n);
  unsigned char* ft = u + index_off + n;
  PutLE(ft, index_off, 8);
  PutLE(ft + 8, n, 8);
  PutLE(ft + 16, XXH3_64bits(json, n), 8);
  PutLE(ft + 24, hct::kHctMajorVersion, 2);
  PutLE(ft + 32, XXH3_64bits(ft, 32), 8);
  std::memcpy(ft + 40, hct::kHctMagic, 8);
  return f;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::vector<std::byte> buf;
  if (data[0] & 1) {
    buf = WrapIndex(data + 1, size - 1);
  } else {
    buf.resize(size - 1);
    if (size > 1) std::memcpy(buf.data(), data + 1, size - 1);
  }
  hct::Result<hct::HctFile> f = hct::HctFile::Parse(buf, "fuzz.hct");
  if (!f.ok()) {
    (void)f.status().ToString();
    return 0;
  }
  // Everything a consumer touches.
  (void)f->metadata().size();
  uint64_t sink = f->version().minor + f->index_offset();
  for (const hct::TensorEntry& t : f->tensors()) {
    if (f->Find(t.name) != &t) __builtin_trap();
    sink += t.num_elements + t.decoded_size + t.shape.size() + t.codec_params.size();
    for (size_t i = 0; i < t.chunks.size(); ++i) {
      const hct::ChunkEntry& c = t.chunks[i];
      // Validation promised these; a violation is a parser bug.
      if (c.offset % hct::kHctAlignment || c.offset + c.stored_size > f->index_offset())
        __builtin_trap();
      hct::Result<std::vector<std::byte>> bytes = f->ReadChunk(t, i);
      if (bytes.ok()) sink += bytes->size();
    }
    if (t.decoded_size <= (1u << 20)) {
      std::vector<std::byte> out(t.decoded_size);
      (void)f->ReadRawTensor(t, out);
    }
  }
  (void)f->VerifyData();
  return static_cast<int>(sink & 0);
}
