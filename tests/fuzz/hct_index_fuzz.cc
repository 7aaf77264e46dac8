// libFuzzer target whose input is the HCT index JSON itself (issue 10: the hostile-input
// campaign found index values, such as a chunk decoded_size of 2^40, that passed validation).
// The harness wraps the JSON into a file with matching checksums (hct_fuzz_util.h). A custom
// mutator edits the parsed JSON tree (boundary numbers, removed or duplicated members and array
// elements, changed types, codec and dtype names) so the fuzzer explores index structure rather
// than bytes; input that does not parse falls back to libFuzzer's byte mutations.
//   build-fuzz/tests/fuzz/fuzz_hct_index -max_total_time=60 corpus tests/data/fuzz/hct_index
// Every accepted file is checked against the promises of the validation (sizes a decoder
// allocates from are bounded) and each chunk is read.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "hct/container.h"
#include "hct_fuzz_util.h"

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

namespace {

using nlohmann::json;

void Walk(json& j, std::vector<json*>* out) {
  out->push_back(&j);
  if (j.is_structured())
    for (json& c : j) Walk(c, out);
}

const uint64_t kNumbers[] = {0,          1,          2,           3,          4095,
                             4096,       8192,       1ull << 31,  1ull << 32, (1ull << 32) + 1,
                             1ull << 33, 1ull << 40, 1ull << 62,  1ull << 63, ~0ull};
const char* const kStrings[] = {"raw",  "bytesplit-zstd",   "dctq-zstd", "dctq-huff", "F32", "U8",
                                "F4",   "BF16",             "C64",       "",          "w",
                                "b",    "0000000000000000", "ffffffffffffffff"};

// One structural edit of a random node.
void MutateTree(json& root, std::mt19937_64& rng) {
  std::vector<json*> nodes;
  Walk(root, &nodes);
  json& n = *nodes[rng() % nodes.size()];
  const json donor = *nodes[rng() % nodes.size()];  // a copy: n may contain it
  switch (rng() % 7) {
    case 0:
      n = kNumbers[rng() % std::size(kNumbers)];
      break;
    case 1:
      n = kStrings[rng() % std::size(kStrings)];
      break;
    case 2:
      if (n.is_object() && !n.empty()) {
        auto it = n.begin();
        std::advance(it, static_cast<long>(rng() % n.size()));
        n.erase(it);
      }
      break;
    case 3:
      if (n.is_array() && !n.empty()) n.push_back(n[rng() % n.size()]);
      break;
    case 4:
      if (n.is_array() && !n.empty()) n.erase(rng() % n.size());
      break;
    case 5: {
      static const json kOthers[] = {nullptr, json::array(), json::object(), -1, 1.5, true};
      n = kOthers[rng() % std::size(kOthers)];
      break;
    }
    default:
      if (n.is_object()) n["k" + std::to_string(rng() % 4)] = donor;
      else if (n.is_array()) n.push_back(donor);
      else n = donor;
      break;
  }
}

}  // namespace

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,
                                          unsigned int seed) {
  std::mt19937_64 rng(seed);
  json j = json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || rng() % 8 == 0) return LLVMFuzzerMutate(data, size, max_size);
  for (unsigned k = 1 + rng() % 3; k > 0; --k) MutateTree(j, rng);
  const std::string out = j.dump();
  if (out.size() > max_size) return LLVMFuzzerMutate(data, size, max_size);
  std::memcpy(data, out.data(), out.size());
  return out.size();
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<std::byte> file = hct::fuzz::WrapIndex(data, size);
  hct::Result<hct::HctFile> f = hct::HctFile::Parse(file, "fuzz.hct");
  if (!f.ok()) {
    if (f.status().message().empty()) __builtin_trap();
    return 0;
  }
  uint64_t sink = 0;
  for (const hct::TensorEntry& t : f->tensors()) {
    if (f->Find(t.name) != &t) __builtin_trap();
    uint64_t next = 0, decoded = 0;
    for (size_t i = 0; i < t.chunks.size(); ++i) {
      const hct::ChunkEntry& c = t.chunks[i];
      // Validation promised these; a violation is a validation bug.
      if (c.offset % hct::kHctAlignment || c.offset + c.stored_size > f->index_offset() ||
          c.elem_offset != next || c.decoded_size > hct::kHctMaxChunkBytes)
        __builtin_trap();
      next += c.elem_count;
      decoded += c.decoded_size;
      hct::Result<std::vector<std::byte>> bytes = f->ReadChunk(t, i);
      if (bytes.ok()) sink += bytes->size();
    }
    if (next != t.num_elements || decoded != t.decoded_size) __builtin_trap();
    if (t.decoded_size <= (1u << 20)) {
      std::vector<std::byte> out(t.decoded_size);
      (void)f->ReadRawTensor(t, out);
    }
  }
  return static_cast<int>(sink & 0);
}
