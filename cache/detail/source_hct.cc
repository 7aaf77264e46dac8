// HCT sources: an HCT model folder written by hct-convert (or a single .hct file), opened with
// hct::HctModel and decoded with hct::DecodeTensor (the CPU reference decoders, chunks through the
// warm's ParallelFor). Stored and decoded checksums are verified while decoding.
#include <filesystem>

#include "cache/detail/source.h"
#include "hct/codec.h"
#include "hct/model.h"

namespace hct::detail {
namespace {

namespace fs = std::filesystem;

class HctSource final : public TensorSource {
 public:
  static Result<std::unique_ptr<TensorSource>> Open(const std::string& path) {
    HCT_ASSIGN_OR_RETURN(HctModel model, HctModel::Open(path));
    auto src = std::unique_ptr<HctSource>(new HctSource(std::move(model)));
    src->path_ = path;
    const HctModel& m = src->model_;
    for (size_t i = 0; i < m.files().size(); ++i) {
      SourceFile sf;
      sf.path = fs::absolute(m.files()[i].path()).lexically_normal().string();
      sf.stem = fs::path(sf.path).stem().string();
      HCT_RETURN_IF_ERROR(StatFile(sf.path, &sf.size, &sf.mtime_ns));
      src->files_.push_back(std::move(sf));
    }
    for (size_t i = 0; i < m.tensors().size(); ++i) {
      const HctModel::Ref& r = m.tensors()[i];
      const TensorEntry& e = *r.entry;
      SourceTensor t;
      t.name = e.name;
      t.dtype = e.dtype;
      t.shape = e.shape;
      auto n = DTypeBytes(e.dtype, e.num_elements);
      if (!n)
        return Status::Corruption(m.files()[r.file].path() + ": tensor '" + e.name +
                                  "': " + std::to_string(e.num_elements) + " x " +
                                  std::string(DTypeName(e.dtype)) + " is not whole bytes");
      t.nbytes = *n;
      t.source_length = 0;
      for (const ChunkEntry& c : e.chunks) t.source_length += c.stored_size;
      t.file = r.file;
      t.handle = i;
      src->tensors_.push_back(std::move(t));
    }
    MakeStemsUnique(src->files_);
    return std::unique_ptr<TensorSource>(std::move(src));
  }

  const char* kind() const override { return "hct"; }

  Result<std::optional<uint64_t>> Decode(const SourceTensor& t, std::span<std::byte> out,
                                         const ParallelFor& pf) const override {
    const HctModel::Ref& r = model_.tensors()[t.handle];
    HCT_RETURN_IF_ERROR(DecodeTensor(model_.files()[r.file], *r.entry, out, pf));
    // The container's tensor checksum (over the chunks' decoded checksums) identifies the source.
    return std::optional<uint64_t>(r.entry->decoded_xxh3);
  }

 private:
  explicit HctSource(HctModel m) : model_(std::move(m)) {}
  HctModel model_;
};

}  // namespace

Result<std::unique_ptr<TensorSource>> OpenHctSource(const std::string& path) {
  return HctSource::Open(path);
}

}  // namespace hct::detail
