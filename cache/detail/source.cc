#include "cache/detail/source.h"

#include <sys/stat.h>

#include <filesystem>
#include <set>

#include "hct/model.h"

namespace hct::detail {

namespace fs = std::filesystem;

Status StatFile(const std::string& path, uint64_t* size, int64_t* mtime_ns) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return Status::FromErrno("stat", path, errno);
  *size = static_cast<uint64_t>(st.st_size);
  *mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  return Status::OK();
}

void MakeStemsUnique(std::vector<SourceFile>& files) {
  std::set<std::string> used;
  for (const SourceFile& f : files) used.insert(f.stem);
  std::set<std::string> seen;
  for (SourceFile& f : files) {
    if (seen.insert(f.stem).second) continue;
    std::string cand;
    for (int i = 2; cand.empty() || used.count(cand); ++i) cand = f.stem + "-" + std::to_string(i);
    used.insert(cand);
    seen.insert(cand);
    f.stem = cand;
  }
}

Result<std::unique_ptr<TensorSource>> OpenSource(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::absolute(path, ec);
  if (ec || !fs::exists(p, ec))
    return Status::NotFound(path + ": no such file or folder");
  // The one model-kind rule (hct/model.h): a folder with both .hct and .safetensors is HCT.
  switch (DetectModelKind(p.string())) {
    case ModelKind::kHct: return OpenHctSource(p.string());
    case ModelKind::kSafetensors: return OpenSafetensorsSource(p.string());
    case ModelKind::kNone: break;
  }
  return Status::NotFound(path + ": holds no .safetensors or .hct model files");
}

}  // namespace hct::detail
