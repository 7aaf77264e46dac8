// The progress bar both tools share (tools/common/progress.h); moved from convert_test.cc.
#include <gtest/gtest.h>

#include "tools/common/progress.h"

namespace hct::cli {
namespace {

TEST(ProgressBarTest, RendersCountsBytesRateAndEta) {
  ProgressState p;
  p.phase = "convert";
  p.tensors_done = 3, p.tensors_total = 10;
  p.bytes_done = 25'000'000, p.bytes_total = 100'000'000;
  p.elapsed_s = 5;
  p.current = "model.layers.0.mlp.up_proj.weight";
  const std::string line = ProgressBar::Render(p, 200);
  EXPECT_NE(line.find(" 25%"), std::string::npos) << line;
  EXPECT_NE(line.find("3/10 tensors"), std::string::npos) << line;
  EXPECT_NE(line.find("5.0 MB/s"), std::string::npos) << line;
  EXPECT_NE(line.find("ETA 0:15"), std::string::npos) << line;
  EXPECT_NE(line.find("up_proj"), std::string::npos) << line;
  EXPECT_LE(ProgressBar::Render(p, 60).size(), 59u);
}

}  // namespace
}  // namespace hct::cli
