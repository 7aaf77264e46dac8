// runtime/detail/sources.h: where a TensorSpec's bytes come from besides a plain file range
// (internal): an HCT tensor (compressed) and a cache row (leased, access recorded).
#pragma once

#include <cstdint>
#include <memory>

#include "hct/cache.h"
#include "hct/codec.h"
#include "hct/container.h"
#include "hct/model.h"

namespace hct::detail {

// One tensor of an opened HCT model. `model` keeps the parsed files (and so `file`, `entry`)
// alive as long as any spec refers to them.
struct HctRef {
  std::shared_ptr<const HctModel> model;
  const HctFile* file = nullptr;
  const TensorEntry* entry = nullptr;
  ChunkDecoder decoder;  // params parsed once; Decode* are const and thread-safe
  bool lossy = false;    // dctq-zstd: symbols go to the GPU kernel
  uint64_t max_decoded_chunk = 0;
};

struct CacheRef {
  std::shared_ptr<Cache> cache;
  int64_t tensor_id = 0;
};

}  // namespace hct::detail
