// hct::Runtime over the engine (runtime/detail/engine.h), TensorSpec's source queries,
// LoadedTensor and the DLPack export.
#include "hct/runtime.h"

#include "runtime/detail/engine.h"
#include "runtime/detail/sources.h"

#if HCT_WITH_CUDA
#include <cuda_runtime_api.h>

#include "hct/detail/check_cuda.h"
#endif

namespace hct {

// ----------------------------------------------------------------------------- TensorSpec
std::shared_ptr<const TensorSource> FileSource(FileRange range) {
  auto s = std::make_shared<TensorSource>();
  s->range = std::move(range);
  return s;
}

const FileRange* TensorSpec::file() const {
  return source && source->range ? &*source->range : nullptr;
}

const std::string& TensorSpec::path() const {
  static const std::string kNone;
  if (const FileRange* r = file()) return r->path;
  return source && source->hct ? source->hct->file->path() : kNone;
}

bool TensorSpec::from_cache() const { return source && source->range && source->cache; }
bool TensorSpec::has_compressed_source() const { return source && source->hct; }

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
Status LoadedTensor::Wait() const {
#if HCT_WITH_CUDA
  if (event_) HCT_CHECK(cuda, cudaEventSynchronize(static_cast<cudaEvent_t>(event_)));
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
  std::shared_ptr<void> keep;  // the load's state: memory, event, leases
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
  ctx->keep = keep_;
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
namespace {
class EngineRuntime final : public Runtime {
 public:
  explicit EngineRuntime(std::unique_ptr<detail::Engine> e) : e_(std::move(e)) {}
  Placement placement() const override { return e_->placement(); }
  int device() const override { return e_->device(); }
  const RuntimeOptions& options() const override { return e_->options(); }
  Result<std::vector<LoadedTensor>> LoadInto(std::span<const TensorSpec> specs,
                                             StreamHandle stream,
                                             const LoadTarget& target) override {
    return e_->LoadMany(specs, stream, target);
  }
  Result<std::shared_ptr<void>> Allocate(uint64_t bytes) override { return e_->Allocate(bytes); }
  Status Prepare() override { return e_->Prepare(); }
  Status Prepare(std::span<const TensorSpec> specs) override { return e_->Prepare(specs); }
  Status MakeResident(const std::string& path) override { return e_->MakeResident(path); }
  bool IsResident(const std::string& path) const override { return e_->IsResident(path); }
  Status ReleaseResident() override { return e_->ReleaseResident(); }
  RuntimeStats stats() const override { return e_->stats(); }

 private:
  std::unique_ptr<detail::Engine> e_;
};
}  // namespace

Result<std::unique_ptr<Runtime>> Runtime::Create(const RuntimeOptions& options) {
  HCT_ASSIGN_OR_RETURN(auto e, detail::Engine::Create(options));
  return std::unique_ptr<Runtime>(new EngineRuntime(std::move(e)));
}

Result<LoadedTensor> Runtime::Load(const TensorSpec& spec, StreamHandle stream, void* dst,
                                   uint64_t dst_bytes) {
  HCT_ASSIGN_OR_RETURN(auto v, LoadMany({&spec, 1}, stream, dst, dst_bytes));
  return std::move(v[0]);
}

Result<std::vector<LoadedTensor>> Runtime::LoadMany(std::span<const TensorSpec> specs,
                                                    StreamHandle stream, void* dst,
                                                    uint64_t dst_bytes) {
  LoadTarget t;
  t.dst = dst;
  t.dst_bytes = dst_bytes;
  return LoadInto(specs, stream, t);
}

}  // namespace hct
