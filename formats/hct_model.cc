// HctModel (HCT model folders) and DetectModelKind, the one model-kind rule (hct/model.h).
#include "hct/model.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <system_error>

#include "hct/detail/file.h"
#include "hct/detail/model_files.h"
#include "hct/detail/paths.h"

namespace hct {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

bool EndsWith(std::string_view s, std::string_view suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

bool SkipForHct(const std::string& rel) {
  return EndsWith(rel, ".hct") || rel == kHctModelIndexName;
}

bool HasHctMagic(const std::string& path) {
  Result<detail::ReadFile> f = detail::ReadFile::Open(path);
  if (!f.ok() || f->size() < sizeof(kHctMagic)) return false;
  unsigned char magic[sizeof(kHctMagic)];
  if (!f->ReadAt(0, std::as_writable_bytes(std::span(magic))).ok()) return false;
  return std::equal(magic, magic + sizeof(kHctMagic), kHctMagic);
}

}  // namespace

ModelKind DetectModelKind(const std::string& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) return ModelKind::kNone;
  if (!fs::is_directory(st)) {
    const bool hct = EndsWith(fs::path(path).filename().string(), ".hct") || HasHctMagic(path);
    return hct ? ModelKind::kHct : ModelKind::kSafetensors;
  }
  // An HCT model index may name files in subfolders ("a/model.hct"): it decides on its own.
  if (fs::exists(fs::path(path) / std::string(kHctModelIndexName), ec)) return ModelKind::kHct;
  bool any_st = false;
  for (const fs::directory_entry& e : fs::directory_iterator(path, ec)) {
    std::error_code fe;  // an unrelated broken link or loop is skipped
    if (!e.is_regular_file(fe)) continue;
    const std::string name = e.path().filename().string();
    if (EndsWith(name, ".hct")) return ModelKind::kHct;  // HCT wins over safetensors
    any_st = any_st || EndsWith(name, ".safetensors");
  }
  return any_st ? ModelKind::kSafetensors : ModelKind::kNone;
}

Result<HctModel> HctModel::Open(const std::string& path) {
  HctModel m;
  json index;  // the parsed model.hct.index.json, if any
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || st.type() == fs::file_type::not_found)
    return Status::NotFound(path + ": no such file or folder");
  if (fs::is_regular_file(st)) {
    m.dir_ = fs::path(path).parent_path().string();
    if (m.dir_.empty()) m.dir_ = ".";
    HCT_ASSIGN_OR_RETURN(HctFile f, HctFile::Open(path));
    m.names_.push_back(fs::path(path).filename().string());
    m.files_.push_back(std::move(f));
  } else {
    m.dir_ = path;
    const std::string index_path = (fs::path(path) / kHctModelIndexName).string();
    if (fs::exists(index_path, ec)) {
      HCT_ASSIGN_OR_RETURN(std::string text, detail::ReadTextFile(index_path));
      index = json::parse(text, nullptr, /*allow_exceptions=*/false);
      if (index.is_discarded() || !index.is_object() ||
          index.value("format", "") != "hct-model" || !index.contains("files") ||
          !index["files"].is_array() || !index.contains("weight_map") ||
          !index["weight_map"].is_object())
        return Status::Corruption(index_path + ": not an HCT model index");
      if (index.value("version", 0) != 1)
        return Status::Unsupported(index_path + ": index version " + index["version"].dump() +
                                   " (this build reads 1)");
      if (index.contains("metadata")) m.index_metadata_json_ = index["metadata"].dump();
      for (const json& f : index["files"]) {
        if (!f.is_object() || !f.contains("file") || !f["file"].is_string())
          return Status::Corruption(index_path + ": bad \"files\" entry " + f.dump());
        const std::string name = f["file"].get<std::string>();
        if (!detail::IsContainedRelativePath(name))
          return Status::Corruption(index_path + ": unsafe file name '" + name + "'");
        HCT_ASSIGN_OR_RETURN(HctFile hf, HctFile::Open((fs::path(path) / name).string()));
        m.names_.push_back(name);
        m.files_.push_back(std::move(hf));
      }
    } else {
      fs::directory_iterator it(path, ec), end;
      if (ec) return Status::FromErrno("opendir", path, ec.value());
      std::vector<std::string> names;
      for (; it != end; it.increment(ec))
        if (it->is_regular_file() && EndsWith(it->path().filename().string(), ".hct"))
          names.push_back(it->path().filename().string());
      std::sort(names.begin(), names.end());
      if (names.empty()) return Status::NotFound(path + ": no .hct files and no index");
      for (const std::string& name : names) {
        HCT_ASSIGN_OR_RETURN(HctFile hf, HctFile::Open((fs::path(path) / name).string()));
        m.names_.push_back(name);
        m.files_.push_back(std::move(hf));
      }
    }
    HCT_ASSIGN_OR_RETURN(m.other_files_, detail::ListOtherFiles(path, &SkipForHct));
  }
  for (size_t i = 0; i < m.files_.size(); ++i) {
    auto it = m.files_[i].metadata().find("source_file");
    m.sources_.push_back(
        it != m.files_[i].metadata().end() ? it->second : detail::SafetensorsNameFor(m.names_[i]));
    for (const TensorEntry& e : m.files_[i].tensors()) {
      if (!m.by_name_.emplace(e.name, m.refs_.size()).second)
        return Status::Corruption(m.files_[i].path() + ": tensor '" + e.name +
                                  "' is also in another file of the model");
      m.refs_.push_back({i, &e});
    }
  }
  if (!index.empty()) {
    const std::string index_path = (fs::path(path) / kHctModelIndexName).string();
    const json& wm = index["weight_map"];
    for (auto it = wm.begin(); it != wm.end(); ++it) {
      const Ref* r = m.Find(it.key());
      if (!r || !it.value().is_string() || m.names_[r->file] != it.value().get<std::string>())
        return Status::Corruption(index_path + ": tensor '" + it.key() + "' is not in " +
                                  it.value().dump());
    }
    if (wm.size() != m.refs_.size())
      return Status::Corruption(index_path + ": weight_map lists " + std::to_string(wm.size()) +
                                " tensors, the files hold " + std::to_string(m.refs_.size()));
  }
  return m;
}

const HctModel::Ref* HctModel::Find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &refs_[it->second];
}


}  // namespace hct
