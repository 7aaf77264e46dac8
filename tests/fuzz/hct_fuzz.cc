// libFuzzer target for the HCT container parser (hct::HctFile::Parse) and chunk reads.
//
// Input byte 0 picks the mode:
//   even: the rest is a whole file, parsed as is (header, footer and checksum checks);
//   odd:  the rest is index JSON, wrapped into a file with a valid header, 4 data pages and a
//         footer whose checksums match, so the JSON and index validation get exercised (random
//         bytes would almost never pass the index checksum).
// Every parsed tensor is walked and each chunk read from the buffer.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "hct/container.h"
#include "hct_fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::vector<std::byte> buf;
  if (data[0] & 1) {
    buf = hct::fuzz::WrapIndex(data + 1, size - 1);
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
