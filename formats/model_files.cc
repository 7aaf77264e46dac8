// File helpers of the model readers (include/hct/detail/model_files.h).
#include "hct/detail/model_files.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "hct/detail/file.h"
#include "hct/detail/paths.h"

namespace hct::detail {
namespace fs = std::filesystem;

Result<std::string> ReadTextFile(const std::string& path) {
  HCT_ASSIGN_OR_RETURN(ReadFile in, ReadFile::Open(path));
  std::string s(in.size(), '\0');
  HCT_RETURN_IF_ERROR(in.ReadAt(0, std::as_writable_bytes(std::span(s))));
  return s;
}

std::string HctNameFor(const std::string& shard_name) {
  constexpr std::string_view kExt = ".safetensors";
  if (shard_name.size() > kExt.size() &&
      shard_name.compare(shard_name.size() - kExt.size(), kExt.size(), kExt) == 0)
    return shard_name.substr(0, shard_name.size() - kExt.size()) + ".hct";
  return shard_name + ".hct";
}

std::string SafetensorsNameFor(const std::string& hct_name) {
  if (hct_name.size() > 4 && hct_name.compare(hct_name.size() - 4, 4, ".hct") == 0)
    return hct_name.substr(0, hct_name.size() - 4) + ".safetensors";
  return hct_name + ".safetensors";
}

Result<std::vector<std::string>> ListOtherFiles(const std::string& dir,
                                                bool (*skip)(const std::string& rel)) {
  std::vector<std::string> out;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, ec), end;
  if (ec) return Status::FromErrno("opendir", dir, ec.value());
  for (; it != end; it.increment(ec)) {
    if (ec) return Status::FromErrno("readdir", dir, ec.value());
    const std::string name = it->path().filename().string();
    if (!name.empty() && name[0] == '.') {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file(ec)) continue;
    // The listed name, not the symlink's target (fs::relative resolves symlinks and turned
    // hub-cache links into "../../blobs/..." names that were then written outside the output).
    const std::string rel = RelativeInside(it->path(), dir);
    if (rel.empty()) return Status::Internal(it->path().string() + ": listed outside " + dir);
    if (rel.find(kTempMarker) != std::string::npos) continue;  // someone's temporary file
    if (skip && skip(rel)) continue;
    out.push_back(rel);
  }
  std::sort(out.begin(), out.end());
  return out;
}

Result<uint64_t> BytesOf(DType dtype, uint64_t n, std::string_view what) {
  const auto b = DTypeBytes(dtype, n);
  if (!b)
    return Status::Corruption(std::string(what) + ": " + std::to_string(n) + " elements of " +
                              std::string(DTypeName(dtype)) + " are not whole bytes");
  return *b;
}

}  // namespace hct::detail
