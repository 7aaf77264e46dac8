#include "runtime/detail/resident.h"

#include <sys/mman.h>
#include <sys/resource.h>
#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "runtime/detail/verify.h"

#if HCT_WITH_CUDA
#include "hct/detail/check_cuda.h"
#endif

namespace hct::detail {

// Releases least recently used files of earlier loads until `bytes` more fit the budget. Their
// last copies may still be in flight: the copy streams are drained first (rare: only when the
// budget is full).
Status ResidentFiles::MakeRoom(const std::string& path, uint64_t bytes) {
  const uint64_t budget = env_.opt.resident_budget;
  auto fits = [&] { return used_ + bytes <= budget; };
  if (fits()) return Status::OK();
  bool drained = false;
  while (!fits()) {
    auto lru = map_.end();
    for (auto it = map_.begin(); it != map_.end(); ++it)
      if (it->second.last_use < tick_ && (lru == map_.end() || it->second.last_use < lru->second.last_use))
        lru = it;
    if (lru == map_.end()) break;  // every resident file is used by this load
    if (!drained) env_.streams.Synchronize(), drained = true;
    HCT_RETURN_IF_ERROR(Unmap(lru->first, lru->second));
    map_.erase(lru);
    ++env_.stats.resident_evictions;
  }
  env_.stats.resident_files = map_.size();
  if (fits()) return Status::OK();
  return Status::ResourceExhausted(path + ": " + std::to_string(bytes) +
                                   " bytes do not fit the resident budget (" +
                                   std::to_string(budget - used_) + " of " +
                                   std::to_string(budget) + " left" +
                                   (map_.empty() ? "" : " beside the files of this load") + ")");
}

Status ResidentFiles::Add(const std::string& path) {
  if (auto it = map_.find(path); it != map_.end()) {
    it->second.last_use = tick_;
    return Status::OK();
  }
  const double t0 = NowSeconds();
  HCT_ASSIGN_OR_RETURN(const OpenFile* f, files_.Open(path));
  const uint64_t map_bytes = AlignUp(std::max<uint64_t>(f->size, 1));
  HCT_RETURN_IF_ERROR(MakeRoom(path, map_bytes));
  File r;
  r.size = f->size;
  r.map_bytes = map_bytes;
  r.last_use = tick_;
  // Host placement: MAP_POPULATE so that loads are memcpys without page faults.
  const int flags = MAP_SHARED | (env_.gpu() ? 0 : MAP_POPULATE);
  r.map = ::mmap(nullptr, map_bytes, PROT_READ, flags, f->fd, 0);
  if (r.map == MAP_FAILED) return Status::FromErrno("mmap", path, errno);
#if HCT_WITH_CUDA
  if (env_.gpu()) {
    DeviceGuard g(env_.device);
    Status s = HCT_CALL_STATUS(cuda, cudaHostRegister(r.map, map_bytes, cudaHostRegisterReadOnly));
    if (!s.ok()) {
      (void)cudaGetLastError();
      ::munmap(r.map, map_bytes);
      struct rlimit rl {};
      std::string lim = "unknown";
      if (::getrlimit(RLIMIT_MEMLOCK, &rl) == 0)
        lim = rl.rlim_cur == RLIM_INFINITY ? "unlimited" : std::to_string(rl.rlim_cur);
      return Status(s.code(), path + ": registering the mapping failed (RLIMIT_MEMLOCK " + lim +
                                  "): " + s.message());
    }
    r.registered = true;
    env_.stats.registered_bytes += map_bytes;
  }
#endif
  used_ += map_bytes;
  map_[path] = r;
  env_.stats.resident_files = map_.size();
  CountSetup(env_.stats, t0, r.registered ? map_bytes : 0);
  return Status::OK();
}

bool ResidentFiles::Use(const std::string& path) {
  if (auto it = map_.find(path); it != map_.end()) {
    it->second.last_use = tick_;
    return true;
  }
  if (env_.opt.resident_budget == 0 || refused_.count(path)) return false;
  Status s = Add(path);
  if (s.ok()) return true;
  // Not fitting beside this load's files is temporary; anything else is for good.
  auto f = files_.Open(path);
  const bool larger = f.ok() && AlignUp(std::max<uint64_t>((*f)->size, 1)) > env_.opt.resident_budget;
  if (s.code() != Code::kResourceExhausted || larger) refused_.insert(path);
  env_.stats.resident_fallback = path + ": " + s.ToString();
  return false;
}

const std::byte* ResidentFiles::Data(const std::string& path) const {
  auto it = map_.find(path);
  return it == map_.end() ? nullptr : static_cast<const std::byte*>(it->second.map);
}

bool ResidentFiles::Verified(const std::string& path, uint64_t first_chunk_offset) const {
  return verified_.count({path, first_chunk_offset, 0}) != 0;
}

void ResidentFiles::MarkVerified(const std::string& path, uint64_t first_chunk_offset) {
  verified_.insert({path, first_chunk_offset, 0});
}

Status ResidentFiles::Unmap(const std::string& path, File& r) {
  Status st;
#if HCT_WITH_CUDA
  if (r.registered) {
    DeviceGuard g(env_.device);
    st = HCT_CALL_STATUS(cuda, cudaHostUnregister(r.map));
    if (!st.ok()) st = st.WithContext(path);
    env_.stats.registered_bytes -= r.map_bytes;
  }
#endif
  ::munmap(r.map, r.map_bytes);
  used_ -= r.map_bytes;
  // What was verified in this residency is forgotten with it.
  for (auto it = verified_.lower_bound({path, 0, 0});
       it != verified_.end() && std::get<0>(*it) == path;)
    it = verified_.erase(it);
  return st;
}

Status ResidentFiles::Release() {
  Status first;
  for (auto& [path, r] : map_) {
    Status s = Unmap(path, r);
    if (!s.ok() && first.ok()) first = s;
  }
  map_.clear();
  verified_.clear();
  used_ = 0;
  env_.stats.registered_bytes = 0;
  env_.stats.resident_files = 0;
  return first;
}

const std::byte* ResidentFiles::At(const PlannedRead& r) const {
  return static_cast<const std::byte*>(map_.at(r.range->path).map) + r.range->offset;
}

// Verifies each tensor the first time it is read from its mapping, in parallel over tensors and
// over blocks of a tensor when it has block checksums; host placement also copies here.
Status ResidentFiles::Verify(const ReadPlan& plan, std::span<const size_t> which,
                             const Destination& dst) {
  std::vector<size_t> todo;
  if (env_.opt.verify) {
    for (size_t i : which) {
      const PlannedRead& r = plan.reads[i];
      if ((r.range->xxh3 || !r.range->block_xxh3.empty()) &&
          !verified_.count({r.range->path, r.range->offset, r.length()}))
        todo.push_back(i);
    }
  }
  struct Unit {
    size_t i;           // index into plan.reads
    uint64_t off, len;  // tensor-relative
    bool block;
  };
  std::vector<Unit> units;
  for (size_t i : todo) {
    const PlannedRead& r = plan.reads[i];
    if (BlockPieceBytes(*r.range, r.length(), true, UINT64_MAX / 2)) {
      for (uint64_t o = 0; o < r.length(); o += r.range->block_bytes)
        units.push_back({i, o, std::min(r.range->block_bytes, r.length() - o), true});
    } else if (r.range->xxh3) {
      units.push_back({i, 0, r.length(), false});
    }
  }
  const bool host = !env_.gpu();
  std::vector<Status> errs(units.size());
  if (!units.empty() || host) {
    std::atomic<size_t> next{0}, next_copy{0};
    env_.io.Run([&](int) {
      for (size_t u; (u = next.fetch_add(1)) < units.size();) {
        const Unit& un = units[u];
        const PlannedRead& r = plan.reads[un.i];
        errs[u] = un.block ? CheckBlocks(r.name(), *r.range, un.off, At(r) + un.off, un.len)
                           : CheckWhole(r.name(), *r.range, At(r), r.length(), *r.range->xxh3);
      }
      if (!host) return;
      for (size_t k; (k = next_copy.fetch_add(1)) < which.size();)
        std::memcpy(dst.at(which[k]), At(plan.reads[which[k]]), plan.reads[which[k]].length());
    });
  }
  for (const Status& e : errs) HCT_RETURN_IF_ERROR(e);
  for (size_t i : todo) {
    const PlannedRead& r = plan.reads[i];
    verified_.insert({r.range->path, r.range->offset, r.length()});
    env_.stats.bytes_verified += r.length();
  }
  return Status::OK();
}

Status ResidentFiles::Load(const ReadPlan& plan, std::span<const size_t> which,
                           const Destination& dst) {
  HCT_RETURN_IF_ERROR(Verify(plan, which, dst));
#if HCT_WITH_CUDA
  if (env_.gpu()) {
    size_t k = 0;
    for (size_t i : which) {
      const PlannedRead& r = plan.reads[i];
      if (r.length() == 0) continue;
      auto st = static_cast<cudaStream_t>(env_.streams.at(k++));
      HCT_CHECK(cuda, cudaMemcpyAsync(dst.at(i), At(r), r.length(), cudaMemcpyHostToDevice, st));
    }
  }
#endif
  for (size_t i : which) {
    ++env_.stats.loads_resident;
    env_.stats.bytes_resident += plan.reads[i].length();
  }
  return Status::OK();
}

}  // namespace hct::detail
