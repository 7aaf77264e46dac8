// Tiled orthonormal 2-D DCT-II (forward) / DCT-III (inverse) in matrix form (internal).
//
// C_N[k][n] = c(k) cos(pi (2n + 1) k / (2N)), c(0) = sqrt(1/N), c(k>0) = sqrt(2/N), computed in
// double and rounded to float. Forward tile: Y = C_h X C_w^T; inverse: X = C_h^T Y C_w. Tiles
// at the right/bottom edges use the matrices of their own (smaller) size.
#pragma once

#include <cstdint>

namespace hct::detail {

inline constexpr int kMaxTile = 64;

// Row-major N x N matrices, N in 1..kMaxTile; DctMatrixT is the transpose.
const float* DctMatrix(int n);
const float* DctMatrixT(int n);

// In place on a band of h (<= 64) rows x cols (row-major, row stride cols): every tile of the
// band (h x tile_c, the last one narrower) is transformed. scratch: h * cols floats.
// Forward: horizontal pass then vertical pass; inverse: vertical pass then horizontal pass.
void DctBand(float* band, int h, uint64_t cols, int tile_c, bool inverse, float* scratch);

// The whole rows x cols array, in bands of tile_r rows.
void DctTiled(float* x, uint64_t rows, uint64_t cols, int tile_r, int tile_c, bool inverse);

}  // namespace hct::detail
