// Convert(): safetensors file or HF folder -> HCT model folder (include/hct/convert.h).
#include "hct/convert.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "convert/detail/convert_internal.h"
#include "hct/container.h"
#include "hct/safetensors.h"

namespace hct {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

bool IsFloatCodable(DType d) { return d == DType::kBF16 || d == DType::kF16 || d == DType::kF32; }

// ||x||^2 of a float tensor, in blocks (no whole-tensor copy), the blocks in parallel: for a
// tensor larger than a chunk this pass ran on one thread after the parallel encode, the largest
// serial stage left in the convert of 70B-shaped tensors. Block sums are added in block order,
// so the result does not depend on the thread count.
double SumSquares(std::span<const std::byte> data, DType dtype, const ParallelFor& pf) {
  if (!IsFloatCodable(dtype)) return 0;
  const size_t esize = DTypeBits(dtype) / 8;
  const size_t n = data.size() / esize;
  constexpr size_t kBlock = size_t(1) << 16;
  const size_t nblocks = (n + kBlock - 1) / kBlock;
  std::vector<double> part(nblocks, 0);
  std::vector<char> bad(nblocks, 0);
  auto block = [&](size_t b) {
    const size_t i = b * kBlock, m = std::min(kBlock, n - i);
    thread_local std::vector<float> buf;
    buf.resize(m);
    if (!ToFloat(data.subspan(i * esize, m * esize), dtype, buf).ok()) {
      bad[b] = 1;
      return;
    }
    double s = 0;
    for (size_t k = 0; k < m; ++k) s += static_cast<double>(buf[k]) * buf[k];
    part[b] = s;
  };
  if (pf) pf(nblocks, block); else for (size_t b = 0; b < nblocks; ++b) block(b);
  double s = 0;
  for (size_t b = 0; b < nblocks; ++b) {
    if (bad[b]) return 0;
    s += part[b];
  }
  return s;
}

Status CheckOptions(const ConvertOptions& o) {
  const LossyOptions& l = o.lossy;
  if (o.threads < 0) return Status::InvalidArgument("--threads must be >= 0");
  if (o.chunk_elems == 0) return Status::InvalidArgument("--chunk-size must be > 0");
  if (o.zstd_level < -7 || o.zstd_level > 22)
    return Status::InvalidArgument("--zstd-level must be in -7..22");
  if (l.mode == RateMode::kMaxError && !(l.max_error > 0 && l.max_error < 10))
    return Status::InvalidArgument("--max-error must be > 0");
  if (l.mode == RateMode::kBits && !(l.bits > 0 && l.bits <= 16))
    return Status::InvalidArgument("--bits must be in (0, 16]");
  if (l.mode == RateMode::kRetention && !(l.retention > 0 && l.retention <= 1))
    return Status::InvalidArgument("--retention must be in (0, 1]");
  if (l.mode == RateMode::kStep && !(l.step > 0 && std::isfinite(l.step)))
    return Status::InvalidArgument("step must be > 0");
  if (l.tile_r < 1 || l.tile_r > 64 || l.tile_c < 1 || l.tile_c > 64)
    return Status::InvalidArgument("--tile must be in 1..64");
  if (!(l.dead_zone >= 0 && l.dead_zone < 0.5))
    return Status::InvalidArgument("--dead-zone must be in [0, 0.5)");
  return Status::OK();
}

std::string_view ModeName(RateMode m) {
  switch (m) {
    case RateMode::kMaxError:
      return "max-error";
    case RateMode::kBits:
      return "bits";
    case RateMode::kRetention:
      return "retention";
    case RateMode::kStep:
      return "step";
  }
  return "?";
}

std::string_view TransformName(Transform t) {
  switch (t) {
    case Transform::kAuto:
      return "auto";
    case Transform::kDct:
      return "dct";
    case Transform::kNone:
      return "none";
  }
  return "?";
}

json OptionsJson(const ConvertOptions& o, int threads) {
  const LossyOptions& l = o.lossy;
  json j = {{"mode", ModeName(l.mode)},
            {"transform", TransformName(l.transform)},
            {"tile", std::to_string(l.tile_r) + "x" + std::to_string(l.tile_c)},
            {"dead_zone", l.dead_zone},
            {"lossless", o.policy.lossless},
            {"keep", o.policy.keep},
            {"chunk_elems", o.chunk_elems},
            {"zstd_level", o.zstd_level},
            {"entropy", l.entropy == Entropy::kHuffman ? "huff" : "zstd"},
            {"lossless_entropy", o.lossless_entropy == Entropy::kHuffman ? "huff" : "zstd"},
            {"threads", threads},
            {"verify", o.verify}};
  if (l.mode == RateMode::kMaxError) j["max_error"] = l.max_error;
  if (l.mode == RateMode::kBits) j["bits"] = l.bits;
  if (l.mode == RateMode::kRetention) j["retention"] = l.retention;
  if (l.mode == RateMode::kStep) j["step"] = l.step;
  return j;
}

// One tensor on its way through the encoder.
struct Job {
  const ModelTensor* mt = nullptr;
  // Read with pread: a mapping dies of SIGBUS if the file shrinks. Not zero-filled first (the
  // reads fill it; zeroing a 470 MB tensor on one thread was a serial stage of the convert).
  std::unique_ptr<std::byte[]> bytes;
  std::span<const std::byte> data;
  PolicyDecision policy;
  std::optional<Result<EncodedTensor>> enc;
  double sum_sq = 0;
};

std::string TensorCtx(std::string_view name) { return "tensor '" + std::string(name) + "'"; }

// Decodes what was written and checks it against the input and the report.
Status VerifyOutput(const std::string& dir, const ModelFolder& in, const ConvertReport& rep,
                    const ParallelFor& pf, const ProgressFn& progress, detail::Stopwatch& clock) {
  HCT_ASSIGN_OR_RETURN(HctModel m, HctModel::Open(dir));
  if (m.tensors().size() != rep.tensors.size())
    return Status::Corruption("verification failed: " + dir + " holds " +
                              std::to_string(m.tensors().size()) + " tensors, expected " +
                              std::to_string(rep.tensors.size()));
  Progress p;
  p.phase = "verify";
  p.tensors_total = rep.tensors.size();
  p.bytes_total = rep.totals.input_bytes;
  std::vector<std::byte> out;
  for (const TensorReport& tr : rep.tensors) {
    auto fail = [&](const std::string& msg) {
      return Status::Corruption(
          "verification failed: " + (fs::path(rep.output) / tr.file).string() + ": " +
          TensorCtx(tr.name) + ": " + msg);
    };
    const HctModel::Ref* ref = m.Find(tr.name);
    if (!ref || m.file_names()[ref->file] != tr.file) return fail("missing from the output");
    const TensorEntry& e = *ref->entry;
    if (e.dtype != tr.dtype || e.shape != tr.shape || e.codec != tr.codec)
      return fail("dtype, shape or codec differ from the report");
    uint64_t stored = 0;
    for (const ChunkEntry& c : e.chunks) stored += c.stored_size;
    if (stored != tr.metrics.stored_bytes) return fail("stored size differs from the report");
    const ModelTensor* mt = in.Find(tr.name);
    if (!mt) return fail("not in the input");
    std::vector<std::byte> orig(mt->info.num_bytes());
    HCT_RETURN_IF_ERROR(in.file(*mt).Read(mt->info, orig));
    out.assign(orig.size(), std::byte{0});
    Status st = DecodeTensor(m.files()[ref->file], e, out, pf);
    if (!st.ok()) return fail(st.message());
    if (!IsDctqCodec(tr.codec)) {
      if (std::memcmp(out.data(), orig.data(), orig.size()) != 0)
        return fail("lossless codec '" + tr.codec + "' did not decode to the input bytes");
    } else {
      HCT_ASSIGN_OR_RETURN(QualityMetrics q, MeasureQuality(orig, out, tr.dtype));
      auto near = [](double a, double b) {
        if (std::isinf(a) || std::isinf(b)) return a == b;
        return std::fabs(a - b) <= 1e-6 + 1e-4 * std::fabs(b);
      };
      if (!near(q.rel_rms_error, tr.metrics.rel_rms_error) ||
          !near(q.max_abs_error, tr.metrics.max_abs_error) || !near(q.cosine, tr.metrics.cosine))
        return fail("decoded error (rel " + std::to_string(q.rel_rms_error) + ", max " +
                    std::to_string(q.max_abs_error) + ") differs from the reported (rel " +
                    std::to_string(tr.metrics.rel_rms_error) + ", max " +
                    std::to_string(tr.metrics.max_abs_error) + ")");
    }
    ++p.tensors_done;
    p.bytes_done += orig.size();
    p.current = tr.name;
    p.elapsed_s = clock.seconds();
    if (progress) progress(p);
  }
  return Status::OK();
}

// The output folder's own names (the HCT index, *.hct) must not come from the input: a user's
// model.hct.index.json was silently replaced by ours, and a stray *.hct would be dropped on
// decode. Refused, naming the file, rather than losing it.
Status CheckNoHctNamesInInput(const ModelFolder& in) {
  for (const std::string& rel : in.other_files())
    if (rel == kHctModelIndexName || rel.ends_with(".hct"))
      return Status::Unsupported((fs::path(in.dir()) / rel).string() +
                                 ": the input holds a file named like the HCT output's own "
                                 "files; rename or move it before converting");
  return Status::OK();
}

}  // namespace

bool IsVerificationFailure(const Status& s) {
  return s.code() == Code::kCorruption &&
         s.message().find("verification failed") != std::string::npos;
}

Result<ConvertReport> Convert(const std::string& input, const std::string& output,
                              const ConvertOptions& options) {
  return detail::ConvertWithHooks(input, output, options, {});
}

Result<ConvertReport> detail::ConvertWithHooks(const std::string& input, const std::string& output,
                                               const ConvertOptions& options,
                                               const ConvertHooks& hooks) {
  detail::Stopwatch clock;
  HCT_RETURN_IF_ERROR(CheckOptions(options));
  const int threads = detail::ResolveThreads(options.threads);

  HCT_ASSIGN_OR_RETURN(ModelFolder in, ModelFolder::Open(input, SafetensorsAccess::kPread));
  HCT_RETURN_IF_ERROR(detail::CheckOutputOutsideInput(input, output));
  {
    std::vector<std::string> read = in.shard_names();
    read.insert(read.end(), in.other_files().begin(), in.other_files().end());
    HCT_RETURN_IF_ERROR(detail::CheckOutputHoldsNoInputFile(in.dir(), read, output));
  }
  HCT_RETURN_IF_ERROR(CheckNoHctNamesInInput(in));
  HCT_ASSIGN_OR_RETURN(detail::StagingDir stage, detail::StagingDir::Create(output, options.force));

  ConvertReport rep;
  rep.input = input;
  rep.output = stage.final_path();
  rep.threads = threads;
  rep.options_json = OptionsJson(options, threads).dump();
  rep.skipped_files = in.unreferenced_weight_files();

  EncodeOptions base;
  base.lossy_options = options.lossy;
  base.lossy_options.chunk_symbols = options.chunk_elems;
  base.lossy_options.zstd_level = options.zstd_level;
  base.lossless_options.zstd_level = options.zstd_level;
  base.lossless_options.entropy = options.lossless_entropy;
  const ParallelFor pf = ThreadsParallelFor(threads);

  Progress prog;
  prog.phase = "convert";
  prog.tensors_total = in.tensors().size();
  for (const ModelTensor& t : in.tensors()) prog.bytes_total += t.info.num_bytes();

  json index_files = json::array();
  json weight_map = json::object();
  detail::Stopwatch enc_clock;
  for (size_t s = 0; s < in.shards().size(); ++s) {
    const SafetensorsFile& shard = in.shards()[s];
    const std::string hct_name = detail::HctNameFor(in.shard_names()[s]);
    const std::string hct_path = (fs::path(stage.path()) / hct_name).string();
    auto file_err = [&](const Status& st) { return st.WithContext(shard.path()); };
    {
      std::error_code ec;
      fs::create_directories(fs::path(hct_path).parent_path(), ec);
    }
    HCT_ASSIGN_OR_RETURN(HctWriter w, HctWriter::Create(hct_path, /*overwrite=*/false));
    HCT_RETURN_IF_ERROR(w.SetMetadata("converter", std::string(kConverterName)));
    HCT_RETURN_IF_ERROR(w.SetMetadata("source_file", in.shard_names()[s]));
    HCT_RETURN_IF_ERROR(w.SetMetadata("safetensors_metadata", json(shard.metadata()).dump()));

    std::vector<const ModelTensor*> todo;
    for (const ModelTensor& t : in.tensors())
      if (t.shard == s) todo.push_back(&t);
    uint64_t shard_decoded = 0;

    // Batches: a tensor larger than a chunk alone (chunks in parallel), else up to 2 x threads
    // small tensors at once with no more than threads x chunk elements in flight.
    for (size_t i = 0; i < todo.size();) {
      std::vector<Job> batch;
      uint64_t elems = 0;
      while (i < todo.size()) {
        const uint64_t n = todo[i]->info.num_elements();
        const bool big = n > options.chunk_elems;
        if (!batch.empty() &&
            (big || batch.size() >= 2u * threads || elems + n > options.chunk_elems * threads))
          break;
        Job j;
        j.mt = todo[i++];
        elems += n;
        batch.push_back(std::move(j));
        if (big) break;
      }
      for (Job& j : batch) {
        const TensorInfo& ti = j.mt->info;
        if (hooks.before_tensor) {
          Status st = hooks.before_tensor(ti.name);
          if (!st.ok()) return file_err(st.WithContext(TensorCtx(ti.name)));
        }
        j.bytes.reset(new std::byte[ti.num_bytes()]);
        j.data = {j.bytes.get(), ti.num_bytes()};
        j.policy = ChooseCodecClass(ti.name, ti.dtype, ti.shape, options.policy);
        if (batch.size() > 1) HCT_RETURN_IF_ERROR(shard.Read(ti, {j.bytes.get(), ti.num_bytes()}));
      }
      if (batch.size() == 1) {
        // One large tensor: read in pieces on every thread (copies from the page cache scale
        // with the threads; one thread's pread was a serial stage).
        const TensorInfo& ti = batch[0].mt->info;
        constexpr uint64_t kPiece = 8u << 20;
        const uint64_t nb = ti.num_bytes(), pieces = std::max<uint64_t>(1, (nb + kPiece - 1) / kPiece);
        std::vector<Status> rs(pieces);
        pf(pieces, [&](size_t k) {
          const uint64_t off = k * kPiece, len = std::min(kPiece, nb - std::min(nb, off));
          rs[k] = shard.ReadAt(ti, off, {batch[0].bytes.get() + off, len});
        });
        for (const Status& st : rs) HCT_RETURN_IF_ERROR(st);
      }
      auto encode = [&](Job& j, const ParallelFor& inner) {
        EncodeOptions eo = base;
        eo.lossy = j.policy.lossy;
        eo.parallel = inner;
        const int esize = std::max(1, DTypeBits(j.mt->info.dtype) / 8);
        eo.lossless_options.chunk_bytes = options.chunk_elems * esize;
        j.enc = EncodeTensor({j.data, j.mt->info.dtype, j.mt->info.shape}, eo);
        j.sum_sq = SumSquares(j.data, j.mt->info.dtype, inner);
      };
      if (batch.size() == 1) {
        encode(batch[0], pf);
      } else {
        pf(batch.size(), [&](size_t k) { encode(batch[k], ParallelFor()); });
      }
      for (Job& j : batch) {
        const TensorInfo& ti = j.mt->info;
        auto terr = [&](const Status& st) { return file_err(st.WithContext(TensorCtx(ti.name))); };
        if (!j.enc->ok()) return terr(j.enc->status());
        EncodedTensor& enc = j.enc->value();
        Status st = w.BeginTensor(ti.name, ti.dtype, ti.shape, enc.codec, enc.params);
        for (size_t c = 0; st.ok() && c < enc.chunks.size(); ++c) {
          const EncodedChunk& ch = enc.chunks[c];
          st = w.AppendChunk(ch.bytes, ch.decoded_size, ch.decoded_xxh3, ch.elem_offset,
                             ch.elem_count);
        }
        if (st.ok()) st = w.EndTensor();
        if (!st.ok()) return terr(st).WithContext(hct_path);

        TensorReport tr;
        tr.name = ti.name;
        tr.file = hct_name;
        tr.dtype = ti.dtype;
        tr.shape = ti.shape;
        tr.codec = enc.codec;
        if (IsDctqCodec(enc.codec)) {
          detail::DctqTransform dt = detail::ParseDctqTransform(enc.params);
          tr.transform = std::move(dt.transform);
          tr.tile_r = dt.tile_r;
          tr.tile_c = dt.tile_c;
        }
        tr.reason = j.policy.reason;
        tr.note = enc.note;
        tr.input_bytes = ti.num_bytes();
        tr.chunks = enc.chunks.size();
        tr.metrics = enc.metrics;
        tr.sum_sq = j.sum_sq;
        shard_decoded += ti.num_bytes();
        weight_map[ti.name] = hct_name;
        rep.tensors.push_back(std::move(tr));
        j.bytes.reset();  // free the input now
        j.enc.reset();  // free the chunks now
        ++prog.tensors_done;
        prog.bytes_done += ti.num_bytes();
        prog.current = ti.name;
        prog.elapsed_s = clock.seconds();
        if (options.progress) options.progress(prog);
      }
    }
    HCT_RETURN_IF_ERROR(w.Finish().WithContext(hct_path));
    std::error_code ec;
    const uint64_t size = fs::file_size(hct_path, ec);
    if (ec) return Status::FromErrno("stat", hct_path, ec.value());
    index_files.push_back({{"file", hct_name},
                           {"source", in.shard_names()[s]},
                           {"size", size},
                           {"num_tensors", todo.size()},
                           {"decoded_size", shard_decoded}});
    rep.totals.output_bytes += size;
  }
  rep.encode_seconds = enc_clock.seconds();

  // Totals.
  ConvertTotals& T = rep.totals;
  double see = 0, sxx = 0, lsee = 0, lsxx = 0;
  uint64_t lossy_elems = 0, lossy_bytes = 0;
  for (const TensorReport& tr : rep.tensors) {
    ++T.tensors;
    T.elements += tr.metrics.elements;
    T.input_bytes += tr.input_bytes;
    T.stored_bytes += tr.metrics.stored_bytes;
    if (IsDctqCodec(tr.codec)) {
      ++T.lossy_tensors;
      lossy_elems += tr.metrics.elements;
      lossy_bytes += tr.metrics.stored_bytes;
      (tr.transform == "dct" ? T.auto_dct : T.auto_none) += 1;
      lsxx += tr.sum_sq;
      lsee += tr.sum_sq * tr.metrics.rel_rms_error * tr.metrics.rel_rms_error;
    }
    if (IsFloatCodable(tr.dtype) && std::isfinite(tr.metrics.rel_rms_error)) {
      sxx += tr.sum_sq;
      see += tr.sum_sq * tr.metrics.rel_rms_error * tr.metrics.rel_rms_error;
    }
  }
  T.ratio = T.output_bytes ? static_cast<double>(T.input_bytes) / T.output_bytes : 0;
  T.bits_per_weight = T.elements ? T.output_bytes * 8.0 / T.elements : 0;
  T.payload_bits_per_weight = T.elements ? T.stored_bytes * 8.0 / T.elements : 0;
  T.lossy_bits_per_weight = lossy_elems ? lossy_bytes * 8.0 / lossy_elems : 0;
  T.rel_rms_error = sxx > 0 ? std::sqrt(see / sxx) : 0;
  T.lossy_rel_rms_error = lsxx > 0 ? std::sqrt(lsee / lsxx) : 0;

  // Index and the non-weight files.
  json src_meta = json::object();
  if (!in.index_path().empty()) {
    src_meta = json::parse(in.index_metadata_json(), nullptr, /*allow_exceptions=*/false);
    if (src_meta.is_discarded() || !src_meta.is_object()) src_meta = json::object();
  }
  json index = {{"format", "hct-model"},
                {"version", 1},
                {"metadata",
                 {{"total_size", T.input_bytes},
                  {"total_stored_size", T.output_bytes},
                  {"num_tensors", T.tensors},
                  {"converter", kConverterName},
                  {"source_has_index", !in.index_path().empty()},
                  {"source_index_metadata", src_meta}}},
                {"files", index_files},
                {"weight_map", weight_map}};
  HCT_RETURN_IF_ERROR(detail::WriteTextFile((fs::path(stage.path()) / kHctModelIndexName).string(),
                                            index.dump(2) + "\n"));
  for (const std::string& rel : in.other_files()) {
    HCT_RETURN_IF_ERROR(detail::CopyFileSynced((fs::path(in.dir()) / rel).string(),
                                               (fs::path(stage.path()) / rel).string()));
    rep.copied_files.push_back(rel);
  }

  if (hooks.before_verify) hooks.before_verify(stage.path());
  if (options.verify) {
    HCT_RETURN_IF_ERROR(VerifyOutput(stage.path(), in, rep, pf, options.progress, clock));
    rep.verified = true;
  }
  HCT_RETURN_IF_ERROR(stage.Commit());
  rep.seconds = clock.seconds();
  return rep;
}

const BaselineReport::Method* BaselineReport::Find(std::string_view key) const {
  for (const Method& m : methods)
    if (m.key == key) return &m;
  return nullptr;
}

Result<BaselineReport> MeasureBaselines(const std::string& input, const PolicyOptions& policy) {
  HCT_ASSIGN_OR_RETURN(ModelFolder in, ModelFolder::Open(input, SafetensorsAccess::kPread));
  BaselineReport r;
  r.methods = {{"int8", {8, 0, false}},           {"int4_g128", {4, 128, false}},
               {"int3_g128", {3, 128, false}},    {"asym_int4_g128", {4, 128, true}},
               {"asym_int3_g128", {3, 128, true}}};
  std::vector<double> err(r.methods.size()), bits(r.methods.size());
  double ref = 0;
  for (const ModelTensor& mt : in.tensors()) {
    const TensorInfo& ti = mt.info;
    if (!ChooseCodecClass(ti.name, ti.dtype, ti.shape, policy).lossy) continue;
    std::vector<std::byte> data(ti.num_bytes());
    HCT_RETURN_IF_ERROR(in.file(mt).Read(ti, data));
    const TensorView v{data, ti.dtype, ti.shape};
    for (size_t k = 0; k < r.methods.size(); ++k) {
      Result<BaselineResult> b = RtnGroup(v, r.methods[k].spec);
      if (!b.ok())
        return b.status().WithContext(TensorCtx(ti.name)).WithContext(in.file(mt).path());
      if (k == 0) ref += b->sum_sq_ref;
      err[k] += b->sum_sq_err;
      bits[k] += b->bits_per_weight * static_cast<double>(ti.num_elements());
    }
    ++r.tensors;
    r.elements += ti.num_elements();
  }
  for (size_t k = 0; k < r.methods.size() && r.elements; ++k) {
    r.methods[k].rel_rms_error = ref > 0 ? std::sqrt(err[k] / ref) : 0;
    r.methods[k].bits_per_weight = bits[k] / r.elements;
  }
  return r;
}

}  // namespace hct
