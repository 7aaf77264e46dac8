// hct::Catalog: the TensorSpecs of a safetensors model, a warm cache or an HCT model (with a
// cache to prefer), by name and by layer.
#include <algorithm>
#include <filesystem>
#include <map>

#include "hct/cache.h"
#include "hct/model.h"
#include "hct/runtime.h"
#include "hct/safetensors.h"
#include "runtime/detail/sources.h"

namespace hct {

namespace {
// The layer of a tensor name, -1 when it has none (the project's one rule: hct/safetensors.h).
int LayerOf(std::string_view name) { return LayerOfTensor(name).value_or(-1); }
}  // namespace

Result<Catalog> Catalog::FromSafetensors(const std::string& path) {
  HCT_ASSIGN_OR_RETURN(ModelFolder m, ModelFolder::Open(path, SafetensorsAccess::kPread));
  std::vector<TensorSpec> specs;
  for (const SafetensorsFile& f : m.shards()) {
    for (size_t i : f.data_order()) {
      const TensorInfo& t = f.tensors()[i];
      TensorSpec s;
      s.name = t.name;
      s.length = t.num_bytes();
      s.dtype = t.dtype;
      for (uint64_t d : t.shape) s.shape.push_back(int64_t(d));
      s.layer = LayerOf(t.name);
      FileRange r;
      r.path = f.path();
      r.offset = f.file_offset(t);
      s.source = FileSource(std::move(r));
      specs.push_back(std::move(s));
    }
  }
  return FromSpecs(std::move(specs));
}

Catalog Catalog::FromSpecs(std::vector<TensorSpec> specs) {
  Catalog c;
  c.specs_ = std::move(specs);
  auto m = std::make_shared<std::unordered_map<std::string, size_t>>();
  for (size_t i = 0; i < c.specs_.size(); ++i) m->emplace(c.specs_[i].name, i);
  c.by_name_ = std::move(m);
  return c;
}

const TensorSpec* Catalog::Find(std::string_view name) const {
  if (!by_name_) return nullptr;
  auto it = by_name_->find(std::string(name));
  return it == by_name_->end() ? nullptr : &specs_[it->second];
}

namespace {
std::string AbsNormal(const std::string& p) {
  std::error_code ec;
  std::string a = std::filesystem::absolute(p, ec).lexically_normal().string();
  while (a.size() > 1 && a.back() == '/') a.pop_back();
  return a;
}

// The cache for reading: writable without cleanup when possible (access counts reach the
// index), else read-only (no access stats). Never creates a cache.
Result<std::shared_ptr<Cache>> OpenCacheForReading(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::exists(std::filesystem::path(dir) / "index.db", ec))
    return Status::NotFound("no cache index at " + dir + "/index.db");
  OpenOptions o;
  o.cleanup = false;
  auto c = Cache::Open(dir, o);
  if (!c.ok() && (c.status().code() == Code::kIOError || c.status().code() == Code::kInternal)) {
    o.read_only = true;
    c = Cache::Open(dir, o);
  }
  if (!c.ok()) return c.status().WithContext(dir);
  return std::shared_ptr<Cache>(std::move(*c));
}

// The source of a cache row: its entry file's range, leased and recorded when loaded.
std::shared_ptr<TensorSource> CacheSource(const TensorLocation& t,
                                          const std::shared_ptr<Cache>& cache) {
  auto src = std::make_shared<TensorSource>();
  FileRange r;
  r.path = t.path;
  r.offset = t.offset;
  r.xxh3 = t.xxh3;
  if (!t.block_xxh3.empty()) {
    r.block_xxh3 = t.block_xxh3;
    r.block_bytes = kBlockHashBytes;
  }
  src->range = std::move(r);
  src->cache = cache;
  src->tensor_id = t.tensor_id;
  return src;
}

TensorSpec SpecOfLocation(const TensorLocation& t, const std::shared_ptr<Cache>& cache) {
  TensorSpec s;
  s.name = t.name;
  s.length = t.length;
  s.dtype = t.dtype;
  for (uint64_t d : t.shape) s.shape.push_back(int64_t(d));
  s.layer = t.layer.value_or(-1);
  s.source = CacheSource(t, cache);
  return s;
}

// The HCT source of one tensor of `model`.
Result<std::shared_ptr<const detail::HctRef>> HctSource(
    const std::shared_ptr<const HctModel>& model, const HctFile& f, const TensorEntry& e) {
  auto ref = std::make_shared<detail::HctRef>();
  ref->model = model;
  ref->file = &f;
  ref->entry = &e;
  auto dec = ChunkDecoder::Create(e.codec, e.codec_params, e.dtype);
  if (!dec.ok()) return dec.status().WithContext("tensor '" + e.name + "'").WithContext(f.path());
  ref->decoder = std::move(*dec);
  ref->lossy = IsDctqCodec(e.codec);
  for (const ChunkEntry& c : e.chunks)
    ref->max_decoded_chunk = std::max(ref->max_decoded_chunk, c.decoded_size);
  return std::shared_ptr<const detail::HctRef>(std::move(ref));
}

// The tensors of `specs` (an HCT model's) that the cache at `cache_dir` holds warm for the
// source `path` get the cache entry as their range, keeping the HCT source to fall back on.
Status AddCacheRows(const std::string& path, const std::string& cache_dir,
                    std::vector<TensorSpec>& specs) {
  HCT_ASSIGN_OR_RETURN(std::shared_ptr<Cache> cache, OpenCacheForReading(cache_dir));
  HCT_ASSIGN_OR_RETURN(auto models, cache->ListModels());
  const std::string src = AbsNormal(path);
  for (const ModelInfo& mi : models) {
    if (mi.source != src) continue;
    HCT_ASSIGN_OR_RETURN(auto locs, cache->ListTensors(mi.name));
    std::map<std::string, const TensorLocation*> by;
    for (const auto& t : locs) by[t.name] = &t;
    for (TensorSpec& s : specs) {
      auto it = by.find(s.name);
      if (it == by.end()) continue;
      const TensorLocation& t = *it->second;
      if (t.length != s.length || t.dtype != s.dtype) continue;  // not this tensor: ignore
      auto both = CacheSource(t, cache);
      both->hct = s.source->hct;
      s.source = std::move(both);
    }
  }
  return Status::OK();
}
}  // namespace

Result<Catalog> Catalog::FromCache(const std::string& cache_dir, const std::string& model) {
  HCT_ASSIGN_OR_RETURN(std::shared_ptr<Cache> cache, OpenCacheForReading(cache_dir));
  return FromCache(std::move(cache), model);
}

Result<Catalog> Catalog::FromCache(std::shared_ptr<Cache> cache, const std::string& model_in) {
  if (!cache) return Status::InvalidArgument("Catalog::FromCache: null cache");
  std::string model = model_in;
  if (model.empty()) {
    HCT_ASSIGN_OR_RETURN(auto models, cache->ListModels());
    if (models.size() != 1)
      return Status::InvalidArgument(cache->dir() + ": the cache holds " +
                                     std::to_string(models.size()) +
                                     " models; name the one to open");
    model = models[0].name;
  }
  HCT_ASSIGN_OR_RETURN(auto models, cache->ListModels());
  bool known = false;
  for (const auto& m : models) known = known || m.name == model;
  if (!known) return Status::NotFound(cache->dir() + ": no model '" + model + "' in the cache");
  HCT_ASSIGN_OR_RETURN(auto locs, cache->ListTensors(model));
  std::vector<TensorSpec> specs;
  specs.reserve(locs.size());
  for (const TensorLocation& t : locs) specs.push_back(SpecOfLocation(t, cache));
  return FromSpecs(std::move(specs));
}

Result<Catalog> Catalog::FromHct(const std::string& path, const std::string& cache_dir) {
  HCT_ASSIGN_OR_RETURN(HctModel m, HctModel::Open(path));
  auto model = std::make_shared<const HctModel>(std::move(m));
  std::vector<TensorSpec> specs;
  for (const HctModel::Ref& r : model->tensors()) {
    const HctFile& f = model->files()[r.file];
    const TensorEntry& e = *r.entry;
    TensorSpec s;
    s.name = e.name;
    s.dtype = e.dtype;
    for (uint64_t d : e.shape) s.shape.push_back(int64_t(d));
    auto bytes = DTypeBytes(e.dtype, e.num_elements);
    if (!bytes)
      return Status::Unsupported("tensor size is not a whole number of bytes")
          .WithContext("tensor '" + e.name + "'")
          .WithContext(f.path());
    s.length = *bytes;
    s.layer = LayerOf(e.name);
    auto src = std::make_shared<TensorSource>();
    HCT_ASSIGN_OR_RETURN(src->hct, HctSource(model, f, e));
    s.source = std::move(src);
    specs.push_back(std::move(s));
  }
  // The cache's model of this source, if it was warmed: its tensors load from their entries.
  if (!cache_dir.empty()) HCT_RETURN_IF_ERROR(AddCacheRows(path, cache_dir, specs));
  return FromSpecs(std::move(specs));
}

Result<Catalog> Catalog::Open(const std::string& path) {
  // The one model-kind rule (hct/model.h): a folder with both .hct and .safetensors is HCT.
  return DetectModelKind(path) == ModelKind::kHct ? FromHct(path) : FromSafetensors(path);
}

int Catalog::num_layers() const {
  int n = 0;
  for (const auto& s : specs_) n = std::max(n, s.layer + 1);
  return n;
}

std::vector<TensorSpec> Catalog::Layer(int i) const {
  std::vector<TensorSpec> v;
  for (const auto& s : specs_)
    if (s.layer == i) v.push_back(s);
  // File order: by the file read first, then by offset (compressed-only tensors keep catalog
  // order within their file).
  auto off = [](const TensorSpec& s) { return s.file() ? s.file()->offset : 0; };
  std::stable_sort(v.begin(), v.end(), [&](const TensorSpec& a, const TensorSpec& b) {
    return a.path() != b.path() ? a.path() < b.path() : off(a) < off(b);
  });
  return v;
}

}  // namespace hct
