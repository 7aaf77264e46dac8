// hct::ParseSize (include/hct/units.h): the one size parser of the project (issue 10 item 16).
#include <gtest/gtest.h>

#include "hct/units.h"

namespace hct {
namespace {

TEST(ParseSize, UnitsAndFractions) {
  EXPECT_EQ(*ParseSize("500G"), 500ull << 30);
  EXPECT_EQ(*ParseSize("1.5T"), 3ull << 39);
  EXPECT_EQ(*ParseSize("64M"), 64ull << 20);
  EXPECT_EQ(*ParseSize("10GiB"), 10ull << 30);
  EXPECT_EQ(*ParseSize("10gb"), 10ull << 30);
  EXPECT_EQ(*ParseSize("1k"), 1024u);
  EXPECT_EQ(*ParseSize("5 G"), 5ull << 30);
  EXPECT_EQ(*ParseSize("4096"), 4096u);
  EXPECT_EQ(*ParseSize("0"), 0u);
  EXPECT_EQ(*ParseSize("8192P"), 8192ull << 50);
  // Integers are exact up to 2^64 - 1 (a double would round them).
  EXPECT_EQ(*ParseSize("18446744073709551615"), 18446744073709551615ull);
}

// Each of these was accepted (or mis-read) by one of the three parsers the project had.
TEST(ParseSize, RejectsWithAClearMessage) {
  for (const char* bad : {"", " ", "G", "12X", "-5G", "-1", "+3", "1.2.3M", "5 GGB", "abc", ".",
                          "20000P", "18446744073709551616", "16E", "1e3"}) {
    auto r = ParseSize(bad);
    ASSERT_FALSE(r.ok()) << "'" << bad << "' parsed as " << *r;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    EXPECT_NE(r.status().message().find(std::string("'") + bad), std::string::npos)
        << r.status().message();
  }
  EXPECT_NE(ParseSize("20000P").status().message().find("too large"), std::string::npos);
}

TEST(ParseSize, HonoursTheOptionsLimit) {
  EXPECT_EQ(*ParseSize("4G", 4ull << 30), 4ull << 30);
  auto r = ParseSize("18446744073709551615", uint64_t{1} << 32);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("limit"), std::string::npos) << r.status().message();
  EXPECT_FALSE(ParseSize("1.5K", 1000).ok());
  // 10000P fits in 64 bits but not in a signed SQLite integer (it was stored as 8192P).
  EXPECT_FALSE(ParseSize("10000P", std::numeric_limits<int64_t>::max()).ok());
}

// A size is whole bytes (or weights, for --chunk-size): a fraction is exact when its unit makes
// it whole, and refused otherwise (issue 10 campaign re-run: "--chunk-size 1.5" was accepted,
// rounded to 2).
TEST(ParseSize, FractionsMustBeWholeBytes) {
  EXPECT_EQ(*ParseSize("1.5K"), 1536u);
  EXPECT_EQ(*ParseSize("0.5K"), 512u);
  EXPECT_EQ(*ParseSize(".5K"), 512u);
  EXPECT_EQ(*ParseSize("1.50K"), 1536u);
  EXPECT_EQ(*ParseSize("1.0"), 1u);
  EXPECT_EQ(*ParseSize("3."), 3u);
  EXPECT_EQ(*ParseSize("0.25M"), 256u << 10);
  EXPECT_EQ(*ParseSize("0.0009765625K"), 1u);  // 2^-10 K
}

TEST(ParseSize, RefusesFractionsOfAByte) {
  for (const char* bad : {"1.5", "0.5", "2.25", "0.1G", "1.3K", "0.0001K", "1.00000000000000000001K",
                          "15.99999999999999999P"}) {
    auto r = ParseSize(bad);
    ASSERT_FALSE(r.ok()) << "'" << bad << "' parsed as " << *r;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    EXPECT_NE(r.status().message().find("not a whole number of bytes"), std::string::npos)
        << r.status().message();
  }
}

}  // namespace
}  // namespace hct
