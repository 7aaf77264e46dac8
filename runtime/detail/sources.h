// runtime/detail/sources.h: where a TensorSpec's bytes come from (internal): the definition of
// the opaque hct::TensorSource -- a plain byte range of a file, a cache row (its entry file,
// leased while loading, access recorded), an HCT tensor (compressed), or a cache row with an
// HCT source to fall back on. What is actually read for a load is decided by the
// SourcePlanner (runtime/detail/source_planner.h), nowhere else.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

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

}  // namespace hct::detail

namespace hct {

class TensorSource {
 public:
  std::optional<FileRange> range;  // the bytes as they are: safetensors, a cache entry
  std::shared_ptr<Cache> cache;    // set: `range` is this cache row's entry file
  int64_t tensor_id = 0;           // the cache row
  std::shared_ptr<const detail::HctRef> hct;  // the compressed source
};

}  // namespace hct
