// File and folder helpers of the pipeline (convert/detail/convert_internal.h).
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <system_error>
#include <thread>

#include <nlohmann/json.hpp>

#include "convert/detail/convert_internal.h"
#include "hct/detail/file.h"
#include "hct/detail/paths.h"

namespace hct::detail {
namespace fs = std::filesystem;

namespace {
Status FsError(std::string_view op, const std::string& path, const std::error_code& ec) {
  return Status::FromErrno(op, path, ec.value());
}
}  // namespace

DctqTransform ParseDctqTransform(std::string_view params_json) {
  DctqTransform t;
  const nlohmann::json p = nlohmann::json::parse(params_json, nullptr, /*allow_exceptions=*/false);
  if (!p.is_object()) return t;
  auto str = p.find("transform");
  if (str == p.end() || !str->is_string()) return t;
  t.transform = str->get<std::string>();
  auto tile = [&](const char* key) {
    auto it = p.find(key);
    return it != p.end() && it->is_number_integer() ? it->get<int>() : 0;
  };
  t.tile_r = tile("tile_r");
  t.tile_c = tile("tile_c");
  return t;
}

int ResolveThreads(int threads) {
  if (threads > 0) return threads;
  return std::max(1u, std::thread::hardware_concurrency());
}

Result<StagingDir> StagingDir::Create(const std::string& final_path, bool force) {
  if (final_path.empty()) return Status::InvalidArgument("output path is empty");
  std::string fin = final_path;
  while (fin.size() > 1 && fin.back() == '/') fin.pop_back();
  std::error_code ec;
  if (fs::symlink_status(fin, ec).type() != fs::file_type::not_found && !ec && !force)
    return Status::AlreadyExists(fin + ": output exists (use --force to replace it)");
  const fs::path parent = fs::path(fin).parent_path();
  if (!parent.empty()) {
    fs::create_directories(parent, ec);
    if (ec) return FsError("mkdir", parent.string(), ec);
  }
  StagingDir d;
  d.final_ = fin;
  d.force_ = force;
  d.tmp_ = fin + kTempMarker + std::to_string(::getpid());
  fs::remove_all(d.tmp_, ec);  // a leftover of an earlier process with our pid
  if (!fs::create_directory(d.tmp_, ec) || ec) return FsError("mkdir", d.tmp_, ec);
  d.committed_ = false;
  return d;
}

StagingDir::StagingDir(StagingDir&& o) noexcept
    : tmp_(std::move(o.tmp_)),
      final_(std::move(o.final_)),
      force_(o.force_),
      committed_(o.committed_) {
  o.committed_ = true;
}

StagingDir& StagingDir::operator=(StagingDir&& o) noexcept {
  if (this != &o) {
    this->~StagingDir();
    new (this) StagingDir(std::move(o));
  }
  return *this;
}

StagingDir::~StagingDir() {
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(tmp_, ec);
}

Status StagingDir::Commit() {
  std::error_code ec;
  const bool exists = fs::symlink_status(final_, ec).type() != fs::file_type::not_found;
  std::string old;
  if (exists) {
    if (!force_)
      return Status::AlreadyExists(final_ + ": output exists (use --force to replace it)");
    old = final_ + ".old" + kTempMarker + std::to_string(::getpid());
    fs::remove_all(old, ec);
    fs::rename(final_, old, ec);
    if (ec) return FsError("rename", final_, ec);
  }
  fs::rename(tmp_, final_, ec);
  if (ec) {
    const Status s = FsError("rename " + tmp_ + " ->", final_, ec);
    if (!old.empty()) fs::rename(old, final_, ec);  // put the previous output back
    return s;
  }
  committed_ = true;
  if (!old.empty()) fs::remove_all(old, ec);
  fs::path parent = fs::path(final_).parent_path();
  return SyncDir(parent.empty() ? "." : parent.string());
}

Status CheckOutputOutsideInput(const std::string& input, const std::string& output) {
  if (output.empty()) return Status::OK();  // StagingDir::Create names that error
  if (OutputOverlapsInput(input, output))
    return Status::InvalidArgument(output + ": output overlaps the input " + input);
  return Status::OK();
}

Status CheckOutputHoldsNoInputFile(const std::string& dir, const std::vector<std::string>& rels,
                                   const std::string& output) {
  if (output.empty()) return Status::OK();
  for (const std::string& rel : rels) {
    const std::string file = (fs::path(dir) / rel).string();
    if (OutputOverlapsInput(file, output))
      return Status::InvalidArgument(output + ": output overlaps the input file " + file);
  }
  return Status::OK();
}

Status CopyFileSynced(const std::string& src, const std::string& dst) {
  std::error_code ec;
  const fs::path parent = fs::path(dst).parent_path();
  if (!parent.empty()) {
    fs::create_directories(parent, ec);
    if (ec) return FsError("mkdir", parent.string(), ec);
  }
  HCT_ASSIGN_OR_RETURN(ReadFile in, ReadFile::Open(src));
  HCT_ASSIGN_OR_RETURN(AtomicFile out, AtomicFile::Create(dst, /*overwrite=*/false));
  std::vector<std::byte> buf(1 << 20);
  for (uint64_t off = 0; off < in.size();) {
    const uint64_t n = std::min<uint64_t>(buf.size(), in.size() - off);
    HCT_RETURN_IF_ERROR(in.ReadAt(off, std::span(buf).first(n)));
    HCT_RETURN_IF_ERROR(out.Append(std::span<const std::byte>(buf).first(n)));
    off += n;
  }
  return out.Commit();
}

Status WriteTextFile(const std::string& path, std::string_view text) {
  HCT_ASSIGN_OR_RETURN(AtomicFile out, AtomicFile::Create(path, /*overwrite=*/false));
  HCT_RETURN_IF_ERROR(out.Append(text.data(), text.size()));
  return out.Commit();
}

void DropPages(const void* p, uint64_t n) {
  if (n == 0) return;
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t b = reinterpret_cast<uint64_t>(p) & ~(page - 1);
  const uint64_t e = reinterpret_cast<uint64_t>(p) + n;
  ::madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);  // best effort
}

}  // namespace hct::detail
