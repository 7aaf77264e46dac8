#include <gtest/gtest.h>
#include <stdlib.h>

#include "hct/cache.h"

namespace hct {
namespace {

// ParseSize is the project-wide parser now: tests/formats/size_test.cc.
TEST(CacheUtil, FormatSize) {
  EXPECT_EQ(FormatSize(512), "512");
  EXPECT_EQ(FormatSize(1536), "1.50K");
  EXPECT_EQ(FormatSize(500ull << 30), "500G");
  EXPECT_EQ(FormatSize(20ull << 20), "20.0M");
}

// LayerOfTensor is the project-wide rule now: tests/formats/layer_rule_test.cc.

TEST(CacheUtil, ResolveCacheDirOrder) {
  ::setenv("HCT_CACHE_DIR", "/a/b", 1);
  ::setenv("XDG_CACHE_HOME", "/x", 1);
  ::setenv("HOME", "/home/u", 1);
  EXPECT_EQ(*ResolveCacheDir("/flag"), "/flag");
  EXPECT_EQ(*ResolveCacheDir(""), "/a/b");
  ::unsetenv("HCT_CACHE_DIR");
  EXPECT_EQ(*ResolveCacheDir(""), "/x/hct");
  ::unsetenv("XDG_CACHE_HOME");
  EXPECT_EQ(*ResolveCacheDir(""), "/home/u/.cache/hct");
  ::unsetenv("HOME");
  auto r = ResolveCacheDir("");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  ::setenv("HOME", "/root", 1);
}

}  // namespace
}  // namespace hct
