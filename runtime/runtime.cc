// hct::Runtime, options, LoadedTensor, Catalog, LayerStreamer and the DLPack export.
#include "hct/runtime.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <thread>

#include <filesystem>
#include <map>

#include "hct/cache.h"
#include "hct/model.h"
#include "hct/safetensors.h"
#include "runtime/detail/engine.h"
#include "runtime/detail/sources.h"
#include "hct/units.h"

#if HCT_WITH_CUDA
#include <cuda_runtime_api.h>

#include "hct/detail/check_cuda.h"
#endif

namespace hct {
namespace {

// "64M", "1.5G", "4096", "2GiB" -> bytes: the project's one size parser (hct/units.h).
std::optional<uint64_t> ParseBytes(const std::string& t) {
  auto r = ParseSize(t);
  return r.ok() ? std::optional<uint64_t>(*r) : std::nullopt;
}

std::optional<bool> ParseBool(std::string t) {
  for (auto& c : t) c = char(std::tolower(static_cast<unsigned char>(c)));
  if (t == "1" || t == "on" || t == "true" || t == "yes") return true;
  if (t == "0" || t == "off" || t == "false" || t == "no") return false;
  return std::nullopt;
}

std::optional<int> ParseInt(const std::string& t) {
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(t.c_str(), &end, 10);
  if (t.empty() || errno || *end != '\0' || v < -1000000 || v > 1000000) return std::nullopt;
  return int(v);
}

Status BadEnv(const char* var, const std::string& value, const char* want) {
  return Status::InvalidArgument(std::string(var) + "='" + value + "': expected " + want);
}

}  // namespace

// ------------------------------------------------------------------------------ options
Result<RuntimeOptions> RuntimeOptions::FromEnv() { return FromEnv(RuntimeOptions{}); }

Result<RuntimeOptions> RuntimeOptions::FromEnv(RuntimeOptions o) {
  auto env = [](const char* k) -> std::optional<std::string> {
    const char* v = std::getenv(k);
    if (!v) return std::nullopt;
    return std::string(v);
  };
  auto size = [&](const char* k, uint64_t* dst) -> Status {
    if (auto v = env(k)) {
      auto b = ParseBytes(*v);
      if (!b) return BadEnv(k, *v, "a size such as 256M or 4G");
      *dst = *b;
    }
    return Status::OK();
  };
  auto integer = [&](const char* k, int* dst) -> Status {
    if (auto v = env(k)) {
      auto n = ParseInt(*v);
      if (!n) return BadEnv(k, *v, "an integer");
      *dst = *n;
    }
    return Status::OK();
  };
  auto boolean = [&](const char* k, bool* dst) -> Status {
    if (auto v = env(k)) {
      auto b = ParseBool(*v);
      if (!b) return BadEnv(k, *v, "on or off");
      *dst = *b;
    }
    return Status::OK();
  };
  HCT_RETURN_IF_ERROR(size("HCT_STAGING_BYTES", &o.staging_bytes));
  HCT_RETURN_IF_ERROR(size("HCT_CHUNK_BYTES", &o.chunk_bytes));
  HCT_RETURN_IF_ERROR(size("HCT_COMPRESSED_SLOT_BYTES", &o.hct_slot_bytes));
  HCT_RETURN_IF_ERROR(size("HCT_COMPRESSED_STAGING_BYTES", &o.hct_staging_bytes));
  HCT_RETURN_IF_ERROR(size("HCT_COPY_STEP", &o.copy_step_bytes));
  HCT_RETURN_IF_ERROR(size("HCT_RESIDENT_BUDGET", &o.resident_budget));
  HCT_RETURN_IF_ERROR(integer("HCT_IO_THREADS", &o.io_threads));
  HCT_RETURN_IF_ERROR(integer("HCT_DECODE_THREADS", &o.decode_threads));
  HCT_RETURN_IF_ERROR(integer("HCT_STREAMS", &o.streams));
  HCT_RETURN_IF_ERROR(integer("HCT_DEVICE", &o.device));
  HCT_RETURN_IF_ERROR(boolean("HCT_VERIFY", &o.verify));
  HCT_RETURN_IF_ERROR(boolean("HCT_FORCE_HOST", &o.force_host));
  if (auto v = env("HCT_O_DIRECT")) {
    std::string t = *v;
    for (auto& c : t) c = char(std::tolower(static_cast<unsigned char>(c)));
    if (t == "auto") o.o_direct = ODirectMode::kAuto;
    else if (auto b = ParseBool(t)) o.o_direct = *b ? ODirectMode::kOn : ODirectMode::kOff;
    else return BadEnv("HCT_O_DIRECT", *v, "on, off or auto");
  }
  HCT_RETURN_IF_ERROR(o.Validate());
  return o;
}

Status RuntimeOptions::Validate() const {
  if (chunk_bytes < 4096 || chunk_bytes % 4096 != 0)
    return Status::InvalidArgument("chunk_bytes " + std::to_string(chunk_bytes) +
                                   " is not a positive multiple of 4096");
  if (staging_bytes < 2 * chunk_bytes)
    return Status::InvalidArgument("staging_bytes " + std::to_string(staging_bytes) +
                                   " must hold at least two chunks of " +
                                   std::to_string(chunk_bytes));
  if (copy_step_bytes != 0 && (copy_step_bytes < 65536 || copy_step_bytes % 4096 != 0))
    return Status::InvalidArgument("copy_step_bytes " + std::to_string(copy_step_bytes) +
                                   " must be 0 or a multiple of 4096 of at least 64K");
  if (hct_slot_bytes % 4096 != 0)
    return Status::InvalidArgument("hct_slot_bytes " + std::to_string(hct_slot_bytes) +
                                   " is not a multiple of 4096");
  if (hct_slot_bytes != 0 && hct_staging_bytes < 2 * hct_slot_bytes)
    return Status::InvalidArgument("hct_staging_bytes " + std::to_string(hct_staging_bytes) +
                                   " must hold at least two slots of " +
                                   std::to_string(hct_slot_bytes));
  if (io_threads < 1 || io_threads > 256)
    return Status::InvalidArgument("io_threads " + std::to_string(io_threads) +
                                   " is not in [1, 256]");
  if (decode_threads < 0 || decode_threads > 1024)
    return Status::InvalidArgument("decode_threads " + std::to_string(decode_threads) +
                                   " is not in [0, 1024]");
  if (streams < 1 || streams > 64)
    return Status::InvalidArgument("streams " + std::to_string(streams) + " is not in [1, 64]");
  return Status::OK();
}

std::vector<uint64_t> PackOffsets(std::span<const TensorSpec> specs, uint64_t* total) {
  std::vector<uint64_t> offs;
  uint64_t o = 0;
  for (const auto& s : specs) {
    o = (o + 255) & ~uint64_t(255);
    offs.push_back(o);
    o += s.length;
  }
  if (total) *total = o;
  return offs;
}

// --------------------------------------------------------------------------- LoadedTensor
Placement LoadedTensor::placement() const {
  return state_ ? state_->placement : Placement::kHost;
}
int LoadedTensor::device() const { return state_ ? state_->device : -1; }
EventHandle LoadedTensor::event() const { return state_ ? state_->event : nullptr; }

Status LoadedTensor::Wait() const {
#if HCT_WITH_CUDA
  if (state_ && state_->event)
    HCT_CHECK(cuda, cudaEventSynchronize(static_cast<cudaEvent_t>(state_->event)));
#endif
  return Status::OK();
}

Result<DLDataType> ToDLDataType(DType t) {
  auto dt = [](DLDataTypeCode c, int bits) { return DLDataType{uint8_t(c), uint8_t(bits), 1}; };
  switch (t) {
    case DType::kBOOL: return dt(kDLBool, 8);
    case DType::kU8: return dt(kDLUInt, 8);
    case DType::kI8: return dt(kDLInt, 8);
    case DType::kF8_E5M2: return dt(kDLFloat8_e5m2, 8);
    case DType::kF8_E4M3: return dt(kDLFloat8_e4m3fn, 8);  // safetensors F8_E4M3 is e4m3fn
    case DType::kF8_E8M0: return dt(kDLFloat8_e8m0fnu, 8);
    case DType::kI16: return dt(kDLInt, 16);
    case DType::kU16: return dt(kDLUInt, 16);
    case DType::kF16: return dt(kDLFloat, 16);
    case DType::kBF16: return dt(kDLBfloat, 16);
    case DType::kI32: return dt(kDLInt, 32);
    case DType::kU32: return dt(kDLUInt, 32);
    case DType::kF32: return dt(kDLFloat, 32);
    case DType::kC64: return dt(kDLComplex, 64);
    case DType::kF64: return dt(kDLFloat, 64);
    case DType::kI64: return dt(kDLInt, 64);
    case DType::kU64: return dt(kDLUInt, 64);
    case DType::kF4: return dt(kDLFloat4_e2m1fn, 4);
    case DType::kF6_E2M3: return dt(kDLFloat6_e2m3fn, 6);
    case DType::kF6_E3M2: return dt(kDLFloat6_e3m2fn, 6);
  }
  return Status::Unsupported("dtype " + std::string(DTypeName(t)) + " has no DLPack code");
}

namespace {
struct DLPackCtx {
  std::shared_ptr<detail::Buffer> buffer;
  std::shared_ptr<detail::LoadState> state;
  std::vector<int64_t> shape;
  DLManagedTensor managed{};
};
void DeleteDLPack(DLManagedTensor* self) {
  if (self) delete static_cast<DLPackCtx*>(self->manager_ctx);
}
}  // namespace

Result<DLManagedTensor*> LoadedTensor::ToDLPack() const {
  if (!spec_) return Status::InvalidArgument("empty LoadedTensor");
  auto dt = ToDLDataType(spec_->dtype);
  if (!dt.ok()) return dt.status().WithContext("tensor '" + spec_->name + "'");
  auto* ctx = new DLPackCtx();
  ctx->buffer = buffer_;
  ctx->state = state_;
  ctx->shape = spec_->shape;
  DLTensor& t = ctx->managed.dl_tensor;
  t.data = data_;
  t.device.device_type = placement() == Placement::kDevice ? kDLCUDA : kDLCPU;
  t.device.device_id = placement() == Placement::kDevice ? device() : 0;
  t.ndim = int32_t(ctx->shape.size());
  t.dtype = *dt;
  t.shape = ctx->shape.empty() ? nullptr : ctx->shape.data();
  t.strides = nullptr;
  t.byte_offset = 0;
  ctx->managed.manager_ctx = ctx;
  ctx->managed.deleter = &DeleteDLPack;
  return &ctx->managed;
}

// -------------------------------------------------------------------------------- Runtime
Runtime::Runtime(std::unique_ptr<detail::Engine> e) : engine_(std::move(e)) {}
Runtime::~Runtime() = default;

Result<std::unique_ptr<Runtime>> Runtime::Create(const RuntimeOptions& options) {
  HCT_ASSIGN_OR_RETURN(auto e, detail::Engine::Create(options));
  return std::unique_ptr<Runtime>(new Runtime(std::move(e)));
}

Placement Runtime::placement() const { return engine_->placement(); }
int Runtime::device() const { return engine_->device(); }
const RuntimeOptions& Runtime::options() const { return engine_->options(); }

Result<LoadedTensor> Runtime::Load(const TensorSpec& spec, StreamHandle stream, void* dst,
                                   uint64_t dst_bytes) {
  HCT_ASSIGN_OR_RETURN(auto v, engine_->LoadMany({&spec, 1}, stream, dst, dst_bytes, nullptr,
                                                 nullptr));
  return std::move(v[0]);
}

Result<std::vector<LoadedTensor>> Runtime::LoadMany(std::span<const TensorSpec> specs,
                                                    StreamHandle stream, void* dst,
                                                    uint64_t dst_bytes) {
  return engine_->LoadMany(specs, stream, dst, dst_bytes, nullptr, nullptr);
}

Status Runtime::MakeResident(const std::string& path) { return engine_->MakeResident(path); }
bool Runtime::IsResident(const std::string& path) const { return engine_->IsResident(path); }
Status Runtime::ReleaseResident() { return engine_->ReleaseResident(); }
RuntimeStats Runtime::stats() const { return engine_->stats(); }

// -------------------------------------------------------------------------------- Catalog
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
      s.path = f.path();
      s.offset = f.file_offset(t);
      s.length = t.num_bytes();
      s.dtype = t.dtype;
      for (uint64_t d : t.shape) s.shape.push_back(int64_t(d));
      s.layer = LayerOf(t.name);
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

TensorSpec SpecOfLocation(const TensorLocation& t, const std::shared_ptr<Cache>& cache) {
  TensorSpec s;
  s.name = t.name;
  s.path = t.path;
  s.offset = t.offset;
  s.length = t.length;
  s.xxh3 = t.xxh3;
  if (!t.block_xxh3.empty()) {
    s.block_xxh3 = t.block_xxh3;
    s.block_bytes = kBlockHashBytes;
  }
  s.dtype = t.dtype;
  for (uint64_t d : t.shape) s.shape.push_back(int64_t(d));
  s.layer = t.layer.value_or(-1);
  auto ref = std::make_shared<detail::CacheRef>();
  ref->cache = cache;
  ref->tensor_id = t.tensor_id;
  s.cache = std::move(ref);
  return s;
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
    s.path = f.path();
    s.dtype = e.dtype;
    for (uint64_t d : e.shape) s.shape.push_back(int64_t(d));
    auto bytes = DTypeBytes(e.dtype, e.num_elements);
    if (!bytes)
      return Status::Unsupported("tensor size is not a whole number of bytes")
          .WithContext("tensor '" + e.name + "'")
          .WithContext(f.path());
    s.length = *bytes;
    s.layer = LayerOf(e.name);
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
    s.hct = std::move(ref);
    specs.push_back(std::move(s));
  }
  if (!cache_dir.empty()) {
    // The cache's model of this source, if it was warmed: its tensors load from their entries.
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
        TensorSpec c = SpecOfLocation(t, cache);
        c.layer = s.layer;
        c.hct = s.hct;
        s = std::move(c);
      }
    }
  }
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
  std::stable_sort(v.begin(), v.end(), [](const TensorSpec& a, const TensorSpec& b) {
    return a.path != b.path ? a.path < b.path : a.offset < b.offset;
  });
  return v;
}

const LoadedTensor* StreamedLayer::Find(std::string_view name) const {
  for (const auto& t : tensors)
    if (t.spec().name == name) return &t;
  return nullptr;
}

// --------------------------------------------------------------------------- LayerStreamer
namespace {
// The reused buffers; shared with every slot Buffer so that it outlives the streamer while a
// layer is still held.
struct SlotPool {
  Placement placement = Placement::kHost;
  int device = -1;
  uint64_t slot_bytes = 0;
  std::vector<void*> ptrs;
  std::vector<void*> free_events;  // cudaEvent_t: the consumer's stream is done with the slot
  std::mutex mu;
  std::condition_variable cv;
  std::deque<int> free;  // FIFO: slots are reused round-robin, the longest-idle first
  ~SlotPool() {
    for (void* p : ptrs) detail::FreeMemory(placement, device, p);
#if HCT_WITH_CUDA
    for (void* e : free_events) (void)cudaEventDestroy(static_cast<cudaEvent_t>(e));
#endif
  }
};
}  // namespace

struct LayerStreamer::Impl {
  detail::Engine* engine = nullptr;
  std::vector<std::vector<TensorSpec>> layers;
  StreamHandle stream = nullptr;
  std::shared_ptr<SlotPool> pool;
  std::thread worker;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Result<StreamedLayer>> ready;
  int handed_out = 0;
  bool stop = false;

  void Run() {
    for (int k = 0; k < int(layers.size()); ++k) {
      int slot = -1;
      {
        std::unique_lock<std::mutex> l(pool->mu);
        pool->cv.wait(l, [&] { return stop || !pool->free.empty(); });
        if (stop) return;
        slot = pool->free.front();
        pool->free.pop_front();
      }
      auto buf = std::make_shared<detail::Buffer>();
      buf->ptr = pool->ptrs[size_t(slot)];
      buf->bytes = pool->slot_bytes;
      buf->placement = pool->placement;
      buf->device = pool->device;
      std::shared_ptr<SlotPool> keep = pool;
      StreamHandle st = stream;
      buf->release = [keep, slot, st](detail::Buffer&) {
#if HCT_WITH_CUDA
        if (keep->placement == Placement::kDevice) {
          // The next load into this slot waits (on the GPU) for the consumer's work so far.
          int prev = -1;
          (void)cudaGetDevice(&prev);
          (void)cudaSetDevice(keep->device);
          (void)cudaEventRecord(static_cast<cudaEvent_t>(keep->free_events[size_t(slot)]),
                                static_cast<cudaStream_t>(st));
          if (prev >= 0) (void)cudaSetDevice(prev);
        }
#endif
        std::lock_guard<std::mutex> l(keep->mu);
        keep->free.push_back(slot);
        keep->cv.notify_all();
      };
      EventHandle wait = pool->free_events.empty() ? nullptr : pool->free_events[size_t(slot)];
      auto r = engine->LoadMany(layers[size_t(k)], stream, nullptr, 0, std::move(buf), wait);
      std::lock_guard<std::mutex> l(mu);
      if (r.ok()) {
        StreamedLayer layer;
        layer.index = k;
        layer.tensors = std::move(*r);
        ready.emplace_back(std::move(layer));
      } else {
        ready.emplace_back(r.status().WithContext("layer " + std::to_string(k)));
        cv.notify_all();
        return;  // later layers are not loaded after an error
      }
      cv.notify_all();
    }
  }
};

LayerStreamer::LayerStreamer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

LayerStreamer::~LayerStreamer() {
  {
    std::lock_guard<std::mutex> l(impl_->mu);
    impl_->stop = true;
  }
  {
    std::lock_guard<std::mutex> l(impl_->pool->mu);
    impl_->stop = true;
  }
  impl_->pool->cv.notify_all();
  if (impl_->worker.joinable()) impl_->worker.join();
}

Result<std::unique_ptr<LayerStreamer>> LayerStreamer::Create(
    Runtime* runtime, std::vector<std::vector<TensorSpec>> layers, int prefetch,
    StreamHandle stream) {
  if (!runtime) return Status::InvalidArgument("LayerStreamer needs a runtime");
  if (prefetch < 0 || prefetch > 64)
    return Status::InvalidArgument("prefetch " + std::to_string(prefetch) + " is not in [0, 64]");
  auto impl = std::make_unique<Impl>();
  impl->engine = runtime->engine();
  impl->stream = stream;
  auto pool = std::make_shared<SlotPool>();
  pool->placement = runtime->placement();
  pool->device = runtime->device();
  for (const auto& l : layers) {
    uint64_t total = 0;
    PackOffsets(l, &total);
    pool->slot_bytes = std::max(pool->slot_bytes, total);
  }
  const int nslots = std::min<int>(prefetch + 1, std::max<int>(1, int(layers.size())));
  for (int i = 0; i < nslots; ++i) {
    HCT_ASSIGN_OR_RETURN(void* p, impl->engine->AllocateRaw(pool->slot_bytes));
    pool->ptrs.push_back(p);
    pool->free.push_back(i);
#if HCT_WITH_CUDA
    if (pool->placement == Placement::kDevice) {
      cudaEvent_t ev;
      HCT_CHECK(cuda, cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
      pool->free_events.push_back(ev);
    }
#endif
  }
  impl->pool = std::move(pool);
  impl->layers = std::move(layers);
  Impl* raw = impl.get();
  std::unique_ptr<LayerStreamer> s(new LayerStreamer(std::move(impl)));
  raw->worker = std::thread([raw] { raw->Run(); });
  return s;
}

Result<StreamedLayer> LayerStreamer::Next() {
  std::unique_lock<std::mutex> l(impl_->mu);
  if (impl_->handed_out >= int(impl_->layers.size()))
    return Status::OutOfRange("all " + std::to_string(impl_->layers.size()) +
                              " layers were streamed");
  impl_->cv.wait(l, [&] { return !impl_->ready.empty(); });
  Result<StreamedLayer> r = std::move(impl_->ready.front());
  if (r.ok()) {
    impl_->ready.pop_front();
    ++impl_->handed_out;
  }  // an error stays at the front: every later Next() reports it
  return r;
}

int LayerStreamer::num_layers() const { return int(impl_->layers.size()); }
uint64_t LayerStreamer::slot_bytes() const { return impl_->pool->slot_bytes; }
int LayerStreamer::slots() const { return int(impl_->pool->ptrs.size()); }

}  // namespace hct
