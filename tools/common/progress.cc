// ProgressBar (tools/common/progress.h).
#include "tools/common/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace hct::cli {
namespace {

std::string Clock(double s) {
  if (!std::isfinite(s) || s < 0) return "--:--";
  const long t = std::lround(s);
  char b[32];
  if (t >= 3600)
    std::snprintf(b, sizeof b, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else
    std::snprintf(b, sizeof b, "%ld:%02ld", t / 60, t % 60);
  return b;
}

int TerminalWidth(FILE* f) {
  winsize w{};
  if (::ioctl(::fileno(f), TIOCGWINSZ, &w) == 0 && w.ws_col > 20) return w.ws_col;
  return 80;
}

}  // namespace

ProgressBar::ProgressBar(bool enabled, FILE* out)
    : enabled_(enabled && ::isatty(::fileno(out))), out_(out) {}
ProgressBar::~ProgressBar() { Finish(); }

std::string ProgressBar::Render(const ProgressState& p, int width) {
  const double frac = p.bytes_total
                          ? std::min(1.0, double(p.bytes_done) / p.bytes_total)
                          : (p.tensors_total ? double(p.tensors_done) / p.tensors_total : 1.0);
  const double rate = p.elapsed_s > 0 ? p.bytes_done / 1e6 / p.elapsed_s : 0;
  const double eta = rate > 0 ? (p.bytes_total - p.bytes_done) / 1e6 / rate : NAN;
  char stats[160];
  std::snprintf(stats, sizeof stats, " %3.0f%% %llu/%llu tensors %.1f/%.1f MB %.1f MB/s ETA %s",
                100 * frac, (unsigned long long)p.tensors_done, (unsigned long long)p.tensors_total,
                p.bytes_done / 1e6, p.bytes_total / 1e6, rate, Clock(eta).c_str());
  std::string line = p.phase + " [";
  const int bar = std::max(10, std::min(30, width - static_cast<int>(line.size()) -
                                                static_cast<int>(std::strlen(stats)) - 2));
  const int full = static_cast<int>(frac * bar);
  line += std::string(full, '#') + std::string(bar - full, '.') + "]" + stats;
  if (static_cast<int>(line.size()) + 2 < width && !p.current.empty()) {
    std::string cur = p.current;
    const size_t room = width - line.size() - 2;
    if (cur.size() > room) cur = cur.substr(cur.size() - room);
    line += "  " + cur;
  }
  if (static_cast<int>(line.size()) > width - 1) line.resize(std::max(0, width - 1));
  return line;
}

void ProgressBar::Update(const ProgressState& p) {
  if (!enabled_) return;
  const bool last = p.tensors_done == p.tensors_total;
  if (!last && last_ >= 0 && p.elapsed_s - last_ < 0.1) return;
  last_ = p.elapsed_s;
  const std::string line = Render(p, TerminalWidth(out_));
  std::fprintf(out_, "\r\033[K%s", line.c_str());
  std::fflush(out_);
  drawn_ = true;
}

void ProgressBar::Finish() {
  if (!enabled_ || !drawn_) return;
  std::fprintf(out_, "\r\033[K");
  std::fflush(out_);
  drawn_ = false;
  last_ = -1;
}

}  // namespace hct::cli
