// Bit allocation across tensors (convert/convert_alloc.cc): the solver on priced rate/distortion
// curves, apart from the pricing so tests can drive it with curves they know the answer for.
#pragma once

#include <cstdint>
#include <vector>

namespace hct::detail {

// One tensor's priced operating points: (bits per weight, mean squared error per weight) at
// several quantization steps, and its weight in the model-level cost: the cost of the tensor at
// rate R is weight * mse(R) (weight = Fisher sum F_t for kSensitivity, elements for kMse), the
// rate it spends elements * R.
struct RateCurve {
  std::vector<double> bits;  // any order; at least one point
  std::vector<double> mse;   // > 0 (points with mse <= 0 are dropped)
  double weight = 0;         // >= 0
  uint64_t elements = 0;
};

// Bits per weight for every curve such that sum elements_t * bits_t <= total_bits (as close as a
// 1/256-bit grid allows) and sum weight_t * mse_t(bits_t) is smallest, mse_t interpolated
// linearly in log(mse) between priced points (no extrapolation: bits_t stays within the curve's
// priced range). Equal slope: every tensor inside its range ends where weight_t * dmse_t/dR is
// the same. When the budget is below (above) every curve's lowest (highest) rate, every tensor
// gets its lowest (highest) rate.
std::vector<double> SolveAllocation(const std::vector<RateCurve>& curves, double total_bits);

}  // namespace hct::detail
