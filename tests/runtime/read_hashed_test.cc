// ReadHashed (runtime/detail/file_reader.h), the compressed loader's page-cache read of a huff
// chunk: read in 256 KiB steps and hashed step by step, it must put every byte where one
// ReadRange would (also for offsets that are not 4096-aligned, and with O_DIRECT) and give the
// XXH3-64 of the whole range, which is checked here against the one-shot hash of the file's
// bytes (ranges of one, several and a partial step).
#include <xxhash.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>

#include "runtime/detail/file_reader.h"
#include "runtime/runtime_test_util.h"

namespace hct::detail {
namespace {

struct FreeDeleter {
  void operator()(std::byte* p) const { std::free(p); }
};

constexpr uint64_t kHashStepBytes = 256ull << 10;  // the default step (RuntimeOptions)

class ReadHashedTest : public ::testing::TestWithParam<ODirectMode> {};

TEST_P(ReadHashedTest, BytesAndHashEqualOneRead) {
  const std::string path = test::TempDir("read_hashed") + "/data.bin";
  const uint64_t size = 3 * kHashStepBytes + 12345;  // not a multiple of 4096
  std::vector<std::byte> want(size);
  std::mt19937_64 rng(7);
  for (auto& b : want) b = std::byte(rng() & 0xFF);
  {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(want.data()), std::streamsize(size));
  }
  FileTable files(GetParam());
  auto f = files.Open(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  const bool direct = GetParam() == ODirectMode::kOn;
  struct Case {
    uint64_t off, n;
  };
  const Case cases[] = {{0, 1},
                        {0, kHashStepBytes},
                        {4096, kHashStepBytes + 1},
                        {8192, 2 * kHashStepBytes + 777},
                        {100, kHashStepBytes + 5000},  // unaligned: the cover shifts each step
                        {4096 * 3 + 17, size - (4096 * 3 + 17)},
                        {0, size}};
  for (const Case& c : cases) {
    const uint64_t cover = CoverBytes(c.off, c.n);
    std::unique_ptr<std::byte, FreeDeleter> buf(
        static_cast<std::byte*>(std::aligned_alloc(kAlign, AlignUp(cover))));
    uint64_t x = 0;
    for (uint64_t step : {kHashStepBytes, uint64_t(4096), uint64_t(0)}) {  // 0: one read
      std::memset(buf.get(), 0, AlignUp(cover));
      auto got = ReadHashed(**f, direct, buf.get(), c.off, c.n, &x, step);
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      EXPECT_EQ(*got, buf.get() + c.off % kAlign);
      EXPECT_EQ(0, std::memcmp(*got, want.data() + c.off, c.n)) << c.off << "+" << c.n;
      EXPECT_EQ(x, XXH3_64bits(want.data() + c.off, c.n)) << c.off << "+" << c.n << " " << step;
    }
    // Without a hash it is one ReadRange.
    std::memset(buf.get(), 0, AlignUp(cover));
    auto got = ReadHashed(**f, direct, buf.get(), c.off, c.n, nullptr, kHashStepBytes);
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(0, std::memcmp(*got, want.data() + c.off, c.n));
  }
  // A range past the end of the file fails (the file shrank), naming it.
  std::unique_ptr<std::byte, FreeDeleter> buf(
      static_cast<std::byte*>(std::aligned_alloc(kAlign, AlignUp(size + 8192))));
  uint64_t x = 0;
  auto bad = ReadHashed(**f, direct, buf.get(), 0, size + 4096, &x, kHashStepBytes);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(path), std::string::npos) << bad.status().ToString();
}

INSTANTIATE_TEST_SUITE_P(Modes, ReadHashedTest,
                         ::testing::Values(ODirectMode::kOff, ODirectMode::kOn));

}  // namespace
}  // namespace hct::detail
