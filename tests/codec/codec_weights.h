// Test/bench helper: a minimal safetensors reader over an mmap, for the codec measurements on
// /work/shared/weights (the project's real reader lives in hct::formats).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hct/codec.h"
#include "hct/detail/file.h"

namespace hct::testing {

struct StTensor {
  std::string name;
  DType dtype;
  std::vector<uint64_t> shape;
  std::span<const std::byte> data;
  TensorView view() const { return {data, dtype, shape}; }
  uint64_t elements() const {
    uint64_t n = 1;
    for (uint64_t d : shape) n *= d;
    return n;
  }
};

struct StFile {
  detail::MappedFile file;
  std::vector<StTensor> tensors;
};

inline Result<StFile> LoadSafetensors(const std::string& path) {
  StFile f;
  HCT_ASSIGN_OR_RETURN(f.file, detail::MappedFile::Open(path));
  if (f.file.size() < 8) return Status::Corruption(path + ": too short");
  uint64_t hlen;
  std::memcpy(&hlen, f.file.data(), 8);
  if (hlen > f.file.size() - 8) return Status::Corruption(path + ": bad header length");
  const char* h = reinterpret_cast<const char*>(f.file.data() + 8);
  nlohmann::json j = nlohmann::json::parse(h, h + hlen, nullptr, false);
  if (j.is_discarded()) return Status::Corruption(path + ": bad header JSON");
  const std::byte* base = f.file.data() + 8 + hlen;
  const uint64_t avail = f.file.size() - 8 - hlen;
  for (auto& [name, v] : j.items()) {
    if (name == "__metadata__") continue;
    auto dt = ParseDType(v.at("dtype").get<std::string>());
    if (!dt) return Status::Unsupported(path + ": dtype of " + name);
    StTensor t;
    t.name = name;
    t.dtype = *dt;
    t.shape = v.at("shape").get<std::vector<uint64_t>>();
    const uint64_t b = v.at("data_offsets")[0], e = v.at("data_offsets")[1];
    if (b > e || e > avail) return Status::Corruption(path + ": offsets of " + name);
    t.data = {base + b, e - b};
    f.tensors.push_back(std::move(t));
  }
  std::sort(f.tensors.begin(), f.tensors.end(),
            [](const StTensor& a, const StTensor& b) { return a.name < b.name; });
  return f;
}

// *.safetensors under dir (recursive), sorted.
inline std::vector<std::string> SafetensorsFiles(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return out;
  for (auto& e : std::filesystem::recursive_directory_iterator(dir, ec))
    if (e.is_regular_file() && e.path().extension() == ".safetensors")
      out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace hct::testing
