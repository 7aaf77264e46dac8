// Tensor-parallel slices on the host (runtime/slice.cc): every slice of random tensors of every
// dtype in odd shapes, on both dimensions, from plain file ranges, checksummed ranges (whole and
// block checksums), a warm cache and HCT files, equals the same slice cut element by element
// from a full load (HCT: from the CPU reference decoder's output); only the bytes that hold the
// slice are read (counted by the runtime's stats against sizes computed here); corruption in a
// block the slice reads is refused, outside it is not read; the C API does the same.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "hct/cache.h"
#include "hct/container.h"
#include "hct/hct.h"
#include "hct/runtime.h"
#include "hct/safetensors.h"
#include "runtime/runtime_hct_util.h"
#include "runtime/runtime_test_util.h"
#include "runtime/slice_test_util.h"

namespace hct {
namespace {

using test::TempDir;

RuntimeOptions Host(ODirectMode od = ODirectMode::kOff) {
  RuntimeOptions o = test::SmallRing(od, /*host=*/true);
  o.decode_threads = 3;
  return o;
}

std::vector<std::byte> Bytes(const LoadedTensor& t) {
  auto* p = static_cast<const std::byte*>(t.data());
  return {p, p + t.bytes()};
}

uint64_t FileBytesRead(Runtime& rt) {
  auto s = rt.stats();
  return s.bytes_one_shot + s.bytes_resident;
}

TEST(EvenSlice, ExactChunkAndErrors) {
  TensorSpec s;
  s.name = "w";
  s.dtype = DType::kBF16;
  s.shape = {10, 12};
  s.length = 240;
  auto a = EvenSlice(s, SliceDim::kTrailing, 2, 4);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->start, 6);
  EXPECT_EQ(a->length, 3);
  // 10 rows into 4: exact refuses naming the tensor and the sizes; chunk gives 3, 3, 3, 1.
  auto e = EvenSlice(s, SliceDim::kLeading, 0, 4);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), Code::kInvalidArgument);
  EXPECT_NE(e.status().message().find("'w'"), std::string::npos) << e.status().ToString();
  EXPECT_NE(e.status().message().find("10"), std::string::npos);
  const int64_t want_len[] = {3, 3, 3, 1};
  for (int r = 0; r < 4; ++r) {
    auto c = EvenSlice(s, SliceDim::kLeading, r, 4, SplitRule::kChunk);
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(c->start, 3 * r);
    EXPECT_EQ(c->length, want_len[r]);
  }
  // torch.chunk(5 rows, 4): 2, 2, 1 and an empty last part.
  s.shape = {5, 2};
  s.length = 20;
  auto last = EvenSlice(s, SliceDim::kLeading, 3, 4, SplitRule::kChunk);
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(last->start, 5);
  EXPECT_EQ(last->length, 0);
  EXPECT_FALSE(EvenSlice(s, SliceDim::kLeading, 4, 4).ok());
  EXPECT_FALSE(EvenSlice(s, SliceDim::kLeading, 0, 0).ok());
  s.shape = {};
  s.length = 2;
  EXPECT_FALSE(EvenSlice(s, SliceDim::kLeading, 0, 1).ok());
}

TEST(SliceOf, ShapesAndSubByteBoundaries) {
  TensorSpec s;
  s.name = "w";
  s.dtype = DType::kF32;
  s.shape = {6, 4, 9};
  s.length = 6 * 4 * 9 * 4;
  auto t = SliceOf(s, {SliceDim::kTrailing, 3, 5});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->shape, (std::vector<int64_t>{6, 4, 5}));
  EXPECT_EQ(t->length, 6u * 4 * 5 * 4);
  auto l = SliceOf(s, {SliceDim::kLeading, 1, 2});
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->shape, (std::vector<int64_t>{2, 4, 9}));
  EXPECT_FALSE(SliceOf(s, {SliceDim::kLeading, 5, 2}).ok());  // past the end
  EXPECT_FALSE(SliceOf(s, {SliceDim::kLeading, -1, 1}).ok());
  // F4: 2 per byte; a trailing slice starting at an odd column does not start on a byte.
  s.dtype = DType::kF4;
  s.shape = {3, 6};
  s.length = 9;
  auto odd = SliceOf(s, {SliceDim::kTrailing, 1, 2});
  ASSERT_FALSE(odd.ok());
  EXPECT_EQ(odd.status().code(), Code::kUnsupported);
  EXPECT_TRUE(SliceOf(s, {SliceDim::kTrailing, 2, 4}).ok());
}

// Plain ranges without checksums: every slice equals the element-wise slice of the full load,
// and the bytes read are exactly the slice's (strided rows for the trailing dimension).
TEST(SliceLoadHost, PlainRangesReadOnlyTheSlice) {
  for (ODirectMode od : {ODirectMode::kOff, ODirectMode::kOn}) {
    auto ts = test::MakeSliceFile(TempDir("slice_plain") + "/a.bin", 3, /*checksums=*/false, 0, 2);
    auto rt = Runtime::Create(Host(od));
    ASSERT_TRUE(rt.ok());
    size_t tried = 0;
    for (const auto& t : ts) {
      auto full = (*rt)->Load(t.spec);
      ASSERT_TRUE(full.ok()) << full.status().ToString();
      ASSERT_EQ(Bytes(*full), t.bytes);
      for (const TensorSlice& sl : test::SlicesToTry(t.spec)) {
        const uint64_t before = FileBytesRead(**rt);
        auto got = (*rt)->LoadSlice(t.spec, sl);
        ASSERT_TRUE(got.ok()) << test::Describe(t.spec, sl) << ": " << got.status().ToString();
        const auto want = test::ExpectedSlice(t.bytes, t.spec.dtype, t.spec.shape, sl);
        EXPECT_EQ(Bytes(*got), want) << test::Describe(t.spec, sl);
        EXPECT_EQ(got->spec().shape, SliceOf(t.spec, sl)->shape);
        EXPECT_EQ(FileBytesRead(**rt) - before, want.size()) << test::Describe(t.spec, sl);
        ++tried;
      }
    }
    EXPECT_GT(tried, 15 * ts.size());
  }
}

// Into a caller's buffer (with room to spare), and a buffer too small refused.
TEST(SliceLoadHost, IntoCallerMemory) {
  auto ts = test::MakeSliceFile(TempDir("slice_dst") + "/a.bin", 4, /*checksums=*/true);
  auto rt = Runtime::Create(Host());
  ASSERT_TRUE(rt.ok());
  const auto& t = ts[size_t(DType::kBF16)];
  for (SliceDim d : {SliceDim::kLeading, SliceDim::kTrailing}) {
    const TensorSlice sl{d, 1, 3};
    const auto want = test::ExpectedSlice(t.bytes, t.spec.dtype, t.spec.shape, sl);
    std::vector<std::byte> buf(want.size() + 64, std::byte{0x77});
    auto got = (*rt)->LoadSlice(t.spec, sl, nullptr, buf.data(), buf.size());
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(got->data(), buf.data());
    EXPECT_TRUE(std::equal(want.begin(), want.end(), buf.begin()));
    EXPECT_EQ(buf.back(), std::byte{0x77});  // nothing written past the slice
    auto small = (*rt)->LoadSlice(t.spec, sl, nullptr, buf.data(), want.size() - 1);
    EXPECT_EQ(small.status().code(), Code::kInvalidArgument);
  }
}

// Whole-tensor checksums: the slice is still right, but the whole tensor is read (a range with
// one checksum over all of it can only be verified whole).
TEST(SliceLoadHost, WholeChecksumReadsWholeTensor) {
  auto ts = test::MakeSliceFile(TempDir("slice_whole") + "/a.bin", 5, /*checksums=*/true);
  auto rt = Runtime::Create(Host());
  ASSERT_TRUE(rt.ok());
  for (const auto& t : ts)
    for (const TensorSlice& sl : test::SlicesToTry(t.spec)) {
      if (sl.length == 0) continue;
      const uint64_t before = FileBytesRead(**rt);
      auto got = (*rt)->LoadSlice(t.spec, sl);
      ASSERT_TRUE(got.ok()) << test::Describe(t.spec, sl) << ": " << got.status().ToString();
      EXPECT_EQ(Bytes(*got), test::ExpectedSlice(t.bytes, t.spec.dtype, t.spec.shape, sl));
      EXPECT_EQ(FileBytesRead(**rt) - before, t.spec.length);
    }
  // Without verification there is nothing to check: only the slice is read.
  RuntimeOptions o = Host();
  o.verify = false;
  auto rt2 = Runtime::Create(o);
  ASSERT_TRUE(rt2.ok());
  const auto& t = ts[size_t(DType::kF32)];
  const TensorSlice sl{SliceDim::kTrailing, 2, 5};
  auto got = (*rt2)->LoadSlice(t.spec, sl);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(FileBytesRead(**rt2), got->bytes());
}

// Block checksums (4 KiB blocks here; 8 MiB in the cache): a leading slice reads the blocks it
// overlaps and nothing else; a flipped byte in those blocks is refused, one outside is not read.
TEST(SliceLoadHost, BlockChecksumsReadCoveringBlocks) {
  const std::string path = TempDir("slice_blocks") + "/a.bin";
  constexpr uint64_t kB = 4096;
  auto ts = test::MakeSliceFile(path, 6, /*checksums=*/true, kB, 2);
  auto rt = Runtime::Create(Host());
  ASSERT_TRUE(rt.ok());
  for (size_t i = kNumDTypes; i < ts.size(); ++i) {  // the large copies: several blocks each
    const auto& t = ts[i];
    for (const TensorSlice& sl : test::SlicesToTry(t.spec)) {
      if (sl.dim != SliceDim::kLeading || sl.length == 0) continue;
      auto spec = SliceOf(t.spec, sl);
      const uint64_t row = t.spec.length / uint64_t(t.spec.shape[0]);
      const uint64_t a = uint64_t(sl.start) * row, b = a + spec->length;
      const uint64_t want_read = std::min(t.spec.length, (b + kB - 1) / kB * kB) - a / kB * kB;
      const uint64_t before = FileBytesRead(**rt);
      auto got = (*rt)->LoadSlice(t.spec, sl);
      ASSERT_TRUE(got.ok()) << test::Describe(t.spec, sl) << ": " << got.status().ToString();
      EXPECT_EQ(Bytes(*got), test::ExpectedSlice(t.bytes, t.spec.dtype, t.spec.shape, sl));
      EXPECT_EQ(FileBytesRead(**rt) - before, want_read) << test::Describe(t.spec, sl);
    }
  }
  // Corrupt the last block of a tensor of many blocks: the first half still loads, the
  // last quarter is refused naming the file and tensor.
  size_t big = kNumDTypes;
  while (big < ts.size() && (ts[big].spec.length <= 4 * kB || DTypeBits(ts[big].spec.dtype) < 8))
    ++big;
  ASSERT_LT(big, ts.size());
  const auto& t = ts[big];
  test::FlipByte(path, t.spec.file()->offset + t.spec.length - 1);
  auto rt2 = Runtime::Create(Host());
  ASSERT_TRUE(rt2.ok());
  const int64_t n = t.spec.shape[0];
  auto head = (*rt2)->LoadSlice(t.spec, {SliceDim::kLeading, 0, n / 2});
  ASSERT_TRUE(head.ok()) << head.status().ToString();
  auto tail = (*rt2)->LoadSlice(t.spec, {SliceDim::kLeading, n - n / 4, n / 4});
  ASSERT_FALSE(tail.ok());
  EXPECT_TRUE(test::IsChecksumFailure(tail.status(), path, t.spec.name));
}

// A warm cache: slices of its entries, leading and trailing, equal the source's slices.
TEST(SliceLoadHost, CacheEntries) {
  const std::string dir = TempDir("slice_cache");
  const std::string src = dir + "/model.safetensors", cache_dir = dir + "/cache";
  SafetensorsWriterOptions wo;
  wo.overwrite = true;
  auto w = SafetensorsWriter::Create(src, wo);
  ASSERT_TRUE(w.ok());
  std::map<std::string, std::pair<std::vector<int64_t>, std::vector<std::byte>>> want;
  const std::vector<std::vector<uint64_t>> shapes = {{33, 45}, {7, 5, 19}, {101}};
  for (size_t i = 0; i < shapes.size(); ++i) {
    const std::string name = "model.layers." + std::to_string(i) + ".w";
    uint64_t n = 1;
    for (uint64_t d : shapes[i]) n *= d;
    auto bytes = test::RandomBytes(2 * n, uint32_t(70 + i));
    ASSERT_TRUE(w->Declare(name, DType::kBF16, shapes[i]).ok());
    want[name] = {std::vector<int64_t>(shapes[i].begin(), shapes[i].end()), bytes};
  }
  for (auto& [name, v] : want) ASSERT_TRUE(w->Write(name, v.second).ok());
  ASSERT_TRUE(w->Finish().ok());
  {
    auto c = Cache::Open(cache_dir);
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE((*c)->Warm(src).ok());
  }
  auto cat = Catalog::FromCache(cache_dir);
  ASSERT_TRUE(cat.ok()) << cat.status().ToString();
  for (bool verify : {true, false}) {
    RuntimeOptions o = Host();
    o.verify = verify;
    auto rt = Runtime::Create(o);
    ASSERT_TRUE(rt.ok());
    for (auto& [name, v] : want) {
      const TensorSpec* s = cat->Find(name);
      ASSERT_NE(s, nullptr);
      ASSERT_TRUE(s->from_cache());
      for (const TensorSlice& sl : test::SlicesToTry(*s)) {
        const uint64_t before = FileBytesRead(**rt);
        auto got = (*rt)->LoadSlice(*s, sl);
        ASSERT_TRUE(got.ok()) << test::Describe(*s, sl) << ": " << got.status().ToString();
        const auto exp = test::ExpectedSlice(v.second, DType::kBF16, v.first, sl);
        EXPECT_EQ(Bytes(*got), exp) << test::Describe(*s, sl);
        // One 8 MiB block covers these tensors: verified slices read it whole.
        if (sl.length) EXPECT_EQ(FileBytesRead(**rt) - before, verify ? s->length : exp.size());
      }
    }
    EXPECT_GT((*rt)->stats().loads_cache, 0u);
  }
}

// HCT: slices of every codec's tensors equal the CPU reference decoder's full output sliced,
// and a leading slice reads only the stored bytes of the chunks it overlaps.
TEST(SliceLoadHost, HctChunksOverlappingTheSlice) {
  const std::string dir = TempDir("slice_hct");
  auto descs = test::DefaultDescs();
  descs.push_back({"model.layers.2.mlp.up_proj.weight", DType::kBF16, {67, 41}, true,
                   Transform::kDct, 8});
  descs.push_back({"model.layers.2.mlp.down_proj.weight", DType::kF32, {23, 3, 17}, false});
  auto f = test::MakeHctFile(dir + "/model.hct", descs);
  ASSERT_EQ(f.codecs.size(), descs.size()) << "could not build the test file";
  auto file = HctFile::Open(f.path);
  ASSERT_TRUE(file.ok());
  auto cat = Catalog::Open(f.path);
  ASSERT_TRUE(cat.ok()) << cat.status().ToString();
  auto rt = Runtime::Create(Host());
  ASSERT_TRUE(rt.ok());
  size_t fewer = 0;
  for (const auto& d : descs) {
    const TensorSpec* s = cat->Find(d.name);
    ASSERT_NE(s, nullptr);
    const auto full = test::CpuDecoded(f.path, d.name);
    ASSERT_FALSE(full.empty());
    const TensorEntry* e = file->Find(d.name);
    uint64_t all_stored = 0;
    for (const ChunkEntry& c : e->chunks) all_stored += c.stored_size;
    for (const TensorSlice& sl : test::SlicesToTry(*s)) {
      const uint64_t before = (*rt)->stats().bytes_hct_stored;
      auto got = (*rt)->LoadSlice(*s, sl);
      ASSERT_TRUE(got.ok()) << test::Describe(*s, sl) << ": " << got.status().ToString();
      EXPECT_EQ(Bytes(*got), test::ExpectedSlice(full, s->dtype, s->shape, sl))
          << test::Describe(*s, sl) << " (" << e->codec << ")";
      if (sl.length == 0) continue;
      // Stored bytes of the chunks whose elements meet the slice's (trailing: all of them).
      uint64_t inner = 1;
      for (size_t k = 1; k < s->shape.size(); ++k) inner *= uint64_t(s->shape[k]);
      const bool lead = sl.dim == SliceDim::kLeading || s->shape.size() == 1;
      const uint64_t e0 = uint64_t(sl.start) * inner, e1 = e0 + uint64_t(sl.length) * inner;
      uint64_t want = 0;
      for (const ChunkEntry& c : e->chunks)
        if (!lead || (c.elem_offset < e1 && c.elem_offset + c.elem_count > e0))
          want += c.stored_size;
      EXPECT_EQ((*rt)->stats().bytes_hct_stored - before, want) << test::Describe(*s, sl);
      if (want < all_stored) ++fewer;
    }
  }
  EXPECT_GT(fewer, 10u);  // the chunking does let slices skip chunks
}

// An HCT model with a warm cache: slices come from the cache entries; after an entry is
// corrupted they come from the HCT chunks instead (never the corrupt bytes), equal either way.
TEST(SliceLoadHost, HctWithCacheFallsBackOnCorruptEntry) {
  const std::string dir = TempDir("slice_hct_cache");
  auto descs = test::DefaultDescs();
  auto f = test::MakeHctFile(dir + "/model.hct", descs);
  ASSERT_EQ(f.codecs.size(), descs.size());
  {
    auto c = Cache::Open(dir + "/cache");
    ASSERT_TRUE(c.ok());
    auto w = (*c)->Warm(f.path);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
  }
  auto cat = Catalog::FromHct(f.path, dir + "/cache");
  ASSERT_TRUE(cat.ok()) << cat.status().ToString();
  const TensorSpec* s = cat->Find(descs[0].name);  // lossy BF16 70 x 100
  ASSERT_TRUE(s && s->from_cache() && s->has_compressed_source());
  const auto full = test::CpuDecoded(f.path, descs[0].name);
  const TensorSlice sl{SliceDim::kLeading, 16, 32};
  auto rt = Runtime::Create(Host());
  ASSERT_TRUE(rt.ok());
  auto a = (*rt)->LoadSlice(*s, sl);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(Bytes(*a), test::ExpectedSlice(full, s->dtype, s->shape, sl));
  EXPECT_EQ((*rt)->stats().bytes_hct_stored, 0u);
  test::FlipByte(s->path(), s->file()->offset + 20 * 200);  // inside rows 16..48
  auto b = (*rt)->LoadSlice(*s, sl);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(Bytes(*b), test::ExpectedSlice(full, s->dtype, s->shape, sl));
  EXPECT_GT((*rt)->stats().bytes_hct_stored, 0u);
}

TEST(SliceCApi, LoadSliceAndBytesRead) {
  auto ts = test::MakeSliceFile(TempDir("slice_capi") + "/a.bin", 8, /*checksums=*/false);
  // A safetensors file of one of them, through the C API.
  const std::string path = TempDir("slice_capi2") + "/m.safetensors";
  const auto& t = ts[size_t(DType::kF16)];
  {
    SafetensorsWriterOptions wo;
    auto w = SafetensorsWriter::Create(path, wo);
    ASSERT_TRUE(w.ok());
    std::vector<uint64_t> shape(t.spec.shape.begin(), t.spec.shape.end());
    ASSERT_TRUE(w->Declare("w", t.spec.dtype, shape).ok());
    ASSERT_TRUE(w->Write("w", t.bytes).ok());
    ASSERT_TRUE(w->Finish().ok());
  }
  ::setenv("HCT_FORCE_HOST", "1", 1);
  hct_runtime* rt = nullptr;
  ASSERT_EQ(hct_open(path.c_str(), &rt), HCT_OK) << hct_last_error();
  int64_t start = -1, len = -1;
  ASSERT_EQ(hct_even_slice(rt, "w", HCT_SLICE_TRAILING, 1, 2, HCT_SPLIT_CHUNK, &start, &len),
            HCT_OK);
  const TensorSlice sl{SliceDim::kTrailing, start, len};
  EXPECT_EQ(start, (t.spec.shape.back() + 1) / 2);
  EXPECT_EQ(hct_even_slice(rt, "w", HCT_SLICE_TRAILING, 1, 2, HCT_SPLIT_EXACT, &start, &len),
            t.spec.shape.back() % 2 ? HCT_INVALID_ARGUMENT : HCT_OK);
  hct_tensor* h = nullptr;
  ASSERT_EQ(hct_load_slice(rt, "w", HCT_SLICE_TRAILING, sl.start, sl.length, nullptr, nullptr, 0,
                           &h), HCT_OK) << hct_last_error();
  ASSERT_EQ(hct_tensor_wait(h), HCT_OK);
  const auto want = test::ExpectedSlice(t.bytes, t.spec.dtype, t.spec.shape, sl);
  ASSERT_EQ(hct_tensor_nbytes(h), want.size());
  EXPECT_EQ(std::memcmp(hct_tensor_data(h), want.data(), want.size()), 0);
  int32_t nd = 0;
  int64_t shape[HCT_MAX_DIMS];
  ASSERT_EQ(hct_tensor_shape(h, &nd, shape), HCT_OK);
  ASSERT_EQ(size_t(nd), t.spec.shape.size());
  EXPECT_EQ(shape[nd - 1], sl.length);
  uint64_t file_bytes = 0, stored = 0;
  ASSERT_EQ(hct_runtime_bytes_read(rt, &file_bytes, &stored), HCT_OK);
  EXPECT_EQ(file_bytes, want.size());
  EXPECT_EQ(stored, 0u);
  EXPECT_EQ(hct_load_slice(rt, "w", 7, 0, 1, nullptr, nullptr, 0, &h), HCT_INVALID_ARGUMENT);
  EXPECT_EQ(hct_load_slice(rt, "nope", 0, 0, 1, nullptr, nullptr, 0, &h), HCT_NOT_FOUND);
  hct_tensor_free(h);
  hct_close(rt);
  ::unsetenv("HCT_FORCE_HOST");
}

}  // namespace
}  // namespace hct
