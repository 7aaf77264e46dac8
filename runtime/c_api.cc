// The C API (hct/hct.h) over hct::Runtime and hct::Catalog.
#include "hct/hct.h"

#include <memory>
#include <string>

#include "hct/runtime.h"

struct hct_runtime {
  std::unique_ptr<hct::Runtime> rt;
  hct::Catalog catalog;
};

struct hct_tensor {
  hct::LoadedTensor t;
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
int OpenCatalog(hct::Result<hct::Catalog> cat, hct_runtime** out) {
  if (!cat.ok()) return Fail(cat.status());
  for (const auto& s : cat->tensors())
    if (s.shape.size() > HCT_MAX_DIMS)
      return Fail(hct::Status::Unsupported("tensor '" + s.name + "' has more than " +
                                           std::to_string(HCT_MAX_DIMS) + " dimensions"));
  auto opt = hct::RuntimeOptions::FromEnv();
  if (!opt.ok()) return Fail(opt.status());
  auto rt = hct::Runtime::Create(*opt);
  if (!rt.ok()) return Fail(rt.status());
  *out = new hct_runtime{std::move(*rt), std::move(*cat)};
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
