// LayerOfTensor (hct/safetensors.h): the one layer-of-name rule. The cache and the runtime had
// one each and they disagreed on nested blocks (issue 9): these cases pin the shared one.
#include <gtest/gtest.h>

#include "hct/safetensors.h"

namespace hct {
namespace {

TEST(LayerOfTensor, CommonModelFamilies) {
  EXPECT_EQ(LayerOfTensor("model.layers.12.mlp.up_proj.weight"), 12);
  EXPECT_EQ(LayerOfTensor("transformer.h.3.attn.c_attn.weight"), 3);
  EXPECT_EQ(LayerOfTensor("blocks.0.norm1.weight"), 0);
  EXPECT_EQ(LayerOfTensor("encoder.layer.7.output.dense.bias"), 7);
  EXPECT_EQ(LayerOfTensor("model.embed_tokens.weight"), std::nullopt);
  EXPECT_EQ(LayerOfTensor("model.layers.x.weight"), std::nullopt);
  EXPECT_EQ(LayerOfTensor("model.layers.12abc.weight"), std::nullopt);
  EXPECT_EQ(LayerOfTensor("lm_head.weight"), std::nullopt);
  // "h." must be a whole component: "path.1" is not layer 1.
  EXPECT_EQ(LayerOfTensor("path.1.weight"), std::nullopt);
}

// Nested blocks: the outermost numbered block is the layer (the unit a streamer moves). The
// runtime's old rule searched "layers." before "h." and said 5 here; the cache's said 3.
TEST(LayerOfTensor, OutermostNumberedComponentWins) {
  EXPECT_EQ(LayerOfTensor("transformer.h.3.layers.5.w"), 3);
  EXPECT_EQ(LayerOfTensor("model.layers.2.blocks.7.w"), 2);
  // A key must be a whole component: "xh.4" is not "h.4".
  EXPECT_EQ(LayerOfTensor("model.xh.4.w"), std::nullopt);
  EXPECT_EQ(LayerOfTensor("model.layers.1234567890.w"), std::nullopt);  // over 9 digits
}

}  // namespace
}  // namespace hct
