#include "runtime/detail/source_planner.h"

#include "runtime/detail/verify.h"

namespace hct::detail {

namespace {
Status CheckShape(const TensorSpec& s) {
  uint64_t n = 1;
  for (int64_t d : s.shape) {
    if (d < 0) return Status::InvalidArgument("negative dimension").WithContext(TensorCtx(s.name));
    if (d != 0 && n > UINT64_MAX / uint64_t(d))
      return Status::OutOfRange("shape overflows 64 bits").WithContext(TensorCtx(s.name));
    n *= uint64_t(d);
  }
  auto bytes = DTypeBytes(s.dtype, n);
  if (!bytes || *bytes != s.length)
    return Status::InvalidArgument("length " + std::to_string(s.length) +
                                   " does not match shape x " + std::string(DTypeName(s.dtype)))
        .WithContext(TensorCtx(s.name));
  return Status::OK();
}

// Bytes from range.offset to the end of the last byte read: the length, or for a strided range
// (FileRange::row_bytes) up to the end of its last row's segment.
Result<uint64_t> RangeExtent(const FileRange& range, uint64_t length, const std::string& name) {
  if (!range.row_bytes) return length;
  if (range.row_pitch < range.row_bytes || length % range.row_bytes ||
      range.xxh3 || !range.block_xxh3.empty())
    return Status::InvalidArgument("strided range: rows of " + std::to_string(range.row_bytes) +
                                   " bytes every " + std::to_string(range.row_pitch) +
                                   " do not make " + std::to_string(length) +
                                   " bytes, or it carries checksums")
        .WithContext(TensorCtx(name));
  const uint64_t rows = length / range.row_bytes;
  if (rows && (rows - 1) > (UINT64_MAX - range.row_bytes) / range.row_pitch)
    return Status::OutOfRange("strided range overflows 64 bits").WithContext(TensorCtx(name));
  return rows ? (rows - 1) * range.row_pitch + range.row_bytes : 0;
}

PlannedRead Compressed(const PlannedRead& r) {
  PlannedRead c = r;
  c.kind = ReadKind::kCompressed;
  c.range = nullptr;
  c.row = nullptr;
  c.file = nullptr;
  return c;
}
}  // namespace

Result<PlannedRead> SourcePlanner::Resolve(const TensorSpec& s,
                                           std::map<std::string, bool>& leased, ReadPlan& plan) {
  if (!s.source) return Status::InvalidArgument("no source").WithContext(TensorCtx(s.name));
  const TensorSource& src = *s.source;
  PlannedRead r;
  r.spec = &s;
  r.hct = src.hct.get();
  if (!src.range) {
    if (!r.hct) return Status::InvalidArgument("no source").WithContext(TensorCtx(s.name));
    r.kind = ReadKind::kCompressed;
    return r;
  }
  r.range = &*src.range;
  if (!src.cache) return r;
  // A cache row: lease its entry file first (evict then leaves it alone, and the path keeps
  // naming the file we read); an entry that is gone falls back to the compressed source.
  auto it = leased.find(r.range->path);
  if (it == leased.end()) {
    auto lease = Lease::Acquire(r.range->path);
    if (lease.ok()) plan.leases.push_back(std::make_shared<Lease>(std::move(*lease)));
    else if (!r.hct || lease.status().code() != Code::kNotFound)
      return lease.status().WithContext("cache entry of " + TensorCtx(s.name));
    it = leased.emplace(r.range->path, lease.ok()).first;
  }
  if (!it->second) {
    ++plan.fallbacks;
    return Compressed(r);
  }
  r.row = &src;
  return r;
}

Status SourcePlanner::CheckRead(PlannedRead& r) {
  HCT_RETURN_IF_ERROR(CheckShape(*r.spec));
  const std::string& path = r.kind == ReadKind::kRange ? r.range->path : r.hct->file->path();
  auto f = files_.Open(path);
  if (!f.ok()) return f.status().WithContext(TensorCtx(r.name()));
  r.file = *f;
  if (r.kind == ReadKind::kCompressed) return Status::OK();  // chunks checked at open
  const uint64_t off = r.range->offset, size = (*f)->size;
  HCT_ASSIGN_OR_RETURN(const uint64_t len, RangeExtent(*r.range, r.length(), r.name()));
  if (off > size || len > size - off)
    return Status::OutOfRange(path + ": bytes [" + std::to_string(off) + ", " +
                              std::to_string(off + len) + ") pass the end of the file (" +
                              std::to_string(size) + " bytes)")
        .WithContext(TensorCtx(r.name()));
  return Status::OK();
}

Result<ReadPlan> SourcePlanner::Plan(std::span<const TensorSpec> specs) {
  ReadPlan plan;
  plan.reads.reserve(specs.size());
  std::map<std::string, bool> leased;
  for (const TensorSpec& s : specs) {
    HCT_ASSIGN_OR_RETURN(PlannedRead r, Resolve(s, leased, plan));
    plan.reads.push_back(r);
  }
  for (PlannedRead& r : plan.reads) HCT_RETURN_IF_ERROR(CheckRead(r));
  return plan;
}

bool SourcePlanner::CanFallBack(const ReadPlan& plan, std::span<const size_t> which) {
  for (size_t i : which)
    if (!plan.reads[i].hct) return false;
  return true;
}

Result<ReadPlan> SourcePlanner::FallBack(const ReadPlan& plan, std::span<const size_t> which) {
  ReadPlan p = plan;
  for (size_t i : which) {
    if (p.reads[i].kind == ReadKind::kCompressed) continue;
    p.reads[i] = Compressed(p.reads[i]);
    HCT_RETURN_IF_ERROR(CheckRead(p.reads[i]));
    ++p.fallbacks;
  }
  return p;
}

}  // namespace hct::detail
