// The one progress bar of both tools (hct-convert, hct-cache): a tqdm-like line on a terminal
// with tensors, bytes, rate, ETA. Tool-only code: the libraries report through callbacks.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace hct::cli {

// What one line of the bar shows. Each tool fills it from its library's progress callback
// (hct::Progress of Convert/DecodeModel, hct::WarmProgress of Cache::Warm, verify counts), so
// the bar depends on no library.
struct ProgressState {
  std::string phase;  // "convert", "verify", "decode", "warm"
  uint64_t tensors_done = 0, tensors_total = 0;
  uint64_t bytes_done = 0, bytes_total = 0;
  std::string current;  // the item just finished (a tensor name, escaped by the caller)
  double elapsed_s = 0;
};

class ProgressBar {
 public:
  // Draws on `out` only when `enabled` and `out` is a terminal (the CLI passes !--quiet).
  // Not thread-safe: callers that report from several threads hold a lock.
  explicit ProgressBar(bool enabled, FILE* out = stderr);
  ~ProgressBar();
  // Redraws at most 10 times a second (always on the last tensor of a phase).
  void Update(const ProgressState& p);
  // Clears the line.
  void Finish();
  // The line for `p` in `width` columns (exposed for tests).
  static std::string Render(const ProgressState& p, int width);

 private:
  bool enabled_;
  FILE* out_;
  double last_ = -1;
  bool drawn_ = false;
};

}  // namespace hct::cli
