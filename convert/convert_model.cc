// HctModel (HCT model folders), DecodeTensor and DecodeModel (HCT -> safetensors).
#include <algorithm>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "convert/detail/convert_internal.h"
#include "hct/container.h"
#include "hct/convert.h"
#include "hct/detail/paths.h"
#include "hct/safetensors.h"

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

Result<HctModel> HctModel::Open(const std::string& path) {
  HctModel m;
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
      m.index_ = json::parse(text, nullptr, /*allow_exceptions=*/false);
      if (m.index_.is_discarded() || !m.index_.is_object() ||
          m.index_.value("format", "") != "hct-model" || !m.index_.contains("files") ||
          !m.index_["files"].is_array() || !m.index_.contains("weight_map") ||
          !m.index_["weight_map"].is_object())
        return Status::Corruption(index_path + ": not an HCT model index");
      if (m.index_.value("version", 0) != 1)
        return Status::Unsupported(index_path + ": index version " + m.index_["version"].dump() +
                                   " (this build reads 1)");
      for (const json& f : m.index_["files"]) {
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
  if (!m.index_.empty()) {
    const std::string index_path = (fs::path(path) / kHctModelIndexName).string();
    const json& wm = m.index_["weight_map"];
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

Status DecodeTensor(const HctFile& f, const TensorEntry& t, std::span<std::byte> out,
                    const ParallelFor& pf) {
  const std::string ctx = f.path() + ": tensor '" + t.name + "'";
  HCT_ASSIGN_OR_RETURN(uint64_t total, detail::BytesOf(t.dtype, t.num_elements, ctx));
  if (out.size() != total)
    return Status::InvalidArgument(ctx + ": output buffer has " + std::to_string(out.size()) +
                                   " bytes, the tensor " + std::to_string(total));
  Result<ChunkDecoder> dec = ChunkDecoder::Create(t.codec, t.codec_params, t.dtype);
  if (!dec.ok()) return dec.status().WithContext(ctx);
  std::vector<Status> st(t.chunks.size());
  auto body = [&](size_t i) {
    const ChunkEntry& c = t.chunks[i];
    Result<uint64_t> off = detail::BytesOf(t.dtype, c.elem_offset, "chunk offset");
    Result<uint64_t> len = detail::BytesOf(t.dtype, c.elem_count, "chunk size");
    if (!off.ok() || !len.ok() || *off + *len > out.size()) {
      st[i] = Status::Corruption("chunk " + std::to_string(i) + " lies outside the tensor");
      return;
    }
    std::vector<std::byte> stored(c.stored_size);
    st[i] = f.ReadChunk(t, i, stored);
    if (st[i].ok())
      st[i] = dec->Decode(stored,
                          ChunkMeta(c.decoded_size, c.decoded_xxh3, c.elem_offset, c.elem_count),
                          out.subspan(*off, *len));
    if (!st[i].ok()) st[i] = std::move(st[i]).WithContext("chunk " + std::to_string(i));
  };
  if (pf)
    pf(t.chunks.size(), body);
  else
    for (size_t i = 0; i < t.chunks.size(); ++i) body(i);
  for (Status& s : st)
    if (!s.ok()) return std::move(s).WithContext(ctx);
  return Status::OK();
}

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
    for (const TensorEntry& e : f.tensors())
      HCT_RETURN_IF_ERROR(w.Declare(e.name, e.dtype, e.shape).WithContext(f.path()));
    for (const TensorEntry& e : f.tensors()) {
      HCT_ASSIGN_OR_RETURN(uint64_t n, detail::BytesOf(e.dtype, e.num_elements, e.name));
      buf.resize(n);
      HCT_RETURN_IF_ERROR(DecodeTensor(f, e, buf, pf));
      HCT_RETURN_IF_ERROR(
          w.Write(e.name, buf).WithContext("tensor '" + e.name + "'").WithContext(dst));
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
  const bool had_index = m.index().is_object() && m.index().contains("metadata") &&
                         m.index()["metadata"].value("source_has_index", false);
  if (m.files().size() > 1 || had_index) {
    json meta = json::object();
    if (m.index().contains("metadata") && m.index()["metadata"].contains("source_index_metadata") &&
        m.index()["metadata"]["source_index_metadata"].is_object())
      meta = m.index()["metadata"]["source_index_metadata"];
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
