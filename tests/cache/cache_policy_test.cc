// Eviction policy (LRU, pins, leases across processes), verify, cleanup on open.
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <csignal>

#include <fstream>
#include <thread>

#include "cache_test_util.h"
#include "hct/cache.h"
#include "hct/detail/file.h"

namespace hct {
namespace {

using namespace hct::testing;

std::unique_ptr<Cache> OpenOrDie(const std::string& dir) {
  auto c = Cache::Open(dir);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(*c) : nullptr;
}

// Three one-file models a, b, c of about 8 KB of data each.
void ThreeModels(const TempDir& t, Cache* c) {
  for (const char* n : {"a", "b", "c"}) {
    fs::create_directories(t / (std::string("src/") + n));
    WriteFakeSafetensors(t / (std::string("src/") + n + "/model.safetensors"),
                         {{"w", "U8", {8192}, RandomBytes(8192, n[0])}});
    ASSERT_TRUE(c->Warm(t / (std::string("src/") + n), {.model_name = n}).ok());
  }
}

TEST(CachePolicy, EvictsLeastRecentlyUsedFirst) {
  TempDir t;
  auto c = OpenOrDie(t / "cache");
  ThreeModels(t, c.get());
  // a and c are read; b is the least recently used (never read, warmed in the same second).
  c->RecordAccess(c->LookupTensor("a", "w")->tensor_id);
  c->RecordAccess(c->LookupTensor("c", "w")->tensor_id);
  c->RecordAccess(c->LookupTensor("c", "w")->tensor_id);
  ASSERT_TRUE(c->FlushAccess().ok());
  auto models = c->ListModels();
  EXPECT_EQ((*models)[0].access_count, 1u);
  EXPECT_EQ((*models)[1].access_count, 0u);
  EXPECT_EQ((*models)[2].access_count, 2u);
  uint64_t total = c->Stat()->bytes;
  uint64_t one = total / 3;
  // Dry run lists b and changes nothing.
  auto dry = c->Evict({.max_size = total - one, .dry_run = true});
  ASSERT_TRUE(dry.ok());
  ASSERT_EQ(dry->evicted.size(), 1u);
  EXPECT_EQ(dry->evicted[0].model, "b");
  EXPECT_EQ(c->Stat()->bytes, total);
  auto r = c->Evict({.max_size = total - one});
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->evicted.size(), 1u);
  EXPECT_EQ(r->evicted[0].model, "b");
  EXPECT_FALSE(fs::exists(r->evicted[0].path));
  EXPECT_EQ(c->LookupTensor("b", "w").status().code(), Code::kNotFound);
  EXPECT_TRUE(r->target_reached);
  // An emptied model disappears from the listing.
  EXPECT_EQ(c->ListModels()->size(), 2u);
  // Next: a (older access than... same second; ties go by id: a was warmed first).
  r = c->Evict({.max_size = one});
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->evicted.size(), 1u);
  EXPECT_EQ(r->evicted[0].model, "a");
}

TEST(CachePolicy, PinnedIsNeverEvicted) {
  TempDir t;
  auto c = OpenOrDie(t / "cache");
  ThreeModels(t, c.get());
  ASSERT_TRUE(c->Pin("a").ok());
  EXPECT_EQ(c->Pin("zzz").code(), Code::kNotFound);
  auto r = c->Evict({.all = true});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->evicted.size(), 2u);
  EXPECT_EQ(r->pinned_skipped, 1u);
  EXPECT_TRUE(c->LookupTensor("a", "w").ok());
  r = c->Evict({.max_size = 0});
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->target_reached);
  EXPECT_TRUE(c->LookupTensor("a", "w").ok());
  r = c->Evict({.model = "a"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->evicted.size(), 0u);
  ASSERT_TRUE(c->Unpin("a").ok());
  r = c->Evict({.model = "a"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->evicted.size(), 1u);
  EXPECT_EQ(c->Stat()->entries, 0u);
  EXPECT_EQ(c->Evict({}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(c->Evict({.model = "nope"}).status().code(), Code::kNotFound);
}

TEST(CachePolicy, LeaseHeldByAnotherProcessBlocksEvict) {
  TempDir t;
  std::string path;
  {
    auto c = OpenOrDie(t / "cache");
    ThreeModels(t, c.get());
    path = c->LookupTensor("b", "w")->path;
  }
  int ready[2], release[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(release), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    auto c = Cache::Open(t / "cache");
    if (!c.ok()) ::_exit(2);
    auto loc = (*c)->LookupTensor("b", "w");
    auto lease = (*c)->LeaseEntry(*loc);
    if (!lease.ok()) ::_exit(3);
    char x = 1;
    (void)!::write(ready[1], &x, 1);
    (void)!::read(release[0], &x, 1);  // hold the lease until told
    ::_exit(0);
  }
  char x;
  ASSERT_EQ(::read(ready[0], &x, 1), 1);
  {
    auto c = OpenOrDie(t / "cache");
    auto r = c->Evict({.all = true});
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->evicted.size(), 2u);
    ASSERT_EQ(r->leased.size(), 1u);
    EXPECT_EQ(r->leased[0], path);
    EXPECT_FALSE(r->target_reached);
    EXPECT_TRUE(fs::exists(path));
    EXPECT_TRUE(c->LookupTensor("b", "w").ok());
  }
  // The reader crashes (kill -9): the kernel drops its lock, evict proceeds.
  ::kill(pid, SIGKILL);
  int st;
  ::waitpid(pid, &st, 0);
  auto c = OpenOrDie(t / "cache");
  auto r = c->Evict({.all = true});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->evicted.size(), 1u);
  EXPECT_FALSE(fs::exists(path));
  // A lease on an evicted entry fails cleanly.
  EXPECT_EQ(Lease::Acquire(path).status().code(), Code::kNotFound);
}

TEST(CachePolicy, LeaseSurvivesRewarmOfItsEntry) {
  TempDir t;
  auto c = OpenOrDie(t / "cache");
  ThreeModels(t, c.get());
  auto loc = c->LookupTensor("a", "w");
  auto lease = c->LeaseEntry(*loc);
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(c->Warm(t / "src/a", {.force = true}).ok());
  auto loc2 = c->LookupTensor("a", "w");
  EXPECT_NE(loc2->path, loc->path);
  // The leased old file is kept (an orphan) until the lease goes, then gc removes it.
  EXPECT_TRUE(fs::exists(loc->path));
  std::vector<std::byte> buf(loc->length);
  ASSERT_EQ(::pread(lease->fd(), buf.data(), buf.size(), loc->offset),
            static_cast<ssize_t>(buf.size()));
  EXPECT_EQ(std::memcmp(buf.data(), RandomBytes(8192, 'a').data(), 8192), 0);
  auto gc = c->Gc();
  ASSERT_TRUE(gc.ok());
  EXPECT_TRUE(gc->orphans_removed.empty());
  lease->Release();
  gc = c->Gc();
  ASSERT_TRUE(gc.ok());
  ASSERT_EQ(gc->orphans_removed.size(), 1u);
  EXPECT_EQ(gc->orphans_removed[0], loc->path);
}

TEST(CacheVerify, DeepFindsBitFlipQuickFindsTruncation) {
  TempDir t;
  FakeModel m = MakeFakeModel(t / "src/tiny", 2, 2, 2, 2048);
  auto c = OpenOrDie(t / "cache");
  ASSERT_TRUE(c->Warm(m.dir).ok());
  auto v = c->Verify({.mode = VerifyMode::kDeep});
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok());
  EXPECT_EQ(v->tensors_checked, m.all.size());
  auto loc = c->LookupTensor("model.layers.1.self_attn.k_proj.weight");
  FlipBit(loc->path, loc->offset + 100, 3);
  v = c->Verify({.mode = VerifyMode::kQuick});
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok());  // quick does not read data
  v = c->Verify({.mode = VerifyMode::kDeep});
  ASSERT_TRUE(v.ok());
  ASSERT_EQ(v->problems.size(), 1u);
  EXPECT_EQ(v->problems[0].kind, VerifyProblem::kCorrupt);
  EXPECT_EQ(v->problems[0].tensor, loc->name);
  EXPECT_EQ(v->problems[0].path, loc->path);
  // Truncation is seen by quick.
  auto other = c->LookupTensor("model.embed_tokens.weight");
  fs::resize_file(other->path, fs::file_size(other->path) - 1);
  v = c->Verify({.mode = VerifyMode::kQuick});
  ASSERT_EQ(v->problems.size(), 1u);
  EXPECT_EQ(v->problems[0].path, other->path);
  // Repair re-warms both from the source.
  v = c->Verify({.mode = VerifyMode::kDeep, .repair = true});
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->problems.size(), 2u);
  EXPECT_TRUE(v->repaired);
  v = c->Verify({.mode = VerifyMode::kDeep});
  EXPECT_TRUE(v->ok());
  loc = c->LookupTensor("model.layers.1.self_attn.k_proj.weight");
  for (auto& ft : m.all)
    if (ft.name == loc->name) EXPECT_EQ(ReadRange(loc->path, loc->offset, loc->length), ft.bytes);
}

TEST(CacheVerify, RepairWithoutSourceDropsEntry) {
  TempDir t;
  FakeModel m = MakeFakeModel(t / "src/tiny", 1, 1, 1, 512);
  auto c = OpenOrDie(t / "cache");
  ASSERT_TRUE(c->Warm(m.dir).ok());
  auto loc = c->LookupTensor("model.layers.0.self_attn.q_proj.weight");
  FlipBit(loc->path, loc->offset, 0);
  fs::remove_all(m.dir);
  auto v = c->Verify({.mode = VerifyMode::kDeep, .repair = true});
  ASSERT_TRUE(v.ok());
  ASSERT_EQ(v->problems.size(), 1u);
  EXPECT_EQ(v->problems[0].action.rfind("removed from index", 0), 0u) << v->problems[0].action;
  EXPECT_EQ(c->LookupTensor(loc->name).status().code(), Code::kNotFound);
  EXPECT_FALSE(fs::exists(loc->path));
  EXPECT_TRUE(c->Verify({.mode = VerifyMode::kDeep})->ok());
}

TEST(CacheOpen, CleansLeftoversAndDanglingRows) {
  TempDir t;
  FakeModel m = MakeFakeModel(t / "src/tiny", 1, 2, 1, 512);
  std::string gone;
  {
    auto c = OpenOrDie(t / "cache");
    ASSERT_TRUE(c->Warm(m.dir).ok());
    gone = c->LookupTensor("model.layers.0.self_attn.q_proj.weight")->path;
  }
  std::string temp = t / (std::string("cache/entries/tiny/x.safetensors") + detail::kTempMarker + "123.0");
  std::string orphan = t / "cache/entries/tiny/old.safetensors";
  std::ofstream(temp) << "partial";
  std::ofstream(orphan) << "orphan";
  fs::remove(gone);
  {
    // Verify (without opening cleanup) reports all three.
    auto c = Cache::Open(t / "cache", {.cleanup = false});
    ASSERT_TRUE(c.ok());
    auto v = (*c)->Verify({});
    ASSERT_TRUE(v.ok());
    std::map<int, int> kinds;
    for (auto& p : v->problems) kinds[p.kind]++;
    EXPECT_EQ(kinds[VerifyProblem::kMissing], 1);
    EXPECT_EQ(kinds[VerifyProblem::kOrphan], 1);
    EXPECT_EQ(kinds[VerifyProblem::kTemp], 1);
  }
  auto c = OpenOrDie(t / "cache");
  const CleanupReport& rep = c->open_report();
  EXPECT_EQ(rep.temp_files_removed, std::vector<std::string>{temp});
  EXPECT_EQ(rep.orphans_removed, std::vector<std::string>{orphan});
  EXPECT_EQ(rep.dangling_rows_dropped, std::vector<std::string>{gone});
  EXPECT_FALSE(fs::exists(temp));
  EXPECT_TRUE(c->Verify({.mode = VerifyMode::kDeep})->ok());
  EXPECT_TRUE(c->LookupTensor("model.layers.1.self_attn.q_proj.weight").ok());
}

TEST(CacheOpen, LeftoversOfARunningWarmAreLeftAlone) {
  TempDir t;
  { OpenOrDie(t / "cache"); }
  std::string temp = t / (std::string("cache/entries/x.safetensors") + detail::kTempMarker + "1.0");
  std::ofstream(temp) << "in progress";
  // Another process "warming": holds warm.lock shared.
  int fd = ::open((t / "cache/locks/warm.lock").c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_EQ(::flock(fd, LOCK_SH), 0);
  {
    auto c = OpenOrDie(t / "cache");
    EXPECT_TRUE(c->open_report().skipped_busy);
    EXPECT_TRUE(fs::exists(temp));
  }
  ::close(fd);
  auto c = OpenOrDie(t / "cache");
  EXPECT_FALSE(fs::exists(temp));
}

TEST(CacheOpen, UnwritableDirectoryIsAClearError) {
  TempDir t;
  FakeModel m = MakeFakeModel(t / "src/tiny", 1, 1, 1, 64);
  {
    auto c = OpenOrDie(t / "cache");
    ASSERT_TRUE(c->Warm(m.dir).ok());
  }
  fs::permissions(t / "cache", fs::perms::owner_read | fs::perms::owner_exec |
                                   fs::perms::group_read | fs::perms::others_read |
                                   fs::perms::group_exec | fs::perms::others_exec);
  fs::permissions(t.path(), fs::perms::others_exec, fs::perm_options::add);
  fs::permissions(t / "src", fs::perms::others_exec | fs::perms::others_read, fs::perm_options::add);
  // Root ignores permissions: run the attempt as nobody.
  int rc = RunInChild([&] {
    if (::geteuid() == 0 && ::setuid(65534) != 0) return 10;
    auto c = Cache::Open(t / "cache");
    if (c.ok()) return 11;
    if (c.status().code() != Code::kIOError) return 12;
    if (c.status().message().find("is not writable") == std::string::npos) {
      std::fprintf(stderr, "%s\n", c.status().ToString().c_str());
      return 13;
    }
    if (c.status().message().find(t / "cache") == std::string::npos) return 14;
    return 0;
  });
  EXPECT_EQ(rc, 0);
  fs::permissions(t / "cache", fs::perms::owner_all, fs::perm_options::add);
  auto c = OpenOrDie(t / "cache");
  EXPECT_TRUE(c->Verify({.mode = VerifyMode::kDeep})->ok());
}

TEST(CacheOpen, FullDiskDuringWarmLeavesCacheConsistent) {
  TempDir t;
  FakeModel m = MakeFakeModel(t / "src/tiny", 1, 4, 2, 64 * 1024);
  { OpenOrDie(t / "cache"); }
  // A file size limit stands in for a full disk: writes past it fail with EFBIG.
  int rc = RunInChild([&] {
    ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {300 * 1024, 300 * 1024};
    ::setrlimit(RLIMIT_FSIZE, &rl);
    auto c = Cache::Open(t / "cache");
    if (!c.ok()) return 20;
    auto r = (*c)->Warm(m.dir, {.threads = 1});
    if (r.ok()) return 21;
    if (r.status().message().find(t / "cache/entries") == std::string::npos) return 22;
    return 0;
  });
  EXPECT_EQ(rc, 0);
  auto c = OpenOrDie(t / "cache");
  EXPECT_TRUE(c->Verify({.mode = VerifyMode::kDeep})->ok());
  auto r = c->Warm(m.dir);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->tensors_written + r->tensors_skipped, m.all.size());
  EXPECT_TRUE(c->Verify({.mode = VerifyMode::kDeep})->ok());
}

}  // namespace
}  // namespace hct
