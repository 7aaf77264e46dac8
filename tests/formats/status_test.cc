#include "hct/status.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cerrno>

#include "hct/detail/check_host.h"
#include "hct/dtype.h"

namespace hct {
namespace {

TEST(Status, OkAndErrors) {
  EXPECT_TRUE(Status::OK().ok());
  Status s = Status::Corruption("chunk 3 checksum mismatch").WithContext("tensor 'w'").WithContext("a.hct");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kCorruption);
  EXPECT_EQ(s.ToString(), "Corruption: a.hct: tensor 'w': chunk 3 checksum mismatch");
}

Result<int> Half(int x) {
  if (x % 2) return Status::InvalidArgument("odd");
  return x / 2;
}

Result<int> Quarter(int x) {
  HCT_ASSIGN_OR_RETURN(int h, Half(x));
  HCT_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

TEST(Result, PropagatesErrors) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).status().code(), Code::kInvalidArgument);
}

Status ZstdFails() {
  HCT_CHECK(zstd, ZSTD_decompress(nullptr, 0, "xx", 2));
  return Status::OK();
}

Status PosixFails() {
  HCT_CHECK(posix, ::close(-1));
  return Status::OK();
}

TEST(Check, RecordsCallFileAndLine) {
  Status s = ZstdFails();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("ZSTD_decompress(nullptr, 0, \"xx\", 2) failed"), std::string::npos);
  EXPECT_NE(s.message().find("status_test.cc:"), std::string::npos);
  Status p = PosixFails();
  EXPECT_EQ(p.code(), Code::kIOError);
  EXPECT_NE(p.message().find("close(-1)"), std::string::npos);
}

TEST(DType, NamesSizes) {
  for (int i = 0; i < kNumDTypes; ++i) {
    DType t = static_cast<DType>(i);
    EXPECT_EQ(ParseDType(DTypeName(t)), t);
  }
  EXPECT_EQ(DTypeBytes(DType::kBF16, 3), 6u);
  EXPECT_EQ(DTypeBytes(DType::kF4, 3), std::nullopt);
  EXPECT_EQ(DTypeBytes(DType::kF4, 4), 2u);
  EXPECT_EQ(DTypeBytes(DType::kF64, UINT64_MAX / 4), std::nullopt);
  EXPECT_FALSE(ParseDType("bf16").has_value());
}

}  // namespace
}  // namespace hct
