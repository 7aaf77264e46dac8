// The C API (hct/hct.h) over hct::Runtime and hct::Catalog.
#include "hct/hct.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "hct/cache.h"
#include "hct/runtime.h"
#include "hct/units.h"

#ifndef HCT_VERSION_STRING
#define HCT_VERSION_STRING "0.0.0"
#endif

struct hct_runtime {
  std::shared_ptr<hct::Runtime> rt;  // shared by the runtimes hct_open_on opened on it
  hct::Catalog catalog;
};

struct hct_tensor {
  hct::LoadedTensor t;
};

struct hct_streamer {
  hct_runtime* rt;
  int prefetch;
  void* stream;
  std::unique_ptr<hct::LayerStreamer> s;
  int64_t max_tensors = 0;
  uint64_t extra_bytes = 0;
  bool cyclic = false;
  std::vector<std::vector<hct::TensorSpec>> layers;  // given layers (empty: the catalog's)
};

namespace {
thread_local std::string g_last_error;

int Fail(const hct::Status& s) {
  g_last_error = s.ToString();
  return int(s.code());
}

int Ok() {
  g_last_error.clear();
  return HCT_OK;
}

void FillInfo(const hct::TensorSpec& s, hct_tensor_info* out) {
  out->name = s.name.c_str();
  out->dtype = hct::DTypeName(s.dtype).data();  // static storage, NUL-terminated
  out->ndim = int32_t(s.shape.size());
  for (size_t i = 0; i < HCT_MAX_DIMS; ++i) out->shape[i] = i < s.shape.size() ? s.shape[i] : 0;
  out->nbytes = s.length;
  out->layer = s.layer;
}
}  // namespace

extern "C" {

namespace {
// HCT_OK when `cat` opened and every tensor fits hct_tensor_info.
int CheckCatalog(const hct::Result<hct::Catalog>& cat) {
  if (!cat.ok()) return Fail(cat.status());
  for (const auto& s : cat->tensors())
    if (s.shape.size() > HCT_MAX_DIMS)
      return Fail(hct::Status::Unsupported("tensor '" + s.name + "' has more than " +
                                           std::to_string(HCT_MAX_DIMS) + " dimensions"));
  return HCT_OK;
}

int OpenCatalog(hct::Result<hct::Catalog> cat, hct_runtime** out,
                const hct::RuntimeOptions* given = nullptr) {
  if (int rc = CheckCatalog(cat); rc != HCT_OK) return rc;
  hct::Result<hct::RuntimeOptions> opt =
      given ? hct::Result<hct::RuntimeOptions>(*given) : hct::RuntimeOptions::FromEnv();
  if (!opt.ok()) return Fail(opt.status());
  if (hct::Status v = opt->Validate(); !v.ok()) return Fail(v);
  auto rt = hct::Runtime::Create(*opt);
  if (!rt.ok()) return Fail(rt.status());
  *out = new hct_runtime{std::shared_ptr<hct::Runtime>(std::move(*rt)), std::move(*cat)};
  return Ok();
}
}  // namespace

int hct_open(const char* path, hct_runtime** out) {
  if (!path || !out) return Fail(hct::Status::InvalidArgument("hct_open: null argument"));
  return OpenCatalog(hct::Catalog::Open(path), out);
}

int hct_open_cache(const char* cache_dir, const char* model, hct_runtime** out) {
  if (!cache_dir || !out)
    return Fail(hct::Status::InvalidArgument("hct_open_cache: null argument"));
  return OpenCatalog(hct::Catalog::FromCache(cache_dir, model ? model : ""), out);
}

int hct_open_hct(const char* path, const char* cache_dir, hct_runtime** out) {
  if (!path || !out) return Fail(hct::Status::InvalidArgument("hct_open_hct: null argument"));
  return OpenCatalog(hct::Catalog::FromHct(path, cache_dir ? cache_dir : ""), out);
}

int hct_runtime_stats(const hct_runtime* rt, hct_stats* out) {
  if (!rt || !out) return Fail(hct::Status::InvalidArgument("hct_runtime_stats: null argument"));
  hct::RuntimeStats st = rt->rt->stats();
  out->pinned_staging_bytes = st.pinned_staging_bytes;
  out->loads_resident = st.loads_resident;
  out->loads_one_shot = st.loads_one_shot;
  out->loads_hct = st.loads_hct;
  out->loads_cache = st.loads_cache;
  out->cache_fallbacks = st.cache_fallbacks;
  out->bytes_hct_stored = st.bytes_hct_stored;
  out->bytes_hct_decoded = st.bytes_hct_decoded;
  out->registered_bytes = st.registered_bytes;
  out->resident_files = st.resident_files;
  out->hct_device_scratch_bytes = st.hct_device_scratch_bytes;
  return Ok();
}

void hct_close(hct_runtime* rt) { delete rt; }

int hct_on_device(const hct_runtime* rt) {
  return rt && rt->rt->placement() == hct::Placement::kDevice ? 1 : 0;
}

int64_t hct_num_tensors(const hct_runtime* rt) {
  return rt ? int64_t(rt->catalog.tensors().size()) : 0;
}

int hct_tensor_info_at(const hct_runtime* rt, int64_t index, hct_tensor_info* out) {
  if (!rt || !out) return Fail(hct::Status::InvalidArgument("hct_tensor_info_at: null argument"));
  if (index < 0 || index >= hct_num_tensors(rt))
    return Fail(hct::Status::OutOfRange("tensor index " + std::to_string(index)));
  FillInfo(rt->catalog.tensors()[size_t(index)], out);
  return Ok();
}

int hct_lookup(const hct_runtime* rt, const char* name, hct_tensor_info* out) {
  if (!rt || !name || !out) return Fail(hct::Status::InvalidArgument("hct_lookup: null argument"));
  const hct::TensorSpec* s = rt->catalog.Find(name);
  if (!s) return Fail(hct::Status::NotFound(std::string("no tensor '") + name + "'"));
  FillInfo(*s, out);
  return Ok();
}

int hct_load(hct_runtime* rt, const char* name, void* stream, void* dst, uint64_t dst_bytes,
             hct_tensor** out) {
  if (!rt || !name || !out) return Fail(hct::Status::InvalidArgument("hct_load: null argument"));
  const hct::TensorSpec* s = rt->catalog.Find(name);
  if (!s) return Fail(hct::Status::NotFound(std::string("no tensor '") + name + "'"));
  auto t = rt->rt->Load(*s, stream, dst, dst_bytes);
  if (!t.ok()) return Fail(t.status());
  *out = new hct_tensor{std::move(*t)};
  return Ok();
}

int hct_tensor_wait(hct_tensor* t) {
  if (!t) return Fail(hct::Status::InvalidArgument("hct_tensor_wait: null tensor"));
  hct::Status s = t->t.Wait();
  return s.ok() ? Ok() : Fail(s);
}

void* hct_tensor_event(const hct_tensor* t) { return t ? t->t.event() : nullptr; }
void* hct_tensor_data(const hct_tensor* t) { return t ? t->t.data() : nullptr; }
uint64_t hct_tensor_nbytes(const hct_tensor* t) { return t ? t->t.bytes() : 0; }

int hct_tensor_to_dlpack(const hct_tensor* t, DLManagedTensor** out) {
  if (!t || !out) return Fail(hct::Status::InvalidArgument("hct_tensor_to_dlpack: null argument"));
  auto m = t->t.ToDLPack();
  if (!m.ok()) return Fail(m.status());
  *out = *m;
  return Ok();
}

void hct_tensor_free(hct_tensor* t) { delete t; }

const char* hct_last_error(void) { return g_last_error.c_str(); }

const char* hct_code_name(int code) {
  if (code < 0 || code > int(hct::Code::kInternal)) return "Unknown";
  return hct::CodeName(hct::Code(code)).data();
}

}  // extern "C"

// --------------------------------------------------------------------------- added for python/
namespace {
void ToC(const hct::RuntimeOptions& o, hct_options* out) {
  *out = hct_options{};
  out->struct_size = sizeof(hct_options);
  out->staging_bytes = o.staging_bytes;
  out->chunk_bytes = o.chunk_bytes;
  out->hct_slot_bytes = o.hct_slot_bytes;
  out->hct_staging_bytes = o.hct_staging_bytes;
  out->copy_step_bytes = o.copy_step_bytes;
  out->io_threads = o.io_threads;
  out->decode_threads = o.decode_threads;
  out->streams = o.streams;
  out->o_direct = o.o_direct == hct::ODirectMode::kOff ? 0 : o.o_direct == hct::ODirectMode::kOn ? 1 : 2;
  out->verify = o.verify ? 1 : 0;
  out->resident_budget = o.resident_budget;
  out->device = o.device;
  out->force_host = o.force_host ? 1 : 0;
}

hct::Result<hct::RuntimeOptions> FromC(const hct_options* in) {
  // An older caller's struct is shorter: its missing fields keep the defaults.
  if (in->struct_size < sizeof(uint32_t) || in->struct_size > sizeof(hct_options))
    return hct::Status::InvalidArgument("hct_options.struct_size " +
                                        std::to_string(in->struct_size) + " is not valid");
  hct_options c;
  ToC(hct::RuntimeOptions{}, &c);
  std::memcpy(&c, in, in->struct_size);
  if (c.o_direct < 0 || c.o_direct > 2)
    return hct::Status::InvalidArgument("hct_options.o_direct " + std::to_string(c.o_direct) +
                                        " is not 0, 1 or 2");
  hct::RuntimeOptions o;
  o.staging_bytes = c.staging_bytes;
  o.chunk_bytes = c.chunk_bytes;
  o.hct_slot_bytes = c.hct_slot_bytes;
  o.hct_staging_bytes = c.hct_staging_bytes;
  o.copy_step_bytes = c.copy_step_bytes;
  o.io_threads = c.io_threads;
  o.decode_threads = c.decode_threads;
  o.streams = c.streams;
  o.o_direct = c.o_direct == 0 ? hct::ODirectMode::kOff
             : c.o_direct == 1 ? hct::ODirectMode::kOn : hct::ODirectMode::kAuto;
  o.verify = c.verify != 0;
  o.resident_budget = c.resident_budget;
  o.device = c.device;
  o.force_host = c.force_host != 0;
  if (hct::Status v = o.Validate(); !v.ok()) return v;
  return o;
}

int OpenWith(hct::Result<hct::Catalog> cat, const hct_options* opt, hct_runtime** out) {
  if (!opt) return OpenCatalog(std::move(cat), out);
  auto o = FromC(opt);
  if (!o.ok()) return Fail(o.status());
  return OpenCatalog(std::move(cat), out, &*o);
}

int MakeStreamer(hct_streamer* s) {
  std::vector<std::vector<hct::TensorSpec>> layers = s->layers;
  if (layers.empty())
    for (int i = 0; i < s->rt->catalog.num_layers(); ++i) layers.push_back(s->rt->catalog.Layer(i));
  s->max_tensors = 0;
  for (const auto& l : layers) s->max_tensors = std::max<int64_t>(s->max_tensors, int64_t(l.size()));
  hct::LayerStreamer::Options o;
  o.prefetch = s->prefetch;
  o.extra_bytes = s->extra_bytes;
  o.cyclic = s->cyclic;
  auto r = hct::LayerStreamer::Create(s->rt->rt.get(), std::move(layers), o, s->stream);
  if (!r.ok()) return Fail(r.status());
  s->s = std::move(*r);
  return Ok();
}

// Serializes a caller's progress callback (hct::Cache already calls it one at a time).
std::function<void(uint64_t, uint64_t)> Progress(hct_progress_fn fn, void* user) {
  if (!fn) return nullptr;
  return [fn, user](uint64_t done, uint64_t total) { fn(done, total, user); };
}

hct::Result<std::unique_ptr<hct::Cache>> OpenCacheDir(const char* dir) {
  if (!dir || !*dir) return hct::Status::InvalidArgument("no cache directory");
  return hct::Cache::Open(dir);
}

thread_local std::string g_ls;

// The specs of names[0..n), or NotFound naming the first that the catalog lacks.
int FindAll(const hct_runtime* rt, const char* const* names, int64_t n,
            std::vector<hct::TensorSpec>* specs) {
  specs->reserve(size_t(n));
  for (int64_t i = 0; i < n; ++i) {
    const hct::TensorSpec* s = names[i] ? rt->catalog.Find(names[i]) : nullptr;
    if (!s)
      return Fail(hct::Status::NotFound(std::string("no tensor '") + (names[i] ? names[i] : "") +
                                        "'"));
    specs->push_back(*s);
  }
  return HCT_OK;
}
}  // namespace

extern "C" {

const char* hct_version(void) { return HCT_VERSION_STRING; }

int hct_parse_size(const char* text, uint64_t* out) {
  if (!text || !out) return Fail(hct::Status::InvalidArgument("hct_parse_size: null argument"));
  hct::Result<uint64_t> v = hct::ParseSize(text);
  if (!v.ok()) return Fail(v.status());
  *out = *v;
  return Ok();
}

int hct_options_default(hct_options* out) {
  if (!out) return Fail(hct::Status::InvalidArgument("hct_options_default: null argument"));
  ToC(hct::RuntimeOptions{}, out);
  return Ok();
}

int hct_options_from_env(hct_options* out) {
  if (!out) return Fail(hct::Status::InvalidArgument("hct_options_from_env: null argument"));
  auto o = hct::RuntimeOptions::FromEnv();
  if (!o.ok()) return Fail(o.status());
  ToC(*o, out);
  return Ok();
}

int hct_open_ex(const char* path, const hct_options* opt, hct_runtime** out) {
  if (!path || !out) return Fail(hct::Status::InvalidArgument("hct_open_ex: null argument"));
  return OpenWith(hct::Catalog::Open(path), opt, out);
}

int hct_open_cache_ex(const char* cache_dir, const char* model, const hct_options* opt,
                      hct_runtime** out) {
  if (!cache_dir || !out)
    return Fail(hct::Status::InvalidArgument("hct_open_cache_ex: null argument"));
  return OpenWith(hct::Catalog::FromCache(cache_dir, model ? model : ""), opt, out);
}

int hct_open_hct_ex(const char* path, const char* cache_dir, const hct_options* opt,
                    hct_runtime** out) {
  if (!path || !out) return Fail(hct::Status::InvalidArgument("hct_open_hct_ex: null argument"));
  return OpenWith(hct::Catalog::FromHct(path, cache_dir ? cache_dir : ""), opt, out);
}

int hct_load_many(hct_runtime* rt, const char* const* names, int64_t n, void* stream, void* dst,
                  uint64_t dst_bytes, hct_tensor** out) {
  if (!rt || (n > 0 && (!names || !out)) || n < 0)
    return Fail(hct::Status::InvalidArgument("hct_load_many: null argument"));
  std::vector<hct::TensorSpec> specs;
  if (int rc = FindAll(rt, names, n, &specs); rc != HCT_OK) return rc;
  auto r = rt->rt->LoadMany(specs, stream, dst, dst_bytes);
  if (!r.ok()) return Fail(r.status());
  for (int64_t i = 0; i < n; ++i) out[i] = new hct_tensor{std::move((*r)[size_t(i)])};
  return Ok();
}

int hct_make_resident(hct_runtime* rt, const char* path) {
  if (!rt || !path) return Fail(hct::Status::InvalidArgument("hct_make_resident: null argument"));
  hct::Status s = rt->rt->MakeResident(path);
  return s.ok() ? Ok() : Fail(s);
}

int hct_release_resident(hct_runtime* rt) {
  if (!rt) return Fail(hct::Status::InvalidArgument("hct_release_resident: null argument"));
  hct::Status s = rt->rt->ReleaseResident();
  return s.ok() ? Ok() : Fail(s);
}

int hct_streamer_create(hct_runtime* rt, int prefetch, void* stream, hct_streamer** out) {
  if (!rt || !out) return Fail(hct::Status::InvalidArgument("hct_streamer_create: null argument"));
  auto s = std::make_unique<hct_streamer>(hct_streamer{rt, prefetch, stream, nullptr, 0, 0, false, {}});
  if (int rc = MakeStreamer(s.get()); rc != HCT_OK) return rc;
  *out = s.release();
  return Ok();
}

int hct_streamer_create_ex(hct_runtime* rt, const hct_stream_options* opt, void* stream,
                           hct_streamer** out) {
  if (!rt || !opt || !out || opt->num_layers < 0 || (opt->num_layers && !opt->layer_sizes))
    return Fail(hct::Status::InvalidArgument("hct_streamer_create_ex: null argument"));
  if (opt->struct_size != sizeof(hct_stream_options))
    return Fail(hct::Status::InvalidArgument("hct_stream_options.struct_size " +
                                             std::to_string(opt->struct_size) + " is not valid"));
  auto s = std::make_unique<hct_streamer>(hct_streamer{rt, opt->prefetch, stream, nullptr, 0, 0, false, {}});
  s->extra_bytes = opt->extra_bytes;
  s->cyclic = opt->cyclic != 0;
  int64_t at = 0;
  for (int64_t i = 0; i < opt->num_layers; ++i) {
    std::vector<hct::TensorSpec> layer;
    if (opt->layer_sizes[i] < 0 || (opt->layer_sizes[i] > 0 && !opt->names))
      return Fail(hct::Status::InvalidArgument("hct_streamer_create_ex: bad layer_sizes"));
    if (int rc = FindAll(rt, opt->names + at, opt->layer_sizes[i], &layer); rc != HCT_OK) return rc;
    at += opt->layer_sizes[i];
    s->layers.push_back(std::move(layer));
  }
  if (int rc = MakeStreamer(s.get()); rc != HCT_OK) return rc;
  *out = s.release();
  return Ok();
}

int hct_streamer_restart_at(hct_streamer* s, int layer) {
  if (!s) return Fail(hct::Status::InvalidArgument("hct_streamer_restart_at: null streamer"));
  if (!s->s) return MakeStreamer(s);
  hct::Status st = s->s->RestartAt(layer);
  return st.ok() ? Ok() : Fail(st);
}

int hct_streamer_num_layers(const hct_streamer* s) { return s && s->s ? s->s->num_layers() : 0; }
int64_t hct_streamer_max_tensors(const hct_streamer* s) { return s ? s->max_tensors : 0; }
uint64_t hct_streamer_slot_bytes(const hct_streamer* s) { return s && s->s ? s->s->slot_bytes() : 0; }

int hct_streamer_next(hct_streamer* s, int* index, hct_tensor** out, int64_t cap, int64_t* n) {
  if (!s || !index || !n || (cap > 0 && !out) || cap < 0)
    return Fail(hct::Status::InvalidArgument("hct_streamer_next: null argument"));
  if (!s->s) return Fail(hct::Status::Internal("hct_streamer_next: the last restart failed"));
  auto r = s->s->Next();
  if (!r.ok()) return Fail(r.status());
  if (int64_t(r->tensors.size()) > cap)
    return Fail(hct::Status::OutOfRange("layer " + std::to_string(r->index) + " has " +
                                        std::to_string(r->tensors.size()) +
                                        " tensors, more than the capacity " +
                                        std::to_string(cap)));
  *index = r->index;
  *n = int64_t(r->tensors.size());
  for (size_t i = 0; i < r->tensors.size(); ++i) out[i] = new hct_tensor{std::move(r->tensors[i])};
  return Ok();
}

int hct_streamer_restart(hct_streamer* s) {
  if (!s) return Fail(hct::Status::InvalidArgument("hct_streamer_restart: null streamer"));
  if (!s->s) return MakeStreamer(s);
  hct::Status st = s->s->Restart();  // same slots and rings: nothing is allocated
  return st.ok() ? Ok() : Fail(st);
}

void hct_streamer_free(hct_streamer* s) { delete s; }

int hct_cache_warm(const char* cache_dir, const char* source, const char* tensors_glob,
                   hct_progress_fn progress, void* user) {
  if (!source) return Fail(hct::Status::InvalidArgument("hct_cache_warm: null source"));
  auto c = OpenCacheDir(cache_dir);
  if (!c.ok()) return Fail(c.status());
  hct::WarmOptions o;
  if (tensors_glob) o.tensors = tensors_glob;
  if (auto p = Progress(progress, user))
    o.progress = [p](const hct::WarmProgress& w) { p(w.done_bytes, w.total_bytes); };
  auto r = (*c)->Warm(source, o);
  return r.ok() ? Ok() : Fail(r.status());
}

int hct_cache_verify(const char* cache_dir, const char* model, int deep, hct_progress_fn progress,
                     void* user, int64_t* problems) {
  auto c = OpenCacheDir(cache_dir);
  if (!c.ok()) return Fail(c.status());
  hct::VerifyOptions o;
  if (model) o.model = model;
  o.mode = deep ? hct::VerifyMode::kDeep : hct::VerifyMode::kQuick;
  o.progress = Progress(progress, user);
  auto r = (*c)->Verify(o);
  if (!r.ok()) return Fail(r.status());
  if (problems) *problems = int64_t(r->problems.size());
  return Ok();
}

int hct_cache_evict(const char* cache_dir, const char* model, uint64_t* bytes_freed) {
  auto c = OpenCacheDir(cache_dir);
  if (!c.ok()) return Fail(c.status());
  hct::EvictOptions o;
  if (model && *model) o.model = model; else o.all = true;
  auto r = (*c)->Evict(o);
  if (!r.ok()) return Fail(r.status());
  if (bytes_freed) *bytes_freed = r->bytes_freed;
  return Ok();
}

int hct_cache_ls(const char* cache_dir, const char** out) {
  if (!out) return Fail(hct::Status::InvalidArgument("hct_cache_ls: null argument"));
  auto c = OpenCacheDir(cache_dir);
  if (!c.ok()) return Fail(c.status());
  auto r = (*c)->ListModels();
  if (!r.ok()) return Fail(r.status());
  std::ostringstream os;
  for (const auto& m : *r) os << m.name << '\t' << m.bytes << '\t' << m.source << '\n';
  g_ls = os.str();
  *out = g_ls.c_str();
  return Ok();
}

// --------------------------------------------------------- shared engines, output layout
int hct_runtime_create(const hct_options* opt, hct_runtime** out) {
  if (!out) return Fail(hct::Status::InvalidArgument("hct_runtime_create: null argument"));
  return OpenWith(hct::Catalog::FromSpecs({}), opt, out);
}

int hct_open_on(const hct_runtime* base, int kind, const char* path, const char* arg,
                hct_runtime** out) {
  if (!base || !path || !out)
    return Fail(hct::Status::InvalidArgument("hct_open_on: null argument"));
  const std::string a = arg ? arg : "";
  hct::Result<hct::Catalog> cat = hct::Status::InvalidArgument(
      "hct_open_on: source kind " + std::to_string(kind) + " is not an hct_source");
  if (kind == HCT_SOURCE_AUTO) cat = hct::Catalog::Open(path);
  else if (kind == HCT_SOURCE_CACHE) cat = hct::Catalog::FromCache(path, a);
  else if (kind == HCT_SOURCE_HCT) cat = hct::Catalog::FromHct(path, a);
  if (int rc = CheckCatalog(cat); rc != HCT_OK) return rc;
  *out = new hct_runtime{base->rt, std::move(*cat)};
  return Ok();
}

const char* hct_tensor_name(const hct_tensor* t) {
  return t && t->t.valid() ? t->t.spec().name.c_str() : "";
}

int hct_pack_offsets(const hct_runtime* rt, const char* const* names, int64_t n,
                     uint64_t* offsets, uint64_t* total) {
  if (!rt || n < 0 || (n > 0 && (!names || !offsets)) || !total)
    return Fail(hct::Status::InvalidArgument("hct_pack_offsets: null argument"));
  std::vector<hct::TensorSpec> specs;
  if (int rc = FindAll(rt, names, n, &specs); rc != HCT_OK) return rc;
  std::vector<uint64_t> offs = hct::PackOffsets(specs, total);
  std::copy(offs.begin(), offs.end(), offsets);
  return Ok();
}

}  // extern "C"

// ---- Tensor-parallel slices (runtime/slice.cc).
namespace {
int SliceDimOf(int dim, hct::SliceDim* out) {
  if (dim != HCT_SLICE_LEADING && dim != HCT_SLICE_TRAILING)
    return Fail(hct::Status::InvalidArgument("slice dimension " + std::to_string(dim) +
                                             ": HCT_SLICE_LEADING (0) or HCT_SLICE_TRAILING (1)"));
  *out = dim == HCT_SLICE_LEADING ? hct::SliceDim::kLeading : hct::SliceDim::kTrailing;
  return HCT_OK;
}
}  // namespace

extern "C" {

int hct_even_slice(const hct_runtime* rt, const char* name, int dim, int rank, int world,
                   int rule, int64_t* start, int64_t* length) {
  if (!rt || !name || !start || !length)
    return Fail(hct::Status::InvalidArgument("hct_even_slice: null argument"));
  if (rule != HCT_SPLIT_EXACT && rule != HCT_SPLIT_CHUNK)
    return Fail(hct::Status::InvalidArgument("split rule " + std::to_string(rule)));
  hct::SliceDim d;
  if (int rc = SliceDimOf(dim, &d); rc != HCT_OK) return rc;
  const hct::TensorSpec* s = rt->catalog.Find(name);
  if (!s) return Fail(hct::Status::NotFound(std::string("no tensor '") + name + "'"));
  auto sl = hct::EvenSlice(*s, d, rank, world,
                           rule == HCT_SPLIT_CHUNK ? hct::SplitRule::kChunk
                                                   : hct::SplitRule::kExact);
  if (!sl.ok()) return Fail(sl.status());
  *start = sl->start;
  *length = sl->length;
  return Ok();
}

int hct_load_slice(hct_runtime* rt, const char* name, int dim, int64_t start, int64_t length,
                   void* stream, void* dst, uint64_t dst_bytes, hct_tensor** out) {
  if (!rt || !name || !out) return Fail(hct::Status::InvalidArgument("hct_load_slice: null argument"));
  hct::SliceDim d;
  if (int rc = SliceDimOf(dim, &d); rc != HCT_OK) return rc;
  const hct::TensorSpec* s = rt->catalog.Find(name);
  if (!s) return Fail(hct::Status::NotFound(std::string("no tensor '") + name + "'"));
  auto t = rt->rt->LoadSlice(*s, hct::TensorSlice{d, start, length}, stream, dst, dst_bytes);
  if (!t.ok()) return Fail(t.status());
  *out = new hct_tensor{std::move(*t)};
  return Ok();
}

int hct_tensor_shape(const hct_tensor* t, int32_t* ndim, int64_t* shape) {
  if (!t || !ndim || !shape || !t->t.valid())
    return Fail(hct::Status::InvalidArgument("hct_tensor_shape: null argument"));
  const std::vector<int64_t>& sh = t->t.spec().shape;
  if (sh.size() > HCT_MAX_DIMS)
    return Fail(hct::Status::Unsupported("more than " + std::to_string(HCT_MAX_DIMS) + " dims"));
  *ndim = int32_t(sh.size());
  std::copy(sh.begin(), sh.end(), shape);
  return Ok();
}

int hct_runtime_bytes_read(const hct_runtime* rt, uint64_t* file_bytes,
                           uint64_t* hct_stored_bytes) {
  if (!rt) return Fail(hct::Status::InvalidArgument("hct_runtime_bytes_read: null runtime"));
  const hct::RuntimeStats st = rt->rt->stats();
  if (file_bytes) *file_bytes = st.bytes_resident + st.bytes_one_shot;
  if (hct_stored_bytes) *hct_stored_bytes = st.bytes_hct_stored;
  return Ok();
}

}  // extern "C"
