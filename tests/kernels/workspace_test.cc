// The kernels' workspace queries (include/hct/kernels.h), which the runtime sizes its staging
// and device scratch from. Expected layouts are worked out by hand below.
#include <gtest/gtest.h>

#include <cstdint>

#include "hct/kernels.h"

namespace hct {
namespace {

TEST(KernelWorkspace, HuffBatchLayoutByHand) {
  static_assert(sizeof(HuffChunk) == 32);
  const uint64_t payload[3] = {5000, 4096, 1};
  const uint64_t symbols[3] = {1000, 2000, 7};
  // 3 descriptors = 96 bytes -> payloads from 4096; 5000 -> 8192, 4096 -> 4096, 1 -> 4096.
  HuffBatchWorkspace w = QueryHuffDecodeBatchWorkspace(payload, symbols, 3, 4096);
  EXPECT_EQ(w.payload_begin, 4096u);
  EXPECT_EQ(w.symbols_begin, 4096u + 8192 + 4096 + 4096);
  EXPECT_EQ(w.bytes, w.symbols_begin + 3007);
  // Alignment 4 (the kernel's own need): 96, then 5000, 4096, 4 bytes of payload.
  w = QueryHuffDecodeBatchWorkspace(payload, symbols, 3, 4);
  EXPECT_EQ(w.payload_begin, 96u);
  EXPECT_EQ(w.symbols_begin, 96u + 5000 + 4096 + 4);
  EXPECT_EQ(w.bytes, 96u + 5000 + 4096 + 4 + 3007);
  // An alignment below 4 is raised to 4; no chunks is an empty workspace.
  EXPECT_EQ(QueryHuffDecodeBatchWorkspace(payload, symbols, 3, 1).bytes, w.bytes);
  EXPECT_EQ(QueryHuffDecodeBatchWorkspace(nullptr, nullptr, 0, 4096).bytes, 0u);
}

TEST(KernelWorkspace, DctqSymbolBytesOfABand) {
  DctqDecodeArgs a;
  a.rows = 64;
  a.cols = 48;
  a.row_begin = 16;
  a.row_end = 40;
  a.symbol_type = DType::kI8;
  EXPECT_EQ(QueryDctqDecodeSymbolBytes(a), 24u * 48);
  a.symbol_type = DType::kI16;
  EXPECT_EQ(QueryDctqDecodeSymbolBytes(a), 24u * 48 * 2);
  a.row_end = a.row_begin;
  EXPECT_EQ(QueryDctqDecodeSymbolBytes(a), 0u);
}

}  // namespace
}  // namespace hct
