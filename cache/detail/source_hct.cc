// HCT sources: tensors decoded chunk by chunk through the CPU reference decoders (codec.h).
#include <algorithm>
#include <filesystem>

#include "cache/detail/source.h"
#include "hct/codec.h"
#include "hct/container.h"

namespace hct::detail {
namespace {

namespace fs = std::filesystem;

class HctSource final : public TensorSource {
 public:
  static Result<std::unique_ptr<TensorSource>> Open(const std::string& path) {
    auto src = std::unique_ptr<HctSource>(new HctSource());
    src->path_ = path;
    std::vector<std::string> paths;
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      for (const auto& e : fs::directory_iterator(path, ec))
        if (e.is_regular_file() && e.path().extension() == ".hct") paths.push_back(e.path());
      std::sort(paths.begin(), paths.end());
    } else {
      paths.push_back(path);
    }
    if (paths.empty()) return Status::NotFound(path + ": no .hct files");
    for (const std::string& p : paths) {
      HCT_ASSIGN_OR_RETURN(HctFile f, HctFile::Open(p));
      SourceFile sf;
      sf.path = fs::absolute(p).string();
      sf.stem = fs::path(sf.path).stem().string();
      HCT_RETURN_IF_ERROR(StatFile(sf.path, &sf.size, &sf.mtime_ns));
      size_t fi = src->files_.size();
      src->files_.push_back(std::move(sf));
      const auto& ts = f.tensors();
      for (size_t i = 0; i < ts.size(); ++i) {
        SourceTensor t;
        t.name = ts[i].name;
        t.dtype = ts[i].dtype;
        t.shape = ts[i].shape;
        t.nbytes = ts[i].decoded_size;
        if (auto n = DTypeBytes(ts[i].dtype, ts[i].num_elements)) t.nbytes = *n;
        t.source_length = 0;
        for (const ChunkEntry& c : ts[i].chunks) t.source_length += c.stored_size;
        t.file = fi;
        t.handle = (fi << 32) | i;
        src->tensors_.push_back(std::move(t));
      }
      src->hct_.push_back(std::make_unique<HctFile>(std::move(f)));
    }
    return std::unique_ptr<TensorSource>(std::move(src));
  }

  const char* kind() const override { return "hct"; }

  Result<std::optional<uint64_t>> Decode(const SourceTensor& t,
                                         std::span<std::byte> out) const override {
    const HctFile& f = *hct_[t.handle >> 32];
    const TensorEntry& e = f.tensors()[t.handle & 0xffffffffu];
    if (e.codec == kRawCodec) {
      HCT_RETURN_IF_ERROR(f.ReadRawTensor(e, out));
    } else {
      auto ctx = [&](Status st) { return st.WithContext("tensor '" + e.name + "'").WithContext(f.path()); };
      auto dec = ChunkDecoder::Create(e.codec, e.codec_params, e.dtype);
      if (!dec.ok()) return ctx(dec.status());
      std::vector<std::byte> stored;
      for (size_t i = 0; i < e.chunks.size(); ++i) {
        const ChunkEntry& c = e.chunks[i];
        auto begin = DTypeBytes(e.dtype, c.elem_offset);
        auto len = DTypeBytes(e.dtype, c.elem_count);
        if (!begin || !len || *begin > out.size() || *len > out.size() - *begin)
          return ctx(Status::Corruption("chunk " + std::to_string(i) + " lies outside the tensor"));
        stored.resize(c.stored_size);
        HCT_RETURN_IF_ERROR(f.ReadChunk(e, i, stored));  // checks the stored XXH3
        Status st = dec->Decode(stored, ChunkMeta(c.decoded_size, c.decoded_xxh3, c.elem_offset,
                                                  c.elem_count),
                                out.subspan(*begin, *len));
        if (!st.ok()) return ctx(st.WithContext("chunk " + std::to_string(i)));
      }
    }
    // The container's tensor checksum (over the chunks' decoded checksums) identifies the source.
    return std::optional<uint64_t>(e.decoded_xxh3);
  }

 private:
  std::vector<std::unique_ptr<HctFile>> hct_;
};

}  // namespace

Result<std::unique_ptr<TensorSource>> OpenHctSource(const std::string& path) {
  return HctSource::Open(path);
}

}  // namespace hct::detail
