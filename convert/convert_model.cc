// DecodeModel (HCT -> safetensors).
#include <algorithm>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "convert/detail/convert_internal.h"
#include "hct/container.h"
#include "hct/convert.h"
#include "hct/detail/paths.h"
#include "hct/safetensors.h"

namespace hct {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// source_file comes from the input: each must name a distinct file inside the output. Checked
// before anything is created.
Status CheckSourceNames(const HctModel& m) {
  std::set<std::string> seen;
  for (size_t i = 0; i < m.files().size(); ++i) {
    const std::string& name = m.source_names()[i];
    if (!detail::IsContainedRelativePath(name) || !seen.insert(name).second)
      return Status::Corruption(m.files()[i].path() + ": bad or duplicate source_file '" + name +
                                "'");
  }
  return Status::OK();
}

}  // namespace

Result<DecodeReport> DecodeModel(const std::string& input, const std::string& output,
                                 const DecodeOptions& options) {
  detail::Stopwatch clock;
  if (options.threads < 0) return Status::InvalidArgument("--threads must be >= 0");
  HCT_ASSIGN_OR_RETURN(HctModel m, HctModel::Open(input));
  HCT_RETURN_IF_ERROR(detail::CheckOutputOutsideInput(input, output));
  {
    std::vector<std::string> read = m.file_names();
    read.insert(read.end(), m.other_files().begin(), m.other_files().end());
    HCT_RETURN_IF_ERROR(detail::CheckOutputHoldsNoInputFile(m.dir(), read, output));
  }
  HCT_RETURN_IF_ERROR(CheckSourceNames(m));
  HCT_ASSIGN_OR_RETURN(detail::StagingDir stage, detail::StagingDir::Create(output, options.force));
  const ParallelFor pf = ThreadsParallelFor(detail::ResolveThreads(options.threads));
  DecodeReport rep;
  rep.input = input;
  rep.output = stage.final_path();

  Progress prog;
  prog.phase = "decode";
  prog.tensors_total = m.tensors().size();
  for (const auto& r : m.tensors()) prog.bytes_total += r.entry->decoded_size;

  json weight_map = json::object();
  uint64_t total_size = 0;
  std::set<std::string> seen;
  std::vector<std::byte> buf;
  for (size_t i = 0; i < m.files().size(); ++i) {
    const HctFile& f = m.files()[i];
    const std::string name = m.source_names()[i];
    seen.insert(name);
    const std::string dst = (fs::path(stage.path()) / name).string();
    std::error_code ec;
    fs::create_directories(fs::path(dst).parent_path(), ec);
    HCT_ASSIGN_OR_RETURN(SafetensorsWriter w, SafetensorsWriter::Create(dst));
    std::map<std::string, std::string> meta = {{"format", "pt"}};
    if (auto it = f.metadata().find("safetensors_metadata"); it != f.metadata().end()) {
      json j = json::parse(it->second, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() || !j.is_object())
        return Status::Corruption(f.path() + ": metadata 'safetensors_metadata' is not an object");
      meta.clear();
      for (auto kv = j.begin(); kv != j.end(); ++kv)
        if (kv.value().is_string()) meta[kv.key()] = kv.value().get<std::string>();
    }
    for (const auto& [k, v] : meta) HCT_RETURN_IF_ERROR(w.SetMetadata(k, v));
    // Contexts are made only on failure: this loop runs once per tensor (issue 10 item 7).
    for (const TensorEntry& e : f.tensors())
      if (Status s = w.Declare(e.name, e.dtype, e.shape); !s.ok())
        return std::move(s).WithContext(f.path());
    for (const TensorEntry& e : f.tensors()) {
      HCT_ASSIGN_OR_RETURN(uint64_t n, detail::BytesOf(e.dtype, e.num_elements, e.name));
      buf.resize(n);
      HCT_RETURN_IF_ERROR(DecodeTensor(f, e, buf, pf));
      if (Status s = w.Write(e.name, buf); !s.ok())
        return std::move(s).WithContext("tensor '" + e.name + "'").WithContext(dst);
      weight_map[e.name] = name;
      total_size += n;
      ++rep.tensors;
      ++prog.tensors_done;
      prog.bytes_done += n;
      prog.current = e.name;
      prog.elapsed_s = clock.seconds();
      if (options.progress) options.progress(prog);
    }
    HCT_RETURN_IF_ERROR(w.Finish().WithContext(dst));
    rep.input_bytes += f.file_size();
    rep.output_bytes += fs::file_size(dst, ec);
    rep.files.push_back(name);
  }
  buf.clear();
  buf.shrink_to_fit();
  json index_meta = m.index_metadata_json().empty()
                        ? json::object()
                        : json::parse(m.index_metadata_json(), nullptr, /*allow_exceptions=*/false);
  if (!index_meta.is_object()) index_meta = json::object();
  const bool had_index = index_meta.value("source_has_index", false);
  if (m.files().size() > 1 || had_index) {
    json meta = json::object();
    if (index_meta.contains("source_index_metadata") &&
        index_meta["source_index_metadata"].is_object())
      meta = index_meta["source_index_metadata"];
    meta["total_size"] = total_size;
    json idx = {{"metadata", meta}, {"weight_map", weight_map}};
    HCT_RETURN_IF_ERROR(detail::WriteTextFile(
        (fs::path(stage.path()) / "model.safetensors.index.json").string(), idx.dump(2) + "\n"));
  }
  for (const std::string& rel : m.other_files()) {
    // A copied file named like one decode writes was silently dropped: refuse instead.
    if (rel == "model.safetensors.index.json" || seen.count(rel))
      return Status::Unsupported((fs::path(m.dir()) / rel).string() +
                                 ": named like a file the decode writes; rename or move it");
    HCT_RETURN_IF_ERROR(detail::CopyFileSynced((fs::path(m.dir()) / rel).string(),
                                               (fs::path(stage.path()) / rel).string()));
    rep.copied_files.push_back(rel);
  }
  HCT_RETURN_IF_ERROR(stage.Commit());
  rep.seconds = clock.seconds();
  return rep;
}

}  // namespace hct
