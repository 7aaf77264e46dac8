// A one-line progress bar for terminals (hct-convert): tensors, bytes, rate, ETA.
#pragma once

#include <cstdio>
#include <string>

#include "hct/convert.h"

namespace hct::detail {

class ProgressBar {
 public:
  // Draws on `out` only when `enabled` (the CLI passes isatty(stderr) && !--quiet).
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

}  // namespace hct::detail
