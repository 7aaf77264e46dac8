// The one progress bar of both tools (hct-convert, hct-cache): a tqdm-like line on a terminal
// with tensors, bytes, rate, ETA. Tool-only code: the libraries report through callbacks.
#pragma once

#include <cstdio>
#include <string>

#include "hct/convert.h"

namespace hct::cli {

class ProgressBar {
 public:
  // Draws on `out` only when `enabled` and `out` is a terminal (the CLI passes !--quiet).
  // Not thread-safe: callers that report from several threads hold a lock.
  explicit ProgressBar(bool enabled, FILE* out = stderr);
  ~ProgressBar();
  // Redraws at most 10 times a second (always on the last tensor of a phase).
  void Update(const Progress& p);
  // Clears the line.
  void Finish();
  // The line for `p` in `width` columns (exposed for tests).
  static std::string Render(const Progress& p, int width);

 private:
  bool enabled_;
  FILE* out_;
  double last_ = -1;
  bool drawn_ = false;
};

}  // namespace hct::cli
