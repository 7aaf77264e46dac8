// Plain safetensors sources: cached as-is (decoding is a copy).
#include <algorithm>
#include <filesystem>

#include "cache/detail/source.h"
#include "hct/safetensors.h"

namespace hct::detail {
namespace {

constexpr size_t kPiece = 16u << 20;

class SafetensorsSource final : public TensorSource {
 public:
  static Result<std::unique_ptr<TensorSource>> Open(const std::string& path) {
    HCT_ASSIGN_OR_RETURN(ModelFolder folder, ModelFolder::Open(path, SafetensorsAccess::kPread));
    auto src = std::unique_ptr<SafetensorsSource>(new SafetensorsSource(std::move(folder)));
    src->path_ = path;
    const auto& shards = src->folder_.shards();
    for (size_t i = 0; i < shards.size(); ++i) {
      SourceFile f;
      f.path = std::filesystem::absolute(shards[i].path()).string();
      f.stem = std::filesystem::path(f.path).stem().string();
      HCT_RETURN_IF_ERROR(StatFile(f.path, &f.size, &f.mtime_ns));
      src->files_.push_back(std::move(f));
    }
    const auto& ts = src->folder_.tensors();
    for (size_t i = 0; i < ts.size(); ++i) {
      SourceTensor t;
      t.name = ts[i].info.name;
      t.dtype = ts[i].info.dtype;
      t.shape = ts[i].info.shape;
      t.nbytes = ts[i].info.num_bytes();
      t.source_length = t.nbytes;
      t.file = ts[i].shard;
      t.handle = i;
      src->tensors_.push_back(std::move(t));
    }
    MakeStemsUnique(src->files_);
    return std::unique_ptr<TensorSource>(std::move(src));
  }

  const char* kind() const override { return "safetensors"; }

  Result<std::optional<uint64_t>> Decode(const SourceTensor& t, std::span<std::byte> out,
                                         const ParallelFor& pf) const override {
    const ModelTensor& mt = folder_.tensors()[t.handle];
    const SafetensorsFile& f = folder_.file(mt);
    if (out.size() != mt.info.num_bytes())
      return Status::Internal(f.path() + ": tensor '" + t.name + "': buffer size mismatch");
    // Large tensors in pieces, so several preads are in flight.
    const size_t pieces = (out.size() + kPiece - 1) / kPiece;
    if (!pf || pieces <= 1) {
      HCT_RETURN_IF_ERROR(f.Read(mt.info, out));
      return std::optional<uint64_t>();
    }
    std::vector<Status> st(pieces);
    pf(pieces, [&](size_t i) {
      const size_t off = i * kPiece;
      st[i] = f.ReadAt(mt.info, off, out.subspan(off, std::min(kPiece, out.size() - off)));
    });
    for (Status& s : st) HCT_RETURN_IF_ERROR(s);
    return std::optional<uint64_t>();
  }

 private:
  explicit SafetensorsSource(ModelFolder f) : folder_(std::move(f)) {}
  ModelFolder folder_;
};

}  // namespace

Result<std::unique_ptr<TensorSource>> OpenSafetensorsSource(const std::string& path) {
  return SafetensorsSource::Open(path);
}

}  // namespace hct::detail
