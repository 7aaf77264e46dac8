// runtime/detail/engine.h: the load engine behind hct::Runtime (internal). It owns the parts
// -- the open files, the raw staging ring, the copy streams, the io threads, the resident
// files and the compressed loader -- and orchestrates one load: plan the sources, pick the
// destination, order the copy streams after the caller, run the resident / one-shot /
// compressed loaders, fall back to the compressed sources after a corrupt cache entry, join
// the caller's stream and hand out the tensors.
#pragma once

#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "hct/runtime.h"
#include "runtime/detail/compressed.h"
#include "runtime/detail/device.h"
#include "runtime/detail/file_reader.h"
#include "runtime/detail/load_env.h"
#include "runtime/detail/resident.h"
#include "runtime/detail/source_planner.h"
#include "runtime/detail/staging_ring.h"
#include "runtime/detail/worker_pool.h"

namespace hct {
// What only the runtime holds: the right to make a LoadedTensor (hct/runtime.h).
class LoadedTensor::Key {};
}  // namespace hct

namespace hct::detail {

class Engine {
 public:
  static Result<std::unique_ptr<Engine>> Create(const RuntimeOptions& options);
  ~Engine();

  Placement placement() const { return placement_; }
  int device() const { return device_; }
  const RuntimeOptions& options() const { return opt_; }

  Result<std::vector<LoadedTensor>> LoadMany(std::span<const TensorSpec> specs,
                                             StreamHandle stream, const LoadTarget& target);
  Result<std::shared_ptr<void>> Allocate(uint64_t bytes);
  Status Prepare();
  Status Prepare(std::span<const TensorSpec> specs);
  Status MakeResident(const std::string& path);
  bool IsResident(const std::string& path) const;
  Status ReleaseResident();
  RuntimeStats stats() const;

 private:
  Engine(const RuntimeOptions& options, Placement placement, int device);
  Status Init();
  Result<std::shared_ptr<Buffer>> Target(const LoadTarget& target, uint64_t total);
  Status Read(const ReadPlan& plan, const Destination& dst, std::vector<size_t>* res,
              std::vector<size_t>* one);
  Status ReadAll(ReadPlan& plan, const Destination& dst, std::vector<size_t>* served);
  void Record(const ReadPlan& plan, std::span<const size_t> served);

  const RuntimeOptions opt_;
  const Placement placement_;
  const int device_;
  mutable std::mutex mu_;  // one load at a time; guards everything below
  RuntimeStats stats_;
  CopyStreams streams_;
  std::unique_ptr<WorkerPool> io_;
  std::unique_ptr<LoadEnv> env_;
  FileTable files_;
  SourcePlanner planner_{files_};
  std::unique_ptr<StagingRing> ring_;
  std::unique_ptr<ResidentFiles> resident_;
  std::unique_ptr<CompressedLoader> compressed_;
};

}  // namespace hct::detail
