// What hct-convert and hct-cache share: one exit-code table (man pages, EXIT STATUS), the
// escaping of names in messages, and a main() guard. Tool-only code: not installed.
#pragma once

#include <exception>
#include <functional>
#include <new>
#include <string>
#include <string_view>

#include "hct/status.h"

namespace hct::cli {

// The exit codes of both tools (man/hct-convert.1 and man/hct-cache.1, EXIT STATUS).
enum Exit : int {
  kOk = 0,
  kProblems = 1,       // verification found problems; evict could not reach its target
  kUsage = 2,          // bad command line: unknown option, out-of-range value
  kNotFound = 3,       // an input, model or tensor does not exist
  kIO = 4,             // reading or writing failed
  kCorrupt = 5,        // the input is damaged, out of range or unsupported
  kBusy = 6,           // another process holds what is needed
  kNoSpace = 7,        // disk full or memory exhausted
  kExists = 8,         // the output exists (pass --force)
  kInternal = 9,       // a bug: please report it
};

int ExitFor(const Status& s);

// `s` with control characters (and backslash) written as \n, \t, \xNN, so that a crafted
// tensor or file name cannot move the cursor or hide text in a terminal or a log.
std::string Escape(std::string_view s);
// Escape() of each line of a multi-line text (a report table), keeping its line breaks.
std::string EscapeText(std::string_view text);

// Runs `body` and turns an exception that escaped it into a message and an exit code:
// std::bad_alloc -> kNoSpace, anything else -> kInternal. `tool` prefixes the message.
int GuardedMain(const char* tool, const std::function<int()>& body);

}  // namespace hct::cli
