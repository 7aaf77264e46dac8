// Reports: the conversion table and JSON, Inspect() and its renderings.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "convert/detail/convert_internal.h"
#include "hct/convert.h"
#include "hct/detail/paths.h"
#include "hct/safetensors.h"

namespace hct {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string Fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

std::string Bytes(uint64_t n) {
  const char* u[] = {"B", "KB", "MB", "GB", "TB"};
  double v = static_cast<double>(n);
  int i = 0;
  while (v >= 1000 && i < 4) v /= 1000, ++i;
  return i == 0 ? std::to_string(n) + " B" : Fmt("%.1f ", v) + u[i];
}

std::string Fit(const std::string& s, size_t w) {
  if (s.size() <= w) return s;
  return "..." + s.substr(s.size() - (w - 3));  // the end of a tensor name says the most
}

std::string Pad(const std::string& s, size_t w, bool right = false) {
  if (s.size() >= w) return s;
  return right ? std::string(w - s.size(), ' ') + s : s + std::string(w - s.size(), ' ');
}

// JSON has no infinities: exact tensors report snr_db as null.
json Num(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

std::string CodecLabel(const std::string& codec, const std::string& transform, int tr, int tc) {
  if (!IsDctqCodec(codec)) return codec;
  if (transform == "dct") return "dctq " + std::to_string(tr) + "x" + std::to_string(tc);
  return "q (no dct)";
}

}  // namespace

std::string FormatReportTable(const ConvertReport& r) {
  size_t nw = 6;
  for (const TensorReport& t : r.tensors) nw = std::max(nw, t.name.size());
  nw = std::min<size_t>(nw, 48);
  std::ostringstream o;
  o << Pad("tensor", nw) << "  " << Pad("shape", 13) << Pad("dtype", 6) << Pad("codec", 16)
    << Pad("bits/w", 7, true) << Pad("rel_rms", 9, true) << Pad("max_abs", 10, true)
    << Pad("cosine", 9, true) << Pad("snr_dB", 8, true) << "  policy\n";
  for (const TensorReport& t : r.tensors) {
    const QualityMetrics& m = t.metrics;
    const bool exact = m.rel_rms_error == 0 && m.max_abs_error == 0;
    o << Pad(Fit(t.name, nw), nw) << "  " << Pad(ShapeString(t.shape), 13)
      << Pad(std::string(DTypeName(t.dtype)), 6)
      << Pad(CodecLabel(t.codec, t.transform, t.tile_r, t.tile_c), 16)
      << Pad(Fmt("%.2f", m.bits_per_weight), 7, true)
      << Pad(exact ? "0" : Fmt("%.4f", m.rel_rms_error), 9, true)
      << Pad(exact ? "0" : Fmt("%.3g", m.max_abs_error), 10, true)
      << Pad(exact ? "1" : Fmt("%.5f", m.cosine), 9, true)
      << Pad(std::isfinite(m.snr_db) ? Fmt("%.1f", m.snr_db) : "inf", 8, true) << "  " << t.reason
      << (t.note.empty() ? "" : " (" + t.note + ")") << "\n";
  }
  const ConvertTotals& T = r.totals;
  o << "\n"
    << "tensors " << T.tensors << " (" << T.lossy_tensors << " lossy: " << T.auto_dct << " dct, "
    << T.auto_none << " no transform), " << Fmt("%.2f", T.elements / 1e6) << " M weights\n"
    << "input " << Bytes(T.input_bytes) << " -> output " << Bytes(T.output_bytes) << "  ratio "
    << Fmt("%.2f", T.ratio) << "x  bits/weight " << Fmt("%.3f", T.bits_per_weight) << " (payload "
    << Fmt("%.3f", T.payload_bits_per_weight) << ", lossy tensors "
    << Fmt("%.3f", T.lossy_bits_per_weight) << ")\n"
    << "aggregate relative RMS error " << Fmt("%.4f", T.rel_rms_error) << " (lossy tensors "
    << Fmt("%.4f", T.lossy_rel_rms_error) << ")  time " << Fmt("%.2f", r.seconds) << " s on "
    << r.threads << " thread" << (r.threads > 1 ? "s" : "") << " ("
    << Fmt("%.1f", r.encode_seconds > 0 ? T.input_bytes / 1e6 / r.encode_seconds : 0) << " MB/s)"
    << (r.verified ? "  verified" : "") << "\n";
  return o.str();
}

static json ReportJsonValue(const ConvertReport& r) {
  json tensors = json::array();
  for (const TensorReport& t : r.tensors) {
    const QualityMetrics& m = t.metrics;
    json j = {{"name", t.name},
              {"file", t.file},
              {"dtype", DTypeName(t.dtype)},
              {"shape", t.shape},
              {"codec", t.codec},
              {"policy", t.reason},
              {"elements", m.elements},
              {"input_bytes", t.input_bytes},
              {"stored_bytes", m.stored_bytes},
              {"chunks", t.chunks},
              {"bits_per_weight", m.bits_per_weight},
              {"rel_rms_error", Num(m.rel_rms_error)},
              {"max_abs_error", Num(m.max_abs_error)},
              {"cosine", Num(m.cosine)},
              {"snr_db", Num(m.snr_db)}};
    if (!t.transform.empty()) {
      j["transform"] = t.transform;
      j["tile"] = {t.tile_r, t.tile_c};
    }
    if (!t.note.empty()) j["note"] = t.note;
    tensors.push_back(std::move(j));
  }
  const ConvertTotals& T = r.totals;
  return {{"input", r.input},
          {"output", r.output},
          {"converter", kConverterName},
          {"options", r.options_json.empty() ? json::object()
                                           : json::parse(r.options_json, nullptr, false)},
          {"threads", r.threads},
          {"seconds", r.seconds},
          {"encode_seconds", r.encode_seconds},
          {"encode_mb_per_s", r.encode_seconds > 0 ? T.input_bytes / 1e6 / r.encode_seconds : 0},
          {"verified", r.verified},
          {"copied_files", r.copied_files},
          {"skipped_files", r.skipped_files},
          {"totals",
           {{"tensors", T.tensors},
            {"lossy_tensors", T.lossy_tensors},
            {"dct_tensors", T.auto_dct},
            {"no_transform_tensors", T.auto_none},
            {"elements", T.elements},
            {"input_bytes", T.input_bytes},
            {"stored_bytes", T.stored_bytes},
            {"output_bytes", T.output_bytes},
            {"ratio", T.ratio},
            {"bits_per_weight", T.bits_per_weight},
            {"payload_bits_per_weight", T.payload_bits_per_weight},
            {"lossy_bits_per_weight", T.lossy_bits_per_weight},
            {"rel_rms_error", T.rel_rms_error},
            {"lossy_rel_rms_error", T.lossy_rel_rms_error}}},
          {"tensors", tensors}};
}

Status CheckReportPath(const std::string& report, const std::string& input,
                       const std::string& output, bool force) {
  if (report.empty()) return Status::InvalidArgument("--report: empty file name");
  const detail::PathForms rep = detail::FormsOf(report), out = detail::FormsOf(output);
  bool in_output = false;
  for (const fs::path& r : {rep.lexical, rep.resolved})
    for (const fs::path& o : {out.lexical, out.resolved})
      in_output = in_output || detail::IsSameOrBelow(r, o);
  if (in_output || detail::OutputOverlapsInput(input, report))
    return Status::InvalidArgument(report + ": --report must lie outside the input and the output");
  // The files read may live elsewhere (hub-cache blobs behind symlinks): not those either. An
  // input that does not open is left to Convert() to report.
  if (Result<ModelFolder> in = ModelFolder::Open(input, SafetensorsAccess::kPread); in.ok()) {
    std::vector<std::string> read = in->shard_names();
    read.insert(read.end(), in->other_files().begin(), in->other_files().end());
    if (!detail::CheckOutputHoldsNoInputFile(in->dir(), read, report).ok())
      return Status::InvalidArgument(report + ": --report names a file of the input");
  }
  std::error_code ec;
  const fs::file_status st = fs::status(report, ec);
  if (fs::exists(st) && !fs::is_regular_file(st))
    return Status::InvalidArgument(report + ": --report names something that is not a file");
  if (fs::exists(st) && !force)
    return Status::AlreadyExists(report + ": report exists (use --force to replace it)");
  return Status::OK();
}

static json DecodeReportJsonValue(const DecodeReport& r) {
  return {{"input", r.input},
          {"output", r.output},
          {"tensors", r.tensors},
          {"input_bytes", r.input_bytes},
          {"output_bytes", r.output_bytes},
          {"files", r.files},
          {"copied_files", r.copied_files},
          {"seconds", r.seconds}};
}

Result<InspectReport> Inspect(const std::string& path) {
  InspectReport r;
  r.path = path;
  std::error_code ec;
  // The one model-kind rule (hct/model.h): a folder with both .hct and .safetensors is HCT.
  if (DetectModelKind(path) == ModelKind::kHct) {
    HCT_ASSIGN_OR_RETURN(HctModel m, HctModel::Open(path));
    r.kind = fs::is_directory(path, ec) ? "hct-model" : "hct-file";
    for (size_t i = 0; i < m.files().size(); ++i) {
      r.files.push_back(m.file_names()[i]);
      r.file_bytes += m.files()[i].file_size();
    }
    for (const HctModel::Ref& ref : m.tensors()) {
      const TensorEntry& e = *ref.entry;
      InspectTensor t;
      t.name = e.name;
      t.file = m.file_names()[ref.file];
      t.dtype = e.dtype;
      t.shape = e.shape;
      t.codec = e.codec;
      if (IsDctqCodec(e.codec)) {
        const detail::DctqTransform dt = detail::ParseDctqTransform(e.codec_params);
        t.transform = dt.transform;
        if (t.transform == "dct")
          t.transform += " " + std::to_string(dt.tile_r) + "x" + std::to_string(dt.tile_c);
      }
      t.elements = e.num_elements;
      t.decoded_bytes = DTypeBytes(e.dtype, e.num_elements).value_or(0);
      for (const ChunkEntry& c : e.chunks) t.stored_bytes += c.stored_size;
      t.chunks = e.chunks.size();
      r.decoded_bytes += t.decoded_bytes;
      r.stored_bytes += t.stored_bytes;
      r.elements += t.elements;
      r.tensors.push_back(std::move(t));
    }
    return r;
  }
  HCT_ASSIGN_OR_RETURN(ModelFolder m, ModelFolder::Open(path, SafetensorsAccess::kPread));
  r.kind = "safetensors";
  for (size_t i = 0; i < m.shards().size(); ++i) {
    r.files.push_back(m.shard_names()[i]);
    r.file_bytes += m.shards()[i].file_size();
  }
  for (const ModelTensor& mt : m.tensors()) {
    InspectTensor t;
    t.name = mt.info.name;
    t.file = m.shard_names()[mt.shard];
    t.dtype = mt.info.dtype;
    t.shape = mt.info.shape;
    t.codec = "safetensors";
    t.elements = mt.info.num_elements();
    t.decoded_bytes = t.stored_bytes = mt.info.num_bytes();
    r.decoded_bytes += t.decoded_bytes;
    r.stored_bytes += t.stored_bytes;
    r.elements += t.elements;
    r.tensors.push_back(std::move(t));
  }
  return r;
}

std::string FormatInspect(const InspectReport& r) {
  size_t nw = 6, fw = 4;
  for (const InspectTensor& t : r.tensors) {
    nw = std::max(nw, t.name.size());
    fw = std::max(fw, t.file.size());
  }
  nw = std::min<size_t>(nw, 48);
  fw = std::min<size_t>(fw, 34);
  std::ostringstream o;
  o << r.path << ": " << r.kind << ", " << r.files.size() << " file"
    << (r.files.size() == 1 ? "" : "s") << ", " << r.tensors.size() << " tensors\n";
  o << Pad("tensor", nw) << "  " << Pad("dtype", 8) << Pad("shape", 16) << Pad("codec", 16)
    << Pad("stored", 11, true) << Pad("ratio", 8, true) << Pad("bits/w", 8, true) << "  "
    << "file\n";
  for (const InspectTensor& t : r.tensors) {
    std::string codec = t.codec;
    if (!t.transform.empty()) codec += " " + t.transform;
    o << Pad(Fit(t.name, nw), nw) << "  " << Pad(std::string(DTypeName(t.dtype)), 8)
      << Pad(ShapeString(t.shape), 16) << Pad(codec, 16) << Pad(Bytes(t.stored_bytes), 11, true)
      << Pad(t.stored_bytes ? Fmt("%.2fx", double(t.decoded_bytes) / t.stored_bytes) : "-", 8, true)
      << Pad(t.elements ? Fmt("%.2f", t.stored_bytes * 8.0 / t.elements) : "-", 8, true) << "  "
      << Fit(t.file, fw) << "\n";
  }
  o << "total: " << Fmt("%.2f", r.elements / 1e6) << " M weights, " << Bytes(r.decoded_bytes)
    << " decoded, " << Bytes(r.file_bytes) << " in files";
  if (r.file_bytes)
    o << " (ratio " << Fmt("%.2f", double(r.decoded_bytes) / r.file_bytes) << "x, "
      << Fmt("%.3f", r.elements ? r.file_bytes * 8.0 / r.elements : 0) << " bits/weight)";
  o << "\n";
  return o.str();
}

namespace {

// JSON text exactly as nlohmann's dump(2) writes it (sorted keys are the caller's to keep),
// without building a tree: for 100k tensors the tree, its dump and its destruction were most of
// `inspect --json` (issue 10 item 7). Scalars nlohmann formats in a way of its own (doubles,
// strings that need escaping or are not valid UTF-8) still go through nlohmann, so the text
// and the errors stay the same.
class PrettyJson {
 public:
  explicit PrettyJson(std::string* out) : out_(out) {}
  void BeginObject() { Open('{'); }
  void BeginArray() { Open('['); }
  void End() {
    const bool empty = levels_.back().empty;
    const char close = levels_.back().object ? '}' : ']';
    levels_.pop_back();
    if (!empty) NewLine();
    *out_ += close;
  }
  void Key(std::string_view k) {
    Element();
    Quoted(k);
    *out_ += ": ";
    after_key_ = true;
  }
  void String(std::string_view s) {
    Value();
    Quoted(s);
  }
  void Uint(uint64_t v) {
    Value();
    *out_ += std::to_string(v);
  }
  void Double(double v) {
    Value();
    *out_ += json(v).dump();
  }

 private:
  struct Level {
    bool object;
    bool empty = true;
  };
  void Quoted(std::string_view s) {
    const bool plain = std::all_of(s.begin(), s.end(), [](char c) {
      return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
    });
    if (!plain) {
      *out_ += json(s).dump();
      return;
    }
    *out_ += '"';
    *out_ += s;
    *out_ += '"';
  }
  void Open(char c) {
    Value();
    *out_ += c;
    levels_.push_back({c == '{'});
  }
  // Before a value: after its key nothing; in an array the element's separator and indent.
  void Value() {
    if (std::exchange(after_key_, false)) return;
    if (!levels_.empty()) Element();
  }
  void Element() {
    if (!std::exchange(levels_.back().empty, false)) *out_ += ',';
    NewLine();
  }
  void NewLine() {
    *out_ += '\n';
    out_->append(2 * levels_.size(), ' ');
  }
  std::string* out_;
  std::vector<Level> levels_;
  bool after_key_ = false;
};

}  // namespace

// Keys in byte order, as the nlohmann object this replaces sorted them.
std::string InspectToJson(const InspectReport& r) {
  std::string out;
  out.reserve(512 + 320 * r.tensors.size());
  PrettyJson j(&out);
  auto strings = [&](const std::vector<std::string>& v) {
    j.BeginArray();
    for (const std::string& s : v) j.String(s);
    j.End();
  };
  j.BeginObject();
  j.Key("decoded_bytes"), j.Uint(r.decoded_bytes);
  j.Key("elements"), j.Uint(r.elements);
  j.Key("file_bytes"), j.Uint(r.file_bytes);
  j.Key("files"), strings(r.files);
  j.Key("kind"), j.String(r.kind);
  j.Key("path"), j.String(r.path);
  j.Key("ratio"), j.Double(r.file_bytes ? double(r.decoded_bytes) / r.file_bytes : 0);
  j.Key("stored_bytes"), j.Uint(r.stored_bytes);
  j.Key("tensors");
  j.BeginArray();
  for (const InspectTensor& t : r.tensors) {
    j.BeginObject();
    j.Key("chunks"), j.Uint(t.chunks);
    j.Key("codec"), j.String(t.codec);
    j.Key("decoded_bytes"), j.Uint(t.decoded_bytes);
    j.Key("dtype"), j.String(DTypeName(t.dtype));
    j.Key("elements"), j.Uint(t.elements);
    j.Key("file"), j.String(t.file);
    j.Key("name"), j.String(t.name);
    j.Key("shape");
    j.BeginArray();
    for (uint64_t d : t.shape) j.Uint(d);
    j.End();
    j.Key("stored_bytes"), j.Uint(t.stored_bytes);
    if (!t.transform.empty()) j.Key("transform"), j.String(t.transform);
    j.End();
  }
  j.End();
  j.End();
  return out;
}

std::string ReportToJson(const ConvertReport& r) { return ReportJsonValue(r).dump(2); }
std::string DecodeReportToJson(const DecodeReport& r) { return DecodeReportJsonValue(r).dump(2); }

}  // namespace hct
