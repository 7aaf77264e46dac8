// hct::LayerStreamer::Options on the host: cyclic passes, RestartAt, the extra_bytes arena (one
// buffer, two overlapping windows, tensors released one by one) and the options' validation.
// The bytes every layer must hold come from the test file writer, not from the runtime.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <future>
#include <set>

#include "hct/runtime.h"
#include "runtime/runtime_test_util.h"

namespace hct {
namespace {

using test::MakeFile;
using test::SmallRing;
using test::TempDir;

void ExpectLayer(const StreamedLayer& l, const test::TestFile& f, int per_layer) {
  ASSERT_EQ(l.tensors.size(), size_t(per_layer)) << "layer " << l.index;
  for (size_t k = 0; k < l.tensors.size(); ++k) {
    const auto& want = f.bytes[size_t(l.index) * size_t(per_layer) + k];
    ASSERT_EQ(l.tensors[k].bytes(), want.size()) << "layer " << l.index << " tensor " << k;
    EXPECT_EQ(std::memcmp(l.tensors[k].data(), want.data(), want.size()), 0)
        << "layer " << l.index << " tensor " << k;
  }
}

std::unique_ptr<Runtime> HostRuntime() {
  auto rt = Runtime::Create(SmallRing(ODirectMode::kOff, true));
  EXPECT_TRUE(rt.ok()) << rt.status().ToString();
  return rt.ok() ? std::move(*rt) : nullptr;
}

LayerStreamer::Options Opts(int prefetch, uint64_t extra, bool cyclic) {
  LayerStreamer::Options o;
  o.prefetch = prefetch;
  o.extra_bytes = extra;
  o.cyclic = cyclic;
  return o;
}

TEST(LayerStreamerOptions, RefusesBadSettings) {
  auto f = MakeFile(TempDir("ls_bad") + "/a.bin", 4000, 40, 3, 2);
  auto rt = HostRuntime();
  ASSERT_TRUE(rt);
  auto layers = test::LayersOf(f.specs);
  // extra_bytes is a partial second slot: meaningless with whole prefetch slots.
  auto a = LayerStreamer::Create(rt.get(), layers, Opts(1, 4096, false), nullptr);
  EXPECT_EQ(a.status().code(), Code::kInvalidArgument);
  EXPECT_NE(a.status().message().find("needs prefetch 0"), std::string::npos);
  EXPECT_EQ(LayerStreamer::Create(rt.get(), layers, Opts(-1, 0, false), nullptr).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(LayerStreamer::Create(rt.get(), layers, Opts(65, 0, false), nullptr).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(LayerStreamer::Create(nullptr, layers, Opts(0, 0, false), nullptr).status().code(),
            Code::kInvalidArgument);
  auto ls = LayerStreamer::Create(rt.get(), layers, Opts(1, 0, false), nullptr);
  ASSERT_TRUE(ls.ok()) << ls.status().ToString();
  EXPECT_EQ((*ls)->RestartAt(-1).code(), Code::kInvalidArgument);
  EXPECT_EQ((*ls)->RestartAt(3).code(), Code::kInvalidArgument);
  // A refused restart leaves the streamer as it was.
  auto l0 = (*ls)->Next();
  ASSERT_TRUE(l0.ok()) << l0.status().ToString();
  EXPECT_EQ(l0->index, 0);
  ExpectLayer(*l0, f, 2);
}

// Cyclic: after the last layer the next token's layer 0 follows without Restart(), in the same
// slots, for as many passes as asked; nothing is allocated after Create.
TEST(LayerStreamerOptions, CyclicGoesOnWithLayerZeroInTheSameSlots) {
  const int n = 4, per = 3;
  auto f = MakeFile(TempDir("ls_cyclic") + "/a.bin", 9000, 41, n, per);
  auto rt = HostRuntime();
  ASSERT_TRUE(rt);
  auto ls = LayerStreamer::Create(rt.get(), test::LayersOf(f.specs), Opts(1, 0, true), nullptr);
  ASSERT_TRUE(ls.ok()) << ls.status().ToString();
  const uint64_t allocs = rt->stats().buffer_allocations;
  EXPECT_EQ(allocs, 2u);
  std::set<void*> slots;
  for (int i = 0; i < 3 * n + 2; ++i) {  // three passes and two layers of a fourth
    auto l = (*ls)->Next();
    ASSERT_TRUE(l.ok()) << "step " << i << ": " << l.status().ToString();
    ASSERT_EQ(l->index, i % n);
    ExpectLayer(*l, f, per);
    slots.insert(l->tensors[0].data());
  }
  EXPECT_EQ(slots.size(), 2u);
  EXPECT_EQ(rt->stats().buffer_allocations, allocs);
}

// RestartAt(k): the next layer handed out is k; without cyclic the pass ends after the last
// layer, with cyclic it wraps to 0. Held layers stay valid across it.
TEST(LayerStreamerOptions, RestartAtStartsAtThatLayer) {
  const int n = 5, per = 2;
  auto f = MakeFile(TempDir("ls_restart_at") + "/a.bin", 6000, 42, n, per);
  auto rt = HostRuntime();
  ASSERT_TRUE(rt);
  for (bool cyclic : {false, true}) {
    auto ls = LayerStreamer::Create(rt.get(), test::LayersOf(f.specs), Opts(2, 0, cyclic),
                                    nullptr);
    ASSERT_TRUE(ls.ok()) << ls.status().ToString();
    auto held = (*ls)->Next();  // layer 0, held across the restart
    ASSERT_TRUE(held.ok());
    ASSERT_TRUE((*ls)->RestartAt(3).ok());
    for (int want : {3, 4}) {
      auto l = (*ls)->Next();
      ASSERT_TRUE(l.ok()) << l.status().ToString();
      EXPECT_EQ(l->index, want);
      ExpectLayer(*l, f, per);
    }
    auto after = (*ls)->Next();
    if (cyclic) {
      ASSERT_TRUE(after.ok()) << after.status().ToString();
      EXPECT_EQ(after->index, 0);
      ExpectLayer(*after, f, per);
    } else {
      EXPECT_EQ(after.status().code(), Code::kOutOfRange);
    }
    ExpectLayer(*held, f, per);
    ASSERT_TRUE((*ls)->RestartAt(1).ok());  // again mid-pass, to a lower layer
    auto l1 = (*ls)->Next();
    ASSERT_TRUE(l1.ok()) << l1.status().ToString();
    EXPECT_EQ(l1->index, 1);
    ExpectLayer(*l1, f, per);
  }
}

// The extra_bytes arena: one buffer of slot + extra bytes (slots() == 1, one allocation), every
// tensor inside it, layers alternating between window 0 = [0, slot) and window 1 =
// [extra, extra + slot), over cyclic passes.
TEST(LayerStreamerOptions, ExtraBytesArenaHoldsEveryLayerInOneBuffer) {
  const int n = 5, per = 3;
  auto f = MakeFile(TempDir("ls_arena") + "/a.bin", 9000, 43, n, per);
  auto rt = HostRuntime();
  ASSERT_TRUE(rt);
  auto layers = test::LayersOf(f.specs);
  auto probe = LayerStreamer::Create(rt.get(), layers, Opts(0, 0, false), nullptr);
  ASSERT_TRUE(probe.ok());
  const uint64_t slot = ((*probe)->slot_bytes() + 255) & ~uint64_t(255);
  probe->reset();
  const uint64_t extra = slot / 2 / 256 * 256;
  const uint64_t before = rt->stats().buffer_allocations;
  auto ls = LayerStreamer::Create(rt.get(), layers, Opts(0, extra, true), nullptr);
  ASSERT_TRUE(ls.ok()) << ls.status().ToString();
  EXPECT_EQ((*ls)->slots(), 1);
  EXPECT_EQ(rt->stats().buffer_allocations, before + 1);
  const unsigned char* lo = nullptr;  // the arena's start: window 0's last tensor sits there
  for (int i = 0; i < 3 * n; ++i) {
    auto l = (*ls)->Next();
    ASSERT_TRUE(l.ok()) << "step " << i << ": " << l.status().ToString();
    ASSERT_EQ(l->index, i % n);
    ExpectLayer(*l, f, per);
    auto first = static_cast<const unsigned char*>(l->tensors.front().data());
    auto last = static_cast<const unsigned char*>(l->tensors.back().data());
    if (i == 0) lo = last;  // window 0 packs in reverse from the start
    for (const auto& t : l->tensors) {
      auto p = static_cast<const unsigned char*>(t.data());
      EXPECT_GE(p, lo) << "step " << i;
      EXPECT_LE(p + t.bytes(), lo + slot + extra) << "step " << i;
    }
    if (i % 2 == 0) {
      EXPECT_EQ(last, lo) << "window 0: the layer's last tensor first in the buffer";
    } else {
      EXPECT_EQ(first, lo + extra) << "window 1: the layer's first tensor at extra";
    }
  }
  EXPECT_EQ(rt->stats().buffer_allocations, before + 1);
}

// Tensors are released one by one in the arena: with layer 0 (window 0) dropped except its
// last-used tensor, which lies below `extra` (outside window 1), layer 1 still loads whole, and
// the held tensor is not overwritten. A streamer that waited for the whole layer would not hand
// out layer 1: the wait is bounded and fails the test instead of hanging.
TEST(LayerStreamerOptions, ExtraBytesReleasesTensorsOneByOne) {
  const int n = 4, per = 3;
  auto f = MakeFile(TempDir("ls_pieces") + "/a.bin", 9000, 44, n, per);
  auto rt = HostRuntime();
  ASSERT_TRUE(rt);
  auto layers = test::LayersOf(f.specs);
  uint64_t slot = 0;
  for (const auto& l : layers) {
    uint64_t total = 0;
    PackOffsets(l, &total);
    slot = std::max(slot, total);
  }
  slot = (slot + 255) & ~uint64_t(255);
  uint64_t last_bytes = 0;  // the largest last tensor of a layer, as packed (256-aligned)
  for (const auto& l : layers) last_bytes = std::max<uint64_t>(last_bytes, (l.back().length + 255) & ~uint64_t(255));
  const uint64_t extra = std::max(last_bytes, slot / 2) / 256 * 256 + 256;
  ASSERT_LT(extra, slot) << "fixture: the windows must overlap";
  auto ls = LayerStreamer::Create(rt.get(), layers, Opts(0, extra, false), nullptr);
  ASSERT_TRUE(ls.ok()) << ls.status().ToString();
  auto l0 = (*ls)->Next();
  ASSERT_TRUE(l0.ok()) << l0.status().ToString();
  ASSERT_EQ(l0->index, 0);
  LoadedTensor kept = std::move(l0->tensors.back());
  l0->tensors.clear();  // the first-used ones, in the shared bytes, are dropped
  auto next = std::async(std::launch::async, [&] { return (*ls)->Next(); });
  if (next.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
    kept = LoadedTensor();  // let the streamer go on, then fail
    next.wait();
    FAIL() << "layer 1 waited for a layer-0 tensor outside its window";
  }
  auto l1 = next.get();
  ASSERT_TRUE(l1.ok()) << l1.status().ToString();
  EXPECT_EQ(l1->index, 1);
  ExpectLayer(*l1, f, per);
  const auto& want = f.bytes[per - 1];
  ASSERT_EQ(kept.bytes(), want.size());
  EXPECT_EQ(std::memcmp(kept.data(), want.data(), want.size()), 0) << "held tensor overwritten";
  kept = LoadedTensor();
  l1->tensors.clear();
  for (int want_layer : {2, 3}) {
    auto l = (*ls)->Next();
    ASSERT_TRUE(l.ok()) << l.status().ToString();
    EXPECT_EQ(l->index, want_layer);
    ExpectLayer(*l, f, per);
  }
  EXPECT_EQ((*ls)->Next().status().code(), Code::kOutOfRange);
}

// RestartAt in arena mode: the windows start over and every layer's bytes are right.
TEST(LayerStreamerOptions, ExtraBytesRestartAt) {
  const int n = 4, per = 2;
  auto f = MakeFile(TempDir("ls_arena_restart") + "/a.bin", 7000, 45, n, per);
  auto rt = HostRuntime();
  ASSERT_TRUE(rt);
  auto ls = LayerStreamer::Create(rt.get(), test::LayersOf(f.specs), Opts(0, 2048, true),
                                  nullptr);
  ASSERT_TRUE(ls.ok()) << ls.status().ToString();
  for (int start : {2, 0, 3, 1}) {
    ASSERT_TRUE((*ls)->RestartAt(start).ok());
    for (int i = 0; i < n + 1; ++i) {
      auto l = (*ls)->Next();
      ASSERT_TRUE(l.ok()) << l.status().ToString();
      EXPECT_EQ(l->index, (start + i) % n);
      ExpectLayer(*l, f, per);
    }
  }
}

}  // namespace
}  // namespace hct
