// Process-level tests: kill -9 at seeded random points of warm and evict, then the cache must
// verify clean and a re-run must complete; concurrent warm + evict + reader processes.
//
// HCT_CACHE_CRASH_TRIALS=N (default 10) sets the number of kill trials; the full form is >= 100.
// HCT_CACHE_CRASH_SEED=S changes the seed (default 20240601).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <xxhash.h>

#include <chrono>
#include <csignal>
#include <map>
#include <random>
#include <thread>

#include "cache/detail/locks.h"
#include "cache_test_util.h"
#include "hct/cache.h"

namespace hct {
namespace {

using namespace hct::testing;
using Clock = std::chrono::steady_clock;

long EnvLong(const char* name, long def) {
  const char* v = std::getenv(name);
  return v ? std::atol(v) : def;
}

std::map<std::string, uint64_t> SourceSums(const FakeModel& m) {
  std::map<std::string, uint64_t> s;
  for (const auto& t : m.all) s[t.name] = XXH3_64bits(t.bytes.data(), t.bytes.size());
  return s;
}

// The cache never lies: verify --deep is clean and every indexed tensor has the source's bytes.
void ExpectConsistent(const std::string& dir, const std::map<std::string, uint64_t>& sums,
                      const std::string& what) {
  auto c = Cache::Open(dir);
  ASSERT_TRUE(c.ok()) << what << ": " << c.status().ToString();
  auto v = (*c)->Verify({.mode = VerifyMode::kDeep});
  ASSERT_TRUE(v.ok()) << what << ": " << v.status().ToString();
  for (const auto& p : v->problems)
    ADD_FAILURE() << what << ": problem " << p.kind << " " << p.path << " " << p.detail;
  auto ts = (*c)->ListTensors();
  ASSERT_TRUE(ts.ok());
  for (const auto& t : *ts) {
    auto it = sums.find(t.name);
    ASSERT_NE(it, sums.end()) << t.name;
    EXPECT_EQ(t.xxh3, it->second) << what << ": " << t.name;
  }
}

enum Op { kWarm, kEvictAll, kEvictHalf };

int RunOp(const std::string& dir, const std::string& src, Op op) {
  auto c = Cache::Open(dir);
  if (!c.ok()) return 30;
  if (op == kWarm) return (*c)->Warm(src, {.threads = 2}).ok() ? 0 : 31;
  EvictOptions eo;
  if (op == kEvictAll) eo.all = true;
  else eo.max_size = (*c)->Stat()->bytes / 2;
  return (*c)->Evict(eo).ok() ? 0 : 32;
}

// Runs `op` in a child. crash_at > 0 arms that crash point; kill_after_us >= 0 kills it after a
// delay. Returns (crash points passed when it completed, or -1 if killed), and the wall time.
std::pair<long, double> Child(const std::string& dir, const std::string& src, Op op, long crash_at,
                              long kill_after_us) {
  int p[2];
  if (::pipe(p) != 0) return {-2, 0};
  auto t0 = Clock::now();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(p[0]);
    detail::SetCrashAt(crash_at);
    int rc = RunOp(dir, src, op);
    long n = detail::CrashPointsPassed();
    (void)!::write(p[1], &n, sizeof n);
    ::_exit(rc);
  }
  ::close(p[1]);
  if (kill_after_us >= 0) {
    std::this_thread::sleep_for(std::chrono::microseconds(kill_after_us));
    ::kill(pid, SIGKILL);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  long n = -1;
  if (::read(p[0], &n, sizeof n) != sizeof n) n = -1;
  ::close(p[0]);
  if (WIFEXITED(st) && WEXITSTATUS(st) != 0) {
    ADD_FAILURE() << "op " << op << " failed with exit code " << WEXITSTATUS(st);
  }
  return {WIFEXITED(st) ? n : -1, secs};
}

TEST(CacheCrash, KillNineDuringWarmAndEvict) {
  TempDir t;
  FakeModel m = MakeFakeModel(t / "src/m", 2, 6, 3, 16 * 1024);
  auto sums = SourceSums(m);
  std::string dir = t / "cache";
  // Size the kill ranges with uninterrupted runs.
  auto [warm_points, warm_secs] = Child(dir, m.dir, kWarm, 0, -1);
  auto [evict_points, evict_secs] = Child(dir, m.dir, kEvictAll, 0, -1);
  ASSERT_GT(warm_points, 0);
  ASSERT_GT(evict_points, 0);
  const long trials = EnvLong("HCT_CACHE_CRASH_TRIALS", 10);
  std::mt19937_64 rng(static_cast<uint64_t>(EnvLong("HCT_CACHE_CRASH_SEED", 20240601)));
  int killed = 0;
  for (long i = 0; i < trials; ++i) {
    Op op = i % 3 == 0 ? kWarm : i % 3 == 1 ? kEvictAll : kEvictHalf;
    if (op != kWarm) {
      // Evict trials start from a warm cache.
      ASSERT_EQ(Child(dir, m.dir, kWarm, 0, -1).first >= 0, true);
    }
    long points = op == kWarm ? warm_points : evict_points;
    double secs = op == kWarm ? warm_secs : evict_secs;
    bool timed = rng() % 2;
    long crash_at = timed ? 0 : 1 + static_cast<long>(rng() % static_cast<uint64_t>(points));
    long kill_us = timed ? static_cast<long>(rng() % static_cast<uint64_t>(secs * 1e6 + 1)) : -1;
    auto [done, s] = Child(dir, m.dir, op, crash_at, kill_us);
    if (done < 0) ++killed;
    std::string what = "trial " + std::to_string(i) + " op " + std::to_string(op) +
                       (timed ? " kill after " + std::to_string(kill_us) + "us"
                              : " crash point " + std::to_string(crash_at));
    ExpectConsistent(dir, sums, what);
    if (::testing::Test::HasFailure()) return;
    // A re-run completes and leaves the cache consistent.
    ASSERT_GE(Child(dir, m.dir, op, 0, -1).first, 0) << what;
    ExpectConsistent(dir, sums, what + " (re-run)");
    if (op == kWarm) {
      auto c = Cache::Open(dir);
      EXPECT_EQ((*c)->Stat()->tensors, m.all.size()) << what;
    }
  }
  std::printf("[ measure ] %ld kill trials, %d killed mid-operation (warm %ld crash points, "
              "evict %ld)\n", trials, killed, warm_points, evict_points);
  EXPECT_GT(killed, 0);
}

TEST(CacheCrash, ConcurrentWarmEvictAndReader) {
  TempDir t;
  FakeModel m = MakeFakeModel(t / "src/m", 2, 4, 3, 8 * 1024);
  auto sums = SourceSums(m);
  std::string dir = t / "cache";
  { ASSERT_TRUE(Cache::Open(dir).ok()); }
  auto spawn = [&](auto fn) {
    pid_t pid = ::fork();
    if (pid == 0) ::_exit(fn());
    return pid;
  };
  std::vector<pid_t> pids;
  for (int w = 0; w < 2; ++w)
    pids.push_back(spawn([&, w] {
      for (int i = 0; i < 4; ++i) {
        auto c = Cache::Open(dir);
        if (!c.ok()) return 40;
        auto r = (*c)->Warm(m.dir, {.threads = 2, .force = (i + w) % 2 == 1});
        if (!r.ok()) {
          std::fprintf(stderr, "warm: %s\n", r.status().ToString().c_str());
          return 41;
        }
      }
      return 0;
    }));
  pids.push_back(spawn([&] {
    for (int i = 0; i < 15; ++i) {
      auto c = Cache::Open(dir);
      if (!c.ok()) return 50;
      auto r = (*c)->Evict({.all = true});
      if (!r.ok()) {
        std::fprintf(stderr, "evict: %s\n", r.status().ToString().c_str());
        return 51;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return 0;
  }));
  pids.push_back(spawn([&] {
    auto c = Cache::Open(dir);
    if (!c.ok()) return 60;
    auto until = Clock::now() + std::chrono::milliseconds(1500);
    std::mt19937 rng(7);
    long reads = 0;
    std::vector<std::byte> buf;
    while (Clock::now() < until) {
      const FakeTensor& ft = m.all[rng() % m.all.size()];
      auto loc = (*c)->LookupTensor("m", ft.name);
      if (!loc.ok()) continue;  // evicted or not warm yet
      auto lease = (*c)->LeaseEntry(*loc);
      if (!lease.ok()) continue;  // evicted between lookup and lease
      buf.resize(loc->length);
      if (::pread(lease->fd(), buf.data(), buf.size(), static_cast<off_t>(loc->offset)) !=
          static_cast<ssize_t>(buf.size()))
        return 61;
      uint64_t h = XXH3_64bits(buf.data(), buf.size());
      if (h != loc->xxh3 || h != sums[ft.name]) {
        std::fprintf(stderr, "reader saw wrong bytes for %s in %s\n", ft.name.c_str(),
                     loc->path.c_str());
        return 62;
      }
      (*c)->RecordAccess(loc->tensor_id);
      ++reads;
    }
    std::printf("[ measure ] concurrent reader: %ld verified reads\n", reads);
    std::fflush(stdout);
    return 0;
  }));
  for (pid_t p : pids) {
    int st = 0;
    ::waitpid(p, &st, 0);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "child status " << st;
  }
  ExpectConsistent(dir, sums, "after concurrent run");
  auto c = Cache::Open(dir);
  ASSERT_TRUE((*c)->Warm(m.dir).ok());
  EXPECT_EQ((*c)->Stat()->tensors, m.all.size());
}

}  // namespace
}  // namespace hct
