// The C API added for the Python package (hct_open_ex, hct_load_many, the streamer, resident,
// cache and version functions), on host placement so that it runs without a GPU.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "hct/hct.h"
#include "hct/safetensors.h"
#include "runtime/runtime_test_util.h"

namespace hct {
namespace {

using test::TempDir;

// Three layers of two BF16 tensors each plus a non-layer tensor; values identify the tensor.
struct Model {
  std::string path;
  std::vector<std::vector<uint16_t>> data;
  std::vector<std::string> names;
};

Model MakeModel(const std::string& dir) {
  Model m;
  m.path = dir + "/model.safetensors";
  for (int l = 0; l < 3; ++l)
    for (const char* w : {"q", "k"}) m.names.push_back("model.layers." + std::to_string(l) + "." + w);
  m.names.push_back("lm_head.weight");
  for (size_t i = 0; i < m.names.size(); ++i) {
    m.data.emplace_back(16 * (i + 1));
    for (size_t k = 0; k < m.data[i].size(); ++k) m.data[i][k] = uint16_t(i * 1000 + k);
  }
  std::vector<TensorData> td;
  for (size_t i = 0; i < m.names.size(); ++i)
    td.push_back({m.names[i], DType::kBF16, {int64_t(m.data[i].size())},
                  {reinterpret_cast<const std::byte*>(m.data[i].data()), m.data[i].size() * 2}});
  EXPECT_TRUE(WriteSafetensors(m.path, td).ok());
  return m;
}

hct_options HostOptions() {
  hct_options o{};
  EXPECT_EQ(hct_options_default(&o), HCT_OK);
  o.force_host = 1;
  return o;
}

TEST(CApiExTest, VersionAndOptionDefaults) {
  EXPECT_STRNE(hct_version(), "0.0.0");  // the build passes the project version
  hct_options o{};
  ASSERT_EQ(hct_options_default(&o), HCT_OK);
  EXPECT_EQ(o.struct_size, sizeof(hct_options));
  EXPECT_EQ(o.staging_bytes, RuntimeOptions{}.staging_bytes);
  EXPECT_EQ(o.verify, 1);
  EXPECT_EQ(o.o_direct, 2);
}

TEST(CApiExTest, OpenExUsesTheStructNotTheEnvironment) {
  Model m = MakeModel(TempDir("capiex_open"));
  setenv("HCT_IO_THREADS", "not-a-number", 1);  // FromEnv would refuse this
  hct_options o = HostOptions();
  hct_runtime* rt = nullptr;
  ASSERT_EQ(hct_open_ex(m.path.c_str(), &o, &rt), HCT_OK) << hct_last_error();
  EXPECT_EQ(hct_on_device(rt), 0);
  hct_close(rt);
  EXPECT_EQ(hct_open_ex(m.path.c_str(), nullptr, &rt), HCT_INVALID_ARGUMENT);  // env path
  unsetenv("HCT_IO_THREADS");
  o.io_threads = 0;  // invalid settings are refused, not clamped
  EXPECT_EQ(hct_open_ex(m.path.c_str(), &o, &rt), HCT_INVALID_ARGUMENT);
  o = HostOptions();
  o.struct_size = 9999;
  EXPECT_EQ(hct_open_ex(m.path.c_str(), &o, &rt), HCT_INVALID_ARGUMENT);
}

TEST(CApiExTest, LoadManyGivesEveryTensorOrNone) {
  Model m = MakeModel(TempDir("capiex_many"));
  hct_options o = HostOptions();
  hct_runtime* rt = nullptr;
  ASSERT_EQ(hct_open_ex(m.path.c_str(), &o, &rt), HCT_OK) << hct_last_error();
  const char* names[] = {m.names[6].c_str(), m.names[1].c_str()};
  hct_tensor* t[2] = {nullptr, nullptr};
  ASSERT_EQ(hct_load_many(rt, names, 2, nullptr, nullptr, 0, t), HCT_OK) << hct_last_error();
  EXPECT_EQ(std::memcmp(hct_tensor_data(t[0]), m.data[6].data(), m.data[6].size() * 2), 0);
  EXPECT_EQ(std::memcmp(hct_tensor_data(t[1]), m.data[1].data(), m.data[1].size() * 2), 0);
  hct_tensor_free(t[0]);
  hct_tensor_free(t[1]);
  const char* bad[] = {m.names[0].c_str(), "missing.weight"};
  hct_tensor* u[2] = {nullptr, nullptr};
  EXPECT_EQ(hct_load_many(rt, bad, 2, nullptr, nullptr, 0, u), HCT_NOT_FOUND);
  EXPECT_NE(std::string(hct_last_error()).find("missing.weight"), std::string::npos);
  EXPECT_EQ(u[0], nullptr);
  hct_close(rt);
}

TEST(CApiExTest, StreamerIteratesRestartsAndEnds) {
  Model m = MakeModel(TempDir("capiex_stream"));
  hct_options o = HostOptions();
  hct_runtime* rt = nullptr;
  ASSERT_EQ(hct_open_ex(m.path.c_str(), &o, &rt), HCT_OK) << hct_last_error();
  hct_streamer* s = nullptr;
  ASSERT_EQ(hct_streamer_create(rt, 1, nullptr, &s), HCT_OK) << hct_last_error();
  EXPECT_EQ(hct_streamer_num_layers(s), 3);
  EXPECT_EQ(hct_streamer_max_tensors(s), 2);
  for (int pass = 0; pass < 2; ++pass) {
    for (int l = 0; l < 3; ++l) {
      hct_tensor* t[2];
      int index = -1;
      int64_t n = 0;
      ASSERT_EQ(hct_streamer_next(s, &index, t, 2, &n), HCT_OK) << hct_last_error();
      EXPECT_EQ(index, l);
      ASSERT_EQ(n, 2);
      for (int k = 0; k < 2; ++k) {
        const auto& want = m.data[size_t(2 * l + k)];
        EXPECT_EQ(std::memcmp(hct_tensor_data(t[k]), want.data(), want.size() * 2), 0);
        hct_tensor_free(t[k]);  // returns the slot: two slots serve three layers
      }
    }
    hct_tensor* t[2];
    int index = -1;
    int64_t n = 0;
    EXPECT_EQ(hct_streamer_next(s, &index, t, 2, &n), HCT_OUT_OF_RANGE);
    ASSERT_EQ(hct_streamer_restart(s), HCT_OK) << hct_last_error();
  }
  hct_tensor* one[1];
  int index = -1;
  int64_t n = 0;
  EXPECT_EQ(hct_streamer_next(s, &index, one, 1, &n), HCT_OUT_OF_RANGE);  // capacity too small
  hct_streamer_free(s);
  EXPECT_EQ(hct_streamer_create(rt, -1, nullptr, &s), HCT_INVALID_ARGUMENT);
  hct_close(rt);
}

TEST(CApiExTest, ResidentNeedsABudgetAndCacheErrorsAreCodes) {
  Model m = MakeModel(TempDir("capiex_res"));
  hct_options o = HostOptions();
  hct_runtime* rt = nullptr;
  ASSERT_EQ(hct_open_ex(m.path.c_str(), &o, &rt), HCT_OK);
  EXPECT_NE(hct_make_resident(rt, m.path.c_str()), HCT_OK);  // no resident budget
  EXPECT_NE(std::string(hct_last_error()), "");
  EXPECT_EQ(hct_release_resident(rt), HCT_OK);
  hct_close(rt);
  const char* ls = nullptr;
  EXPECT_NE(hct_cache_ls("", &ls), HCT_OK);
  EXPECT_EQ(hct_cache_warm(nullptr, m.path.c_str(), nullptr, nullptr, nullptr),
            HCT_INVALID_ARGUMENT);
}

// Warm a cache through the C API with a progress callback, list it, verify it, evict it.
TEST(CApiExTest, CacheWarmLsVerifyEvict) {
  std::string dir = TempDir("capiex_cache");
  Model m = MakeModel(dir);
  std::string cache = dir + "/cache";
  struct P { uint64_t calls = 0, last = 0, total = 0; } p;
  auto cb = [](uint64_t done, uint64_t total, void* u) {
    auto* q = static_cast<P*>(u);
    ++q->calls;
    q->last = done;
    q->total = total;
  };
  ASSERT_EQ(hct_cache_warm(cache.c_str(), m.path.c_str(), nullptr, cb, &p), HCT_OK)
      << hct_last_error();
  EXPECT_GT(p.calls, 0u);
  EXPECT_EQ(p.last, p.total);
  const char* ls = nullptr;
  ASSERT_EQ(hct_cache_ls(cache.c_str(), &ls), HCT_OK) << hct_last_error();
  EXPECT_NE(std::string(ls).find("model"), std::string::npos);
  int64_t problems = -1;
  ASSERT_EQ(hct_cache_verify(cache.c_str(), nullptr, 1, nullptr, nullptr, &problems), HCT_OK)
      << hct_last_error();
  EXPECT_EQ(problems, 0);
  hct_options o = HostOptions();
  hct_runtime* rt = nullptr;
  ASSERT_EQ(hct_open_cache_ex(cache.c_str(), nullptr, &o, &rt), HCT_OK) << hct_last_error();
  EXPECT_EQ(hct_num_tensors(rt), 7);
  hct_close(rt);
  uint64_t freed = 0;
  ASSERT_EQ(hct_cache_evict(cache.c_str(), nullptr, &freed), HCT_OK) << hct_last_error();
  EXPECT_GT(freed, 0u);
}

// Two models opened on one engine share it (its counters move for both), outlive the base, and
// hct_pack_offsets gives the layout hct_load_many uses, so a caller can allocate dst itself.
TEST(CApiExTest, ModelsOpenedOnOneEngineShareIt) {
  Model a = MakeModel(TempDir("capiex_on_a"));
  Model b = MakeModel(TempDir("capiex_on_b"));
  hct_options o = HostOptions();
  hct_runtime* base = nullptr;
  ASSERT_EQ(hct_runtime_create(&o, &base), HCT_OK) << hct_last_error();
  EXPECT_EQ(hct_num_tensors(base), 0);
  hct_runtime *ra = nullptr, *rb = nullptr;
  ASSERT_EQ(hct_open_on(base, HCT_SOURCE_AUTO, a.path.c_str(), nullptr, &ra), HCT_OK)
      << hct_last_error();
  ASSERT_EQ(hct_open_on(base, HCT_SOURCE_AUTO, b.path.c_str(), nullptr, &rb), HCT_OK);
  hct_close(base);  // the engine stays while ra and rb use it
  EXPECT_EQ(hct_open_on(ra, 7, a.path.c_str(), nullptr, &base), HCT_INVALID_ARGUMENT);
  EXPECT_EQ(hct_open_on(ra, HCT_SOURCE_AUTO, "/nonexistent/x.safetensors", nullptr, &base),
            HCT_NOT_FOUND);

  const char* names[] = {a.names[0].c_str(), a.names[3].c_str(), a.names[6].c_str()};
  uint64_t offs[3] = {}, total = 0;
  ASSERT_EQ(hct_pack_offsets(ra, names, 3, offs, &total), HCT_OK) << hct_last_error();
  EXPECT_EQ(offs[0], 0u);
  EXPECT_GE(offs[1], a.data[0].size() * 2);
  EXPECT_EQ(offs[1] % 256, 0u);
  EXPECT_GE(total, offs[2] + a.data[6].size() * 2);
  const char* missing[] = {"nope"};
  EXPECT_EQ(hct_pack_offsets(ra, missing, 1, offs, &total), HCT_NOT_FOUND);

  std::vector<std::byte> dst(total);
  hct_tensor* t[3] = {};
  ASSERT_EQ(hct_load_many(ra, names, 3, nullptr, dst.data(), total, t), HCT_OK) << hct_last_error();
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(hct_tensor_wait(t[i]), HCT_OK);
    EXPECT_EQ(hct_tensor_data(t[i]), dst.data() + offs[i]);
    const auto& want = a.data[size_t(i == 0 ? 0 : i == 1 ? 3 : 6)];
    EXPECT_EQ(std::memcmp(dst.data() + offs[i], want.data(), want.size() * 2), 0);
    hct_tensor_free(t[i]);
  }
  hct_stats sa{}, sb{};
  ASSERT_EQ(hct_runtime_stats(rb, &sb), HCT_OK);
  EXPECT_EQ(sb.loads_one_shot, 3u);  // ra's loads, counted by the engine rb shares
  hct_tensor* u = nullptr;
  ASSERT_EQ(hct_load(rb, b.names[2].c_str(), nullptr, nullptr, 0, &u), HCT_OK);
  ASSERT_EQ(hct_tensor_wait(u), HCT_OK);
  EXPECT_EQ(std::memcmp(hct_tensor_data(u), b.data[2].data(), b.data[2].size() * 2), 0);
  hct_tensor_free(u);
  ASSERT_EQ(hct_runtime_stats(ra, &sa), HCT_OK);
  EXPECT_EQ(sa.loads_one_shot, 4u);
  hct_close(ra);
  hct_close(rb);
}

}  // namespace
}  // namespace hct
