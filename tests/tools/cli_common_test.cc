// tools/common/cli.h: the exit-code table, escaping and the main guard both tools use.
#include <gtest/gtest.h>

#include <new>
#include <stdexcept>
#include <vector>

#include "tools/common/cli.h"

namespace hct::cli {
namespace {

TEST(CliExit, OneCodePerStatusClass) {
  EXPECT_EQ(ExitFor(Status::OK()), 0);
  EXPECT_EQ(ExitFor(Status::InvalidArgument("x")), 2);  // usage, for both tools
  EXPECT_EQ(ExitFor(Status::NotFound("x")), 3);
  EXPECT_EQ(ExitFor(Status::IOError("x")), 4);
  EXPECT_EQ(ExitFor(Status::Corruption("x")), 5);
  EXPECT_EQ(ExitFor(Status::OutOfRange("x")), 5);
  EXPECT_EQ(ExitFor(Status::Unsupported("x")), 5);
  EXPECT_EQ(ExitFor(Status::Busy("x")), 6);
  EXPECT_EQ(ExitFor(Status::ResourceExhausted("x")), 7);
  EXPECT_EQ(ExitFor(Status::AlreadyExists("x")), 8);
  EXPECT_EQ(ExitFor(Status::Internal("x")), 9);
}

// Issue 10 item 6: std::bad_alloc escaped main (abort, exit 134, temporaries left behind).
TEST(CliGuard, ExceptionsBecomeDocumentedExitCodes) {
  EXPECT_EQ(GuardedMain("t", [] { return 0; }), 0);
  EXPECT_EQ(GuardedMain("t", [] { return 4; }), 4);
  EXPECT_EQ(GuardedMain("t", []() -> int { throw std::bad_alloc(); }), kNoSpace);
  EXPECT_EQ(GuardedMain("t", []() -> int { throw std::runtime_error("stoull"); }), kInternal);
  EXPECT_EQ(GuardedMain("t", []() -> int { throw 42; }), kInternal);
  // Unwinding runs destructors (where temporaries are removed), unlike std::terminate.
  bool unwound = false;
  struct Guard {
    bool* f;
    ~Guard() { *f = true; }
  };
  GuardedMain("t", [&]() -> int {
    Guard g{&unwound};
    std::vector<char> v(static_cast<size_t>(-1) / 2);  // throws std::bad_alloc or length_error
    return static_cast<int>(v.size());
  });
  EXPECT_TRUE(unwound);
}

// Issue 10 item 17: names with control characters reached the terminal as is.
// Report tables keep their layout while a crafted name inside them cannot inject escapes.
TEST(CliEscape, TextKeepsLineBreaks) {
  EXPECT_EQ(EscapeText("name  bytes\nw\x1b[2J  4\n"), "name  bytes\nw\\x1b[2J  4\n");
  EXPECT_EQ(EscapeText(""), "");
  EXPECT_EQ(EscapeText("a\rb"), "a\\rb");
}

TEST(CliEscape, ControlCharacters) {
  EXPECT_EQ(Escape("a\nb\tc\x1b[0m\\"), "a\\nb\\tc\\x1b[0m\\\\");
  EXPECT_EQ(Escape(std::string_view("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(Escape("\x7f"), "\\x7f");
  EXPECT_EQ(Escape("model.layers.0.weight"), "model.layers.0.weight");
  EXPECT_EQ(Escape("caf\xc3\xa9"), "caf\xc3\xa9");  // UTF-8 is printable
}

}  // namespace
}  // namespace hct::cli
