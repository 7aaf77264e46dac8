// BitAllocation: the equal-slope solver on curves with a known optimum, and Convert with
// --allocate mse / sensitivity on a generated model (budget met, files readable and verified).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "convert/detail/allocate.h"
#include "convert/detail/convert_internal.h"
#include "hct/convert.h"

namespace hct {
namespace {
namespace fs = std::filesystem;
using detail::RateCurve;
using detail::SolveAllocation;

// mse = c 2^(-2R) priced at R = 1..8 (log-linear: the interpolation is exact).
RateCurve Exp2Curve(double c, double weight, uint64_t n) {
  RateCurve r;
  for (int b = 1; b <= 8; ++b) r.bits.push_back(b), r.mse.push_back(c * std::exp2(-2.0 * b));
  r.weight = weight;
  r.elements = n;
  return r;
}

double Spent(const std::vector<RateCurve>& c, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < c.size(); ++i) s += c[i].elements * b[i];
  return s;
}

TEST(SolveAllocation, EqualSlopeMatchesTheClosedForm) {
  // Minimising sum w_t c_t 2^(-2 R_t) at sum n R_t = n T: w_t c_t 2^(-2 R_t) equal, so
  // R_t = T + 0.5 log2(w_t c_t / geometric mean of w c). Weights per element differ 16x.
  const uint64_t n = 1000;
  std::vector<RateCurve> c = {Exp2Curve(1, n, n), Exp2Curve(1, 16.0 * n, n),
                              Exp2Curve(4, n, n), Exp2Curve(1, n / 4.0, n)};
  const double T = 4;
  const std::vector<double> b = SolveAllocation(c, T * 4 * n);
  ASSERT_EQ(b.size(), 4u);
  const double lg[] = {0, 4, 2, -2};  // log2(w c) per element
  const double mean = (0 + 4 + 2 - 2) / 4.0;
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(b[i], T + 0.5 * (lg[i] - mean), 1.0 / 64) << i;
  EXPECT_LE(Spent(c, b), T * 4 * n + 1e-6);
  EXPECT_GE(Spent(c, b), T * 4 * n - 4 * n / 128.0);
}

TEST(SolveAllocation, IdenticalCurvesShareTheBudgetEvenly) {
  std::vector<RateCurve> c(5, Exp2Curve(2, 300, 300));
  const std::vector<double> b = SolveAllocation(c, 3.3 * 5 * 300);
  for (double v : b) EXPECT_NEAR(v, 3.3, 1.0 / 128);
  EXPECT_LE(Spent(c, b), 3.3 * 5 * 300 + 1e-6);
}

TEST(SolveAllocation, BoundsAndZeroWeight) {
  std::vector<RateCurve> c = {Exp2Curve(1, 100, 100), Exp2Curve(1, 0, 100)};
  std::vector<double> b = SolveAllocation(c, 2 * 5.0 * 100);
  EXPECT_NEAR(b[1], 1.0, 1e-9);  // no weight: the lowest priced rate
  EXPECT_NEAR(b[0], 8.0, 1e-9);  // the rest, capped at the highest priced rate
  b = SolveAllocation(c, 10);  // below every lowest rate
  EXPECT_NEAR(b[0], 1.0, 1e-9);
  EXPECT_NEAR(b[1], 1.0, 1e-9);
}

TEST(SolveAllocation, AnErrorFloorStopsTheBits) {
  // Tensor 1's error stops falling above 3 bits (a dtype rounding floor): bits beyond buy
  // nothing there and go to tensor 0.
  RateCurve floor = Exp2Curve(1, 100, 100);
  for (size_t i = 0; i < floor.bits.size(); ++i)
    floor.mse[i] = std::max(floor.mse[i], std::exp2(-6.0));
  std::vector<RateCurve> c = {Exp2Curve(1, 100, 100), floor};
  const std::vector<double> b = SolveAllocation(c, 2 * 6.0 * 100);
  EXPECT_LE(b[1], 3.0 + 1.0 / 64);
  EXPECT_GE(b[0], 9.0 - 1.0 / 64 - 1.0);  // capped at 8: everything it can take
}

class AllocateConvertTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "hct_alloc_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    DemoModelOptions o;
    o.vocab = 256, o.hidden = 64, o.layers = 2, o.intermediate = 176, o.heads = 4;
    o.kv_heads = 2, o.shards = 2;
    ASSERT_TRUE(WriteDemoModel((root_ / "m").string(), o).ok());
  }
  void TearDown() override { fs::remove_all(root_); }

  Result<ConvertReport> Run(const std::string& out, BitAllocation a,
                            std::map<std::string, double> sens = {}) {
    ConvertOptions o;
    o.lossy.bits = 3.5;
    o.allocation = a;
    o.sensitivity = std::move(sens);
    o.threads = 2;
    o.verify = true;  // the files decode as any other (no format change)
    return Convert((root_ / "m").string(), (root_ / out).string(), o);
  }
  static double Lossy(const ConvertReport& r, const std::string& name) {
    for (const TensorReport& t : r.tensors)
      if (t.name == name) return t.metrics.bits_per_weight;
    return -1;
  }
  fs::path root_;
};

TEST_F(AllocateConvertTest, SensitivityMovesBitsAndKeepsTheBudget) {
  Result<ConvertReport> uni = Run("uni", BitAllocation::kUniform);
  ASSERT_TRUE(uni.ok()) << uni.status().ToString();
  std::map<std::string, double> sens;
  std::string hot;
  for (const TensorReport& t : uni->tensors) {
    if (!IsDctqCodec(t.codec)) continue;
    EXPECT_EQ(t.target_bits, 0) << t.name;
    // Not the embedding: the demo's is smooth along the vocabulary, cheap under the DCT and at
    // its BF16 rounding floor within 3 bits (more bits buy it nothing, the solver rightly says).
    if (hot.empty() && t.name.find("mlp") != std::string::npos) hot = t.name;
  }
  for (const TensorReport& t : uni->tensors)
    if (IsDctqCodec(t.codec))
      sens[t.name] = static_cast<double>(t.metrics.elements) * (t.name == hot ? 256.0 : 1.0);
  ASSERT_FALSE(hot.empty());
  Result<ConvertReport> s = Run("sens", BitAllocation::kSensitivity, sens);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_TRUE(s->verified);
  // 256x the weight per element: about 0.5 log2(256) = 4 bits more than its peers.
  EXPECT_GT(Lossy(*s, hot), Lossy(*uni, hot) + 1.5) << hot;
  EXPECT_NEAR(s->totals.lossy_bits_per_weight, 3.5, 3.5 * 0.03);
  for (const TensorReport& t : s->tensors)
    if (IsDctqCodec(t.codec)) EXPECT_GT(t.target_bits, 0) << t.name;

  Result<ConvertReport> m = Run("mse", BitAllocation::kMse);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_NEAR(m->totals.lossy_bits_per_weight, 3.5, 3.5 * 0.03);
  // Equal slope of the plain squared error: no larger error than the same bits everywhere.
  EXPECT_LE(m->totals.lossy_rel_rms_error, uni->totals.lossy_rel_rms_error * 1.01);
}

TEST_F(AllocateConvertTest, RefusesMissingEntriesAndOtherModes) {
  Result<ConvertReport> r = Run("x", BitAllocation::kSensitivity, {{"no.such.tensor", 1.0}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("no entry for tensor"), std::string::npos)
      << r.status().ToString();
  EXPECT_FALSE(fs::exists(root_ / "x"));
  ConvertOptions o;
  o.lossy.mode = RateMode::kMaxError;
  o.allocation = BitAllocation::kMse;
  r = Convert((root_ / "m").string(), (root_ / "y").string(), o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  o = ConvertOptions{};
  o.allocation = BitAllocation::kSensitivity;  // no map
  EXPECT_EQ(Convert((root_ / "m").string(), (root_ / "y").string(), o).status().code(),
            Code::kInvalidArgument);
}

TEST_F(AllocateConvertTest, ReadSensitivityFile) {
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(root_ / name) << text;
    return (root_ / name).string();
  };
  auto ok = ReadSensitivityFile(write(
      "a.json", R"({"format": "hct-sensitivity", "version": 1,
                    "tensors": {"w": {"fisher_sum": 2.5, "elements": 4}}})"));
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->at("w"), 2.5);
  EXPECT_EQ(ReadSensitivityFile((root_ / "absent.json").string()).status().code(),
            Code::kNotFound);
  for (const char* bad :
       {"{", "[]", R"({"format": "other", "version": 1, "tensors": {"w": {"fisher_sum": 1}}})",
        R"({"format": "hct-sensitivity", "version": 2, "tensors": {"w": {"fisher_sum": 1}}})",
        R"({"format": "hct-sensitivity", "version": 1, "tensors": {}})",
        R"({"format": "hct-sensitivity", "version": 1, "tensors": {"w": {"fisher_sum": -1}}})",
        R"({"format": "hct-sensitivity", "version": 1, "tensors": {"w": {"x": 1}}})"}) {
    auto r = ReadSensitivityFile(write("b.json", bad));
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << bad;
    EXPECT_NE(r.status().message().find("b.json"), std::string::npos) << r.status().ToString();
  }
}

}  // namespace
}  // namespace hct
