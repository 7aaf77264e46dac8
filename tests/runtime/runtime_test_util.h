// Shared helpers of the runtime tests: files of random tensors with independent checksums.
#pragma once

#include <gtest/gtest.h>
#include <xxhash.h>

#include <cstdio>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "hct/dtype.h"
#include "hct/runtime.h"

namespace hct::test {

// Per process (ctest runs the parameterised cases of one test as parallel processes), under the
// build dir (a disk file system, so O_DIRECT works; /tmp may be tmpfs), removed at exit.
inline std::string TempDir(const std::string& name) {
  struct Root {
    std::filesystem::path path = std::filesystem::path(HCT_BINARY_DIR) / "runtime_test_tmp" /
                                 std::to_string(::getpid());
    ~Root() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  };
  static Root root;
  auto d = root.path / name;
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d.string();
}

struct TestFile {
  std::string path;
  std::vector<TensorSpec> specs;
  std::vector<std::vector<unsigned char>> bytes;  // what each spec must load
};

// Elements of a shape whose byte count is exact for every dtype (F4: 2/byte, F6: 4 per 3 bytes).
inline std::vector<int64_t> ShapeFor(size_t i, uint64_t approx_bytes) {
  int64_t rows = int64_t(1 + i % 5) * 4;
  int64_t cols = std::max<int64_t>(4, int64_t(approx_bytes / uint64_t(rows)) / 4 * 4);
  return {rows, cols};
}

// Writes tensors of every dtype at odd offsets, with random junk between them, so that no
// tensor starts or ends on a 4096 boundary by accident. `layers`: tensors per layer (0: none).
inline TestFile MakeFile(const std::string& path, uint64_t approx_bytes, uint32_t seed,
                         int layers = 0, int per_layer = 0) {
  TestFile f;
  f.path = path;
  std::mt19937_64 rng(seed);
  std::vector<unsigned char> all;
  auto junk = [&](size_t n) {
    for (size_t k = 0; k < n; ++k) all.push_back(static_cast<unsigned char>(rng()));
  };
  junk(8 + rng() % 4000);
  const int n = layers > 0 ? layers * per_layer : kNumDTypes;
  for (int i = 0; i < n; ++i) {
    DType dt = static_cast<DType>(i % kNumDTypes);
    TensorSpec s;
    s.dtype = dt;
    s.shape = ShapeFor(size_t(i), approx_bytes / (1 + i % 3));
    uint64_t elems = uint64_t(s.shape[0] * s.shape[1]);
    s.length = *DTypeBytes(dt, elems);
    FileRange range;
    range.path = path;
    range.offset = all.size();
    s.layer = layers > 0 ? i / per_layer : -1;
    s.name = layers > 0 ? "model.layers." + std::to_string(s.layer) + ".w" + std::to_string(i)
                        : "t" + std::to_string(i) + "." + std::string(DTypeName(dt));
    std::vector<unsigned char> b(s.length);
    for (auto& x : b) x = static_cast<unsigned char>(rng());
    range.xxh3 = XXH3_64bits(b.data(), b.size());
    s.source = FileSource(std::move(range));
    all.insert(all.end(), b.begin(), b.end());
    junk(1 + rng() % 5000);
    f.specs.push_back(s);
    f.bytes.push_back(std::move(b));
  }
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(all.data()),
                                              std::streamsize(all.size()));
  return f;
}

// Replaces the byte range of `s` (a plain file range) by `f` applied to a copy of it.
template <class F>
inline void EditRange(TensorSpec& s, F&& f) {
  FileRange r = *s.file();
  f(r);
  s.source = FileSource(std::move(r));
}

// True when `st` is the one form of a checksum failure (runtime/detail/verify.h):
//   <file>: tensor '<name>': [<part>: ]checksum mismatch: XXH3 <16 hex>, expected <16 hex>
inline ::testing::AssertionResult IsChecksumFailure(const Status& st, const std::string& file,
                                                    const std::string& tensor) {
  const std::string head = file + ": tensor '" + tensor + "': ";
  const std::string& m = st.message();
  const size_t at = m.find("checksum mismatch: XXH3 ");
  if (st.code() != Code::kCorruption || m.compare(0, head.size(), head) != 0 ||
      at == std::string::npos || m.find(", expected ", at) != at + 24 + 16)
    return ::testing::AssertionFailure() << "not a checksum failure of " << head << ": "
                                         << st.ToString();
  return ::testing::AssertionSuccess();
}

// The layers 0..n-1 of `specs` as a Catalog cuts them (what a LayerStreamer takes).
inline std::vector<std::vector<TensorSpec>> LayersOf(const std::vector<TensorSpec>& specs) {
  Catalog cat = Catalog::FromSpecs(specs);
  std::vector<std::vector<TensorSpec>> layers;
  for (int i = 0; i < cat.num_layers(); ++i) layers.push_back(cat.Layer(i));
  return layers;
}

// Flips one byte of `path` at `offset`.
inline void FlipByte(const std::string& path, uint64_t offset) {
  std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
  io.seekg(std::streamoff(offset));
  char c = 0;
  io.read(&c, 1);
  c = char(c ^ 0x5a);
  io.seekp(std::streamoff(offset));
  io.write(&c, 1);
}

// Small chunks and ring so that a few KiB exercise chunking and ring wrap-around.
inline RuntimeOptions SmallRing(ODirectMode od, bool host) {
  RuntimeOptions o;
  o.chunk_bytes = 8192;
  o.staging_bytes = 4 * 8192;
  o.hct_slot_bytes = 0;  // compressed loads share the small ring (tests of its bounds)
  o.io_threads = 3;
  o.streams = 2;
  o.o_direct = od;
  o.force_host = host;
  return o;
}

}  // namespace hct::test
