// Hugging Face model folders: single-file, sharded with an index, or loose *.safetensors files.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <system_error>
#include <utility>

#include "hct/detail/paths.h"
#include "hct/safetensors.h"

namespace hct {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kIndexSuffix = ".safetensors.index.json";
constexpr std::string_view kWeightSuffix = ".safetensors";
constexpr uint64_t kMaxIndexBytes = 256u << 20;

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

Result<std::string> ReadSmallFile(const std::string& path) {
  std::error_code ec;
  uint64_t size = fs::file_size(path, ec);
  if (ec) return Status::IOError("stat " + path + ": " + ec.message());
  if (size > kMaxIndexBytes)
    return Status::Corruption(path + ": " + std::to_string(size) +
                              " bytes, too large for an index");
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IOError("open " + path + ": cannot read");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Shard names in an index must be plain files of the folder: no path escapes.
bool IsPlainFileName(const std::string& s) {
  return !s.empty() && s != "." && s != ".." && s.find('/') == std::string::npos &&
         s.find('\0') == std::string::npos;
}

}  // namespace

const ModelTensor* ModelFolder::Find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

Result<ModelFolder> ModelFolder::Open(const std::string& path, SafetensorsAccess access) {
  std::error_code ec;
  ModelFolder mf;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) return Status::NotFound(path + ": no such file or folder");

  // Weight files (relative names), with the tensors the index assigns to each.
  std::vector<std::string> weight_files;
  std::map<std::string, std::string, std::less<>> weight_map;  // tensor -> shard, from the index
  std::set<std::string> present_weights;                       // *.safetensors in the folder

  if (fs::is_regular_file(st)) {
    fs::path p(path);
    mf.dir_ = p.parent_path().empty() ? "." : p.parent_path().string();
    weight_files.push_back(p.filename().string());
  } else if (fs::is_directory(st)) {
    mf.dir_ = path;
    std::vector<std::string> indexes;
    for (const fs::directory_entry& e : fs::directory_iterator(path, ec)) {
      const std::string name = e.path().filename().string();
      if (name.empty() || name[0] == '.') continue;
      std::error_code ec2;
      if (!e.is_regular_file(ec2)) continue;  // follows symlinks (HF cache snapshots)
      if (EndsWith(name, kIndexSuffix))
        indexes.push_back(name);
      else if (EndsWith(name, kWeightSuffix))
        present_weights.insert(name);
    }
    if (ec) return Status::IOError("list " + path + ": " + ec.message());
    std::sort(indexes.begin(), indexes.end());
    std::string index;
    if (std::find(indexes.begin(), indexes.end(), "model.safetensors.index.json") != indexes.end())
      index = "model.safetensors.index.json";
    else if (indexes.size() == 1)
      index = indexes[0];
    else if (indexes.size() > 1)
      return Status::InvalidArgument(path + ": several safetensors indexes (" + indexes[0] + ", " +
                                     indexes[1] + "...) and no model.safetensors.index.json");

    if (!index.empty()) {
      mf.index_path_ = (fs::path(path) / index).string();
      HCT_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(mf.index_path_));
      nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() || !j.is_object())
        return Status::Corruption(mf.index_path_ + ": not a JSON object");
      if (j.contains("metadata")) mf.index_metadata_json_ = j["metadata"].dump();
      if (!j.contains("weight_map") || !j["weight_map"].is_object())
        return Status::Corruption(mf.index_path_ + ": no \"weight_map\" object");
      std::set<std::string> shards;
      for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
        if (!it.value().is_string() || !IsPlainFileName(it.value().get<std::string>()))
          return Status::Corruption(mf.index_path_ + ": tensor '" + it.key() +
                                    "': shard is not a file name of the folder");
        weight_map.emplace(it.key(), it.value().get<std::string>());
        shards.insert(it.value().get<std::string>());
      }
      for (const std::string& s : shards) {
        if (!present_weights.count(s)) {
          std::string example;
          for (const auto& [t, sh] : weight_map)
            if (sh == s) {
              example = t;
              break;
            }
          return Status::NotFound(mf.index_path_ + ": shard '" + s + "' (holding tensor '" +
                                  example + "') is missing");
        }
      }
      weight_files.assign(shards.begin(), shards.end());
      for (const std::string& w : present_weights)
        if (!shards.count(w)) mf.unreferenced_.push_back(w);
    } else {
      weight_files.assign(present_weights.begin(), present_weights.end());
    }
    if (weight_files.empty())
      return Status::NotFound(path + ": no *.safetensors files in the folder");

    // Everything else is copied by converters.
    std::set<std::string> skip(weight_files.begin(), weight_files.end());
    skip.insert(mf.unreferenced_.begin(), mf.unreferenced_.end());
    if (!index.empty()) skip.insert(index);
    auto rit = fs::recursive_directory_iterator(path, ec);
    if (ec) return Status::IOError("list " + path + ": " + ec.message());
    for (; rit != fs::recursive_directory_iterator(); rit.increment(ec)) {
      if (ec) return Status::IOError("list " + path + ": " + ec.message());
      const std::string name = rit->path().filename().string();
      if (!name.empty() && name[0] == '.') {
        if (rit->is_directory()) rit.disable_recursion_pending();
        continue;
      }
      std::error_code ec2;
      if (!rit->is_regular_file(ec2)) continue;
      // The name as listed, not where a symlink points (hub-cache snapshots link into
      // ../../blobs/): converters copy it to <output>/<rel>, which must stay in the output.
      const std::string rel = detail::RelativeInside(rit->path(), path);
      if (rel.empty()) return Status::Internal(rit->path().string() + ": listed outside " + path);
      if (!skip.count(rel)) mf.other_files_.push_back(rel);
    }
    std::sort(mf.other_files_.begin(), mf.other_files_.end());
  } else {
    return Status::InvalidArgument(path + ": neither a folder nor a regular file");
  }

  std::sort(weight_files.begin(), weight_files.end());
  for (const std::string& w : weight_files) {
    HCT_ASSIGN_OR_RETURN(SafetensorsFile f,
                         SafetensorsFile::Open((fs::path(mf.dir_) / w).string(), access));
    mf.shard_names_.push_back(w);
    mf.shards_.push_back(std::move(f));
  }

  for (size_t s = 0; s < mf.shards_.size(); ++s) {
    const SafetensorsFile& f = mf.shards_[s];
    for (size_t i : f.data_order()) {
      const TensorInfo& t = f.tensors()[i];
      auto [it, inserted] = mf.by_name_.emplace(t.name, mf.tensors_.size());
      if (!inserted)
        return Status::Corruption(mf.dir_ + ": tensor '" + t.name + "' is in two shards: '" +
                                  mf.shard_names_[mf.tensors_[it->second].shard] + "' and '" +
                                  mf.shard_names_[s] + "'");
      mf.tensors_.push_back(ModelTensor{s, t});
    }
  }
  // Index checks after the two-shard check, so a duplicate is reported as such.
  if (!mf.index_path_.empty()) {
    for (const ModelTensor& mt : mf.tensors_) {
      const std::string& shard = mf.shard_names_[mt.shard];
      auto w = weight_map.find(mt.info.name);
      if (w == weight_map.end())
        return Status::Corruption(mf.index_path_ + ": tensor '" + mt.info.name + "' of shard '" +
                                  shard + "' is not in the index");
      if (w->second != shard)
        return Status::Corruption(mf.index_path_ + ": tensor '" + mt.info.name + "' is in shard '" +
                                  shard + "' but the index maps it to '" + w->second + "'");
    }
  }
  for (const auto& [t, shard] : weight_map)
    if (!mf.by_name_.count(t))
      return Status::Corruption(mf.index_path_ + ": tensor '" + t + "' is mapped to shard '" +
                                shard + "' but the shard does not contain it");
  return mf;
}

}  // namespace hct
