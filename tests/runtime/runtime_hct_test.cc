// The compressed path and the cache integration on the host (CPU fallback): HCT tensors loaded
// through the runtime equal the CPU reference decoder's output; corruption refused naming the
// tensor; cache tensors leased (evict refused while loaded), corrupt entries refused, accesses
// recorded; FromHct with a cache prefers warm entries and falls back to the HCT files.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "hct/cache.h"
#include "hct/hct.h"
#include "hct/runtime.h"
#include "hct/safetensors.h"
#include "runtime/runtime_hct_util.h"
#include "runtime/runtime_test_util.h"

namespace hct {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

RuntimeOptions HostOpts() {
  RuntimeOptions o = test::SmallRing(ODirectMode::kOff, /*host=*/true);
  o.decode_threads = 3;
  return o;
}

std::vector<std::byte> Bytes(const LoadedTensor& t) {
  auto* p = static_cast<const std::byte*>(t.data());
  return {p, p + t.bytes()};
}

TEST(HctLoadHost, MatchesCpuDecoder) {
  const std::string dir = TempDir("hct_host");
  auto f = test::MakeHctFile(dir + "/model.hct", test::DefaultDescs());
  ASSERT_EQ(f.codecs.size(), f.descs.size()) << "could not build the test file";
  // The file covers every codec.
  EXPECT_NE(std::find(f.codecs.begin(), f.codecs.end(), "dctq-zstd"), f.codecs.end());
  EXPECT_NE(std::find(f.codecs.begin(), f.codecs.end(), "dctq-huff"), f.codecs.end());
  EXPECT_NE(std::find(f.codecs.begin(), f.codecs.end(), "bytesplit-zstd"), f.codecs.end());
  EXPECT_NE(std::find(f.codecs.begin(), f.codecs.end(), "raw"), f.codecs.end());

  for (ODirectMode od : {ODirectMode::kOff, ODirectMode::kOn}) {
    auto cat = Catalog::Open(dir);  // a folder of .hct files
    ASSERT_TRUE(cat.ok()) << cat.status().ToString();
    ASSERT_EQ(cat->tensors().size(), f.descs.size());
    EXPECT_EQ(cat->num_layers(), 2);
    EXPECT_EQ(cat->Layer(1).size(), 3u);
    RuntimeOptions o = HostOpts();
    o.o_direct = od;
    auto rt = Runtime::Create(o);
    ASSERT_TRUE(rt.ok());
    for (size_t i = 0; i < f.descs.size(); ++i) {
      const TensorSpec* s = cat->Find(f.descs[i].name);
      ASSERT_NE(s, nullptr);
      EXPECT_TRUE(s->has_compressed_source() && !s->from_cache() && !s->file());
      auto t = (*rt)->Load(*s);
      ASSERT_TRUE(t.ok()) << t.status().ToString();
      auto want = test::CpuDecoded(f.path, f.descs[i].name);
      ASSERT_FALSE(want.empty());
      EXPECT_EQ(Bytes(*t), want) << f.descs[i].name;
      if (!f.descs[i].lossy) EXPECT_EQ(Bytes(*t), f.original[i]) << f.descs[i].name;
      else EXPECT_NE(Bytes(*t), f.original[i]) << "lossy tensor came back exact?";
    }
    // Everything at once, packed.
    auto all = (*rt)->LoadMany(cat->tensors());
    ASSERT_TRUE(all.ok()) << all.status().ToString();
    for (const auto& t : *all)
      EXPECT_EQ(Bytes(t), test::CpuDecoded(f.path, t.spec().name)) << t.spec().name;
    auto st = (*rt)->stats();
    EXPECT_EQ(st.loads_hct, 2 * f.descs.size());
    EXPECT_GT(st.bytes_hct_stored, 0u);
    EXPECT_GT(st.hct_chunks, 2 * f.descs.size());  // several chunks per tensor
    if (od == ODirectMode::kOn) EXPECT_GT(st.bytes_o_direct, 0u);
    else EXPECT_EQ(st.bytes_o_direct, 0u);
  }
}

TEST(HctLoadHost, CorruptChunkRefusedNamingTheTensor) {
  const std::string dir = TempDir("hct_corrupt");
  auto f = test::MakeHctFile(dir + "/model.hct", test::DefaultDescs());
  ASSERT_EQ(f.codecs.size(), f.descs.size());
  const std::string bad = f.descs[0].name, good = f.descs[1].name;
  test::FlipByte(f.path, test::ChunkByteOffset(f.path, bad, 1, 7));
  auto cat = Catalog::FromHct(f.path);
  ASSERT_TRUE(cat.ok()) << cat.status().ToString();
  for (bool verify : {true, false}) {
    RuntimeOptions o = HostOpts();
    o.verify = verify;
    auto rt = Runtime::Create(o);
    ASSERT_TRUE(rt.ok());
    auto t = (*rt)->Load(*cat->Find(bad));
    ASSERT_FALSE(t.ok()) << "verify " << verify;
    EXPECT_NE(t.status().message().find("tensor '" + bad + "'"), std::string::npos)
        << t.status().ToString();
    EXPECT_NE(t.status().message().find("chunk 1"), std::string::npos) << t.status().ToString();
    // verify on: the stored checksum; off: the decoder's own symbol checksum or zstd check.
    if (verify) EXPECT_TRUE(test::IsChecksumFailure(t.status(), f.path, bad));
    auto g = (*rt)->Load(*cat->Find(good));
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    EXPECT_EQ(Bytes(*g), test::CpuDecoded(f.path, good));
  }
}

TEST(HctLoadHost, LayerStreamingOverHct) {
  const std::string dir = TempDir("hct_stream");
  auto f = test::MakeHctFile(dir + "/model.hct", test::DefaultDescs());
  ASSERT_EQ(f.codecs.size(), f.descs.size());
  auto cat = Catalog::FromHct(f.path);
  ASSERT_TRUE(cat.ok());
  auto rt = Runtime::Create(HostOpts());
  ASSERT_TRUE(rt.ok());
  auto ls = LayerStreamer::Create(rt->get(), {cat->Layer(0), cat->Layer(1)}, 1, nullptr);
  ASSERT_TRUE(ls.ok()) << ls.status().ToString();
  for (int k = 0; k < 2; ++k) {
    auto layer = (*ls)->Next();
    ASSERT_TRUE(layer.ok()) << layer.status().ToString();
    for (const auto& t : layer->tensors)
      EXPECT_EQ(Bytes(t), test::CpuDecoded(f.path, t.spec().name)) << t.spec().name;
  }
  EXPECT_EQ((*ls)->Next().status().code(), Code::kOutOfRange);
}

TEST(HctLoadHost, PrepareDoesTheSetupAndRestartAddsNone) {
  const std::string dir = TempDir("hct_prepare");
  auto f = test::MakeHctFile(dir + "/model.hct", test::DefaultDescs());
  ASSERT_EQ(f.codecs.size(), f.descs.size());
  auto cat = Catalog::FromHct(f.path);
  ASSERT_TRUE(cat.ok());
  {  // Prepare(): the decode threads now; a second call adds nothing.
    auto rt = Runtime::Create(HostOpts());
    ASSERT_TRUE(rt.ok());
    const RuntimeStats created = (*rt)->stats();
    ASSERT_TRUE((*rt)->Prepare().ok());
    const RuntimeStats prepared = (*rt)->stats();
    EXPECT_GT(prepared.setup_allocations, created.setup_allocations);
    ASSERT_TRUE((*rt)->Prepare().ok());
    EXPECT_EQ((*rt)->stats().setup_allocations, prepared.setup_allocations);
  }
  // Prepare(specs): with the read buffers sized for these tensors, loading them allocates
  // nothing more.
  auto rt = Runtime::Create(HostOpts());
  ASSERT_TRUE(rt.ok());
  const uint64_t created_bytes = (*rt)->stats().setup_bytes;
  ASSERT_TRUE((*rt)->Prepare(cat->tensors()).ok());
  const RuntimeStats prepared = (*rt)->stats();
  EXPECT_GT(prepared.setup_bytes, created_bytes);  // the read buffers
  auto all = (*rt)->LoadMany(cat->tensors());
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  EXPECT_EQ((*rt)->stats().setup_allocations, prepared.setup_allocations);
  EXPECT_EQ((*rt)->stats().setup_bytes, prepared.setup_bytes);
  all->clear();
  // A streamer over the same runtime: two passes, the same bytes, no setup and no allocation
  // after its two slots.
  auto ls = LayerStreamer::Create(rt->get(), {cat->Layer(0), cat->Layer(1)}, 1, nullptr);
  ASSERT_TRUE(ls.ok()) << ls.status().ToString();
  const RuntimeStats streaming = (*rt)->stats();
  EXPECT_EQ(streaming.buffer_allocations, prepared.buffer_allocations + 1 + 2);
  std::vector<std::vector<std::byte>> first;
  for (int pass = 0; pass < 2; ++pass) {
    if (pass) ASSERT_TRUE((*ls)->Restart().ok());
    size_t n = 0;
    for (int k = 0; k < 2; ++k) {
      auto layer = (*ls)->Next();
      ASSERT_TRUE(layer.ok()) << layer.status().ToString();
      for (const auto& t : layer->tensors) {
        EXPECT_EQ(Bytes(t), test::CpuDecoded(f.path, t.spec().name)) << t.spec().name;
        if (pass == 0) first.push_back(Bytes(t));
        else EXPECT_EQ(Bytes(t), first[n]) << t.spec().name;
        ++n;
      }
    }
    EXPECT_EQ((*ls)->Next().status().code(), Code::kOutOfRange);
  }
  const RuntimeStats after = (*rt)->stats();
  EXPECT_EQ(after.setup_allocations, streaming.setup_allocations);
  EXPECT_EQ(after.setup_bytes, streaming.setup_bytes);
  EXPECT_EQ(after.buffer_allocations, streaming.buffer_allocations);
}

// ----------------------------------------------------------------------------- cache
struct CachedModel {
  std::string cache_dir, source;
  std::vector<std::string> names;
  std::vector<std::vector<std::byte>> data;
};

// A two-layer safetensors model warmed into a fresh cache.
CachedModel WarmSafetensors(const std::string& dir) {
  CachedModel m;
  m.cache_dir = dir + "/cache";
  m.source = dir + "/model.safetensors";
  SafetensorsWriterOptions wo;
  wo.overwrite = true;
  auto w = SafetensorsWriter::Create(m.source, wo);
  if (!w.ok()) return m;
  m.names = {"model.layers.0.w", "model.layers.0.b", "model.layers.1.w", "lm_head.weight"};
  for (size_t i = 0; i < m.names.size(); ++i) {
    m.data.push_back(test::RandomBytes(2 * (3000 + 100 * i), uint32_t(40 + i)));
    if (!w->Declare(m.names[i], DType::kBF16, {uint64_t(3000 + 100 * i)}).ok()) return m;
  }
  for (size_t i = 0; i < m.names.size(); ++i)
    if (!w->Write(m.names[i], m.data[i]).ok()) return m;
  if (!w->Finish().ok()) return m;
  auto c = Cache::Open(m.cache_dir);
  if (!c.ok() || !(*c)->Warm(m.source).ok()) m.names.clear();
  return m;
}

TEST(CacheLoadHost, LoadsLeasesAndRecordsAccess) {
  const std::string dir = TempDir("cache_load");
  CachedModel m = WarmSafetensors(dir);
  ASSERT_EQ(m.names.size(), 4u);
  std::string entry0;
  {
    auto cat = Catalog::FromCache(m.cache_dir);  // the only model
    ASSERT_TRUE(cat.ok()) << cat.status().ToString();
    ASSERT_EQ(cat->tensors().size(), 4u);
    auto layer0 = cat->Layer(0);
    ASSERT_EQ(layer0.size(), 2u);
    EXPECT_EQ(cat->Layer(1).size(), 1u);
    auto rt = Runtime::Create(HostOpts());
    ASSERT_TRUE(rt.ok());
    for (size_t i = 0; i < m.names.size(); ++i) {
      const TensorSpec* s = cat->Find(m.names[i]);
      ASSERT_NE(s, nullptr);
      ASSERT_TRUE(s->file() && s->file()->xxh3.has_value());
      auto t = (*rt)->Load(*s);
      ASSERT_TRUE(t.ok()) << t.status().ToString();
      EXPECT_EQ(Bytes(*t), m.data[i]);
    }
    EXPECT_EQ((*rt)->stats().loads_cache, 4u);
    EXPECT_GT((*rt)->stats().bytes_verified, 0u);

    // Hold layer 0: its entry must survive an evict, from this process and from another one.
    auto held = (*rt)->LoadMany(layer0);
    ASSERT_TRUE(held.ok());
    entry0 = layer0[0].path();
    {
      auto other = Cache::Open(m.cache_dir);
      ASSERT_TRUE(other.ok());
      auto r = (*other)->Evict({.all = true, .dry_run = false});
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      ASSERT_EQ(r->leased.size(), 1u);
      EXPECT_EQ(r->leased[0], entry0);
      EXPECT_FALSE(r->target_reached);
    }
    EXPECT_TRUE(fs::exists(entry0));
    const std::string tool = std::string(HCT_BINARY_DIR) + "/cache/hct-cache";
    if (fs::exists(tool)) {
      int rc = std::system((tool + " --cache-dir " + m.cache_dir + " evict --all >/dev/null").c_str());
      ASSERT_TRUE(WIFEXITED(rc));
      EXPECT_EQ(WEXITSTATUS(rc), 1);  // target not reached: the leased entry stays
      EXPECT_TRUE(fs::exists(entry0));
    }
    // The others were evicted: loading them now is NotFound naming the tensor (no HCT source).
    auto gone = (*rt)->Load(*cat->Find(m.names[2]));
    ASSERT_FALSE(gone.ok());
    EXPECT_EQ(gone.status().code(), Code::kNotFound) << gone.status().ToString();
    EXPECT_NE(gone.status().message().find(m.names[2]), std::string::npos);
    // The held layer still reads (the lease protects the file).
    auto again = (*rt)->Load(layer0[1]);
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    for (auto& t : *held) EXPECT_TRUE(t.valid());
  }
  // Everything dropped: the lease is gone, evict proceeds.
  auto c = Cache::Open(m.cache_dir);
  ASSERT_TRUE(c.ok());
  auto models = (*c)->ListModels();
  ASSERT_TRUE(models.ok());
  ASSERT_EQ(models->size(), 1u);
  EXPECT_GE((*models)[0].access_count, 5u);  // 4 loads + the layer + the reload (flushed at close)
  auto r = (*c)->Evict({.all = true});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->leased.empty());
  EXPECT_FALSE(fs::exists(entry0));
}

TEST(CacheLoadHost, CorruptEntryRefused) {
  const std::string dir = TempDir("cache_corrupt");
  CachedModel m = WarmSafetensors(dir);
  ASSERT_EQ(m.names.size(), 4u);
  auto cat = Catalog::FromCache(m.cache_dir, "");
  ASSERT_TRUE(cat.ok());
  const TensorSpec& s = *cat->Find(m.names[2]);
  test::FlipByte(s.path(), s.file()->offset + s.length / 2);
  for (ODirectMode od : {ODirectMode::kOff, ODirectMode::kOn}) {
    RuntimeOptions o = HostOpts();
    o.o_direct = od;
    auto rt = Runtime::Create(o);
    ASSERT_TRUE(rt.ok());
    auto t = (*rt)->Load(s);
    ASSERT_FALSE(t.ok());
    EXPECT_EQ(t.status().code(), Code::kCorruption);
    EXPECT_NE(t.status().message().find("tensor '" + m.names[2] + "'"), std::string::npos)
        << t.status().ToString();
    EXPECT_TRUE(test::IsChecksumFailure(t.status(), s.path(), m.names[2]));
    auto ok = (*rt)->Load(*cat->Find(m.names[0]));
    EXPECT_TRUE(ok.ok()) << ok.status().ToString();
  }
  EXPECT_EQ(Catalog::FromCache(m.cache_dir, "nope").status().code(), Code::kNotFound);
  EXPECT_EQ(Catalog::FromCache(dir + "/no_cache").status().code(), Code::kNotFound);
}

TEST(CacheLoadHost, HctWithCachePrefersWarmEntriesAndFallsBack) {
  const std::string dir = TempDir("hct_cache");
  fs::create_directories(dir + "/model");
  auto f = test::MakeHctFile(dir + "/model/model.hct", test::DefaultDescs());
  ASSERT_EQ(f.codecs.size(), f.descs.size());
  const std::string cache_dir = dir + "/cache";
  {
    auto c = Cache::Open(cache_dir);
    ASSERT_TRUE(c.ok());
    auto w = (*c)->Warm(dir + "/model");
    ASSERT_TRUE(w.ok()) << w.status().ToString();
  }
  auto check_all = [&](Runtime& rt, const Catalog& cat) {
    auto all = rt.LoadMany(cat.tensors());
    ASSERT_TRUE(all.ok()) << all.status().ToString();
    for (const auto& t : *all)
      EXPECT_EQ(Bytes(t), test::CpuDecoded(f.path, t.spec().name)) << t.spec().name;
  };
  auto cat = Catalog::FromHct(dir + "/model", cache_dir);
  ASSERT_TRUE(cat.ok()) << cat.status().ToString();
  for (const auto& s : cat->tensors()) {
    EXPECT_TRUE(s.from_cache()) << s.name << " not served by the cache";
    EXPECT_TRUE(s.has_compressed_source());
  }
  {
    auto rt = Runtime::Create(HostOpts());
    ASSERT_TRUE(rt.ok());
    check_all(**rt, *cat);
    EXPECT_EQ((*rt)->stats().loads_cache, f.descs.size());
    EXPECT_EQ((*rt)->stats().loads_hct, 0u);
  }
  {  // A corrupt entry: the batch is decoded from the HCT file instead.
    const TensorSpec& s = *cat->Find(f.descs[2].name);
    test::FlipByte(s.path(), s.file()->offset + 3);
    auto rt = Runtime::Create(HostOpts());
    ASSERT_TRUE(rt.ok());
    check_all(**rt, *cat);
    EXPECT_GT((*rt)->stats().cache_fallbacks, 0u);
    EXPECT_GT((*rt)->stats().loads_hct, 0u);
    // The reason reaches the caller through the stats (the library prints nothing).
    EXPECT_NE((*rt)->stats().cache_fallback_reason.find("checksum"), std::string::npos)
        << (*rt)->stats().cache_fallback_reason;
  }
  {  // Evicted: the compressed path.
    auto c = Cache::Open(cache_dir);
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE((*c)->Evict({.all = true}).ok());
  }
  auto rt = Runtime::Create(HostOpts());
  ASSERT_TRUE(rt.ok());
  check_all(**rt, *cat);
  EXPECT_EQ((*rt)->stats().loads_cache, 0u);
  EXPECT_EQ((*rt)->stats().loads_hct, f.descs.size());
  EXPECT_EQ((*rt)->stats().cache_fallbacks, f.descs.size());
}

TEST(CApiTest, OpenHctAndCache) {
  const std::string dir = TempDir("capi_hct");
  auto f = test::MakeHctFile(dir + "/model.hct", test::DefaultDescs());
  ASSERT_EQ(f.codecs.size(), f.descs.size());
  ::setenv("HCT_FORCE_HOST", "1", 1);
  hct_runtime* rt = nullptr;
  ASSERT_EQ(hct_open(f.path.c_str(), &rt), HCT_OK) << hct_last_error();
  EXPECT_EQ(hct_num_tensors(rt), int64_t(f.descs.size()));
  hct_tensor* t = nullptr;
  ASSERT_EQ(hct_load(rt, f.descs[3].name.c_str(), nullptr, nullptr, 0, &t), HCT_OK)
      << hct_last_error();
  auto want = test::CpuDecoded(f.path, f.descs[3].name);
  ASSERT_EQ(hct_tensor_nbytes(t), want.size());
  EXPECT_EQ(std::memcmp(hct_tensor_data(t), want.data(), want.size()), 0);
  hct_stats st{};
  ASSERT_EQ(hct_runtime_stats(rt, &st), HCT_OK);
  EXPECT_EQ(st.loads_hct, 1u);
  hct_tensor_free(t);
  hct_close(rt);

  CachedModel m = WarmSafetensors(dir);
  ASSERT_EQ(m.names.size(), 4u);
  ASSERT_EQ(hct_open_cache(m.cache_dir.c_str(), nullptr, &rt), HCT_OK) << hct_last_error();
  ASSERT_EQ(hct_load(rt, m.names[1].c_str(), nullptr, nullptr, 0, &t), HCT_OK) << hct_last_error();
  EXPECT_EQ(std::memcmp(hct_tensor_data(t), m.data[1].data(), m.data[1].size()), 0);
  hct_tensor_free(t);
  hct_close(rt);
  EXPECT_EQ(hct_open_cache((dir + "/nothing").c_str(), nullptr, &rt), HCT_NOT_FOUND);
  ::unsetenv("HCT_FORCE_HOST");
}

}  // namespace
}  // namespace hct
