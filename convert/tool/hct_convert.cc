// hct-convert: compress a Hugging Face model into HCT files, decode it back, inspect files.
// A thin layer over include/hct/convert.h; usage and exit codes in man/hct-convert.1.
#include <unistd.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hct/convert.h"
#include "hct/detail/file.h"
#include "hct/units.h"
#include "tools/common/cli.h"
#include "tools/common/progress.h"

namespace po = boost::program_options;

namespace {

// Exit codes: the table both tools share (tools/common/cli.h; man/hct-convert.1, EXIT STATUS).
using hct::cli::kOk;
using hct::cli::kUsage;

int ExitFor(const hct::Status& s) {
  if (hct::IsVerificationFailure(s)) return hct::cli::kProblems;
  return hct::cli::ExitFor(s);
}

int Fail(const hct::Status& s) {
  std::fprintf(stderr, "hct-convert: error: %s\n", hct::cli::Escape(s.ToString()).c_str());
  return ExitFor(s);
}

int Usage(const std::string& msg) {
  std::fprintf(stderr, "hct-convert: %s\nTry 'hct-convert --help'.\n",
               hct::cli::Escape(msg).c_str());
  return kUsage;
}

// The bar's record for a progress report of Convert/DecodeModel (the name escaped for a
// terminal, as hct-cache does).
hct::cli::ProgressState BarState(const hct::Progress& p) {
  return {p.phase,        p.tensors_done, p.tensors_total, p.bytes_done,
          p.bytes_total, hct::cli::Escape(p.current), p.elapsed_s};
}

const char* kSynopsis =
    "Usage:\n"
    "  hct-convert [convert] INPUT OUTPUT [options]   safetensors file or HF folder -> HCT folder\n"
    "  hct-convert decode INPUT OUTPUT [options]      HCT folder or file -> HF safetensors folder\n"
    "  hct-convert inspect PATH [--json]              tensors, dtypes, shapes, codecs, ratios\n"
    "  hct-convert demo-model DIR [--force]           write a small LLaMA-like BF16 demo model\n"
    "  hct-convert baseline INPUT                     RTN INT8 / INT4 / INT3 g128 error and bits (JSON)\n"
    "See man hct-convert(1).\n";

// Upper bounds of the numeric options: beyond them a value is a typo, not a request, and would
// only make the tool allocate without bound.
constexpr uint64_t kMaxChunkElems = uint64_t{1} << 30;
constexpr int kMaxThreads = 1024;
constexpr int kMaxTile = 64;

// A whole decimal number in [lo, hi]; nullopt for anything else (sign, garbage, overflow).
std::optional<long long> ParseInt(const std::string& s, long long lo, long long hi) {
  if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  const long long v = std::stoll(s);
  if (v < lo || v > hi) return std::nullopt;
  return v;
}

// "16" or "8x32": tile rows and columns, each in 1..kMaxTile.
bool ParseTile(const std::string& s, int* r, int* c) {
  const size_t x = s.find_first_of("xX");
  const auto a = ParseInt(s.substr(0, x), 1, kMaxTile);
  const auto b = x == std::string::npos ? a : ParseInt(s.substr(x + 1), 1, kMaxTile);
  if (!a || !b) return false;
  *r = static_cast<int>(*a), *c = static_cast<int>(*b);
  return true;
}

std::string Range(long long lo, long long hi) {
  return "in " + std::to_string(lo) + ".." + std::to_string(hi);
}

struct Common {
  bool quiet = false, json = false, force = false;
  int threads = 0;
};

// Parses argv (after the subcommand) with `desc` plus positionals; nullopt after printing help.
std::optional<int> Parse(int argc, char** argv, po::options_description& desc,
                         const std::vector<std::string>& pos_names, po::variables_map& vm) {
  po::options_description hidden;
  po::positional_options_description pos;
  for (const std::string& n : pos_names) {
    hidden.add_options()(n.c_str(), po::value<std::string>());
    pos.add(n.c_str(), 1);
  }
  po::options_description all;
  all.add(desc).add(hidden);
  try {
    po::store(po::command_line_parser(argc, argv).options(all).positional(pos).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    return Usage(e.what());
  }
  if (vm.count("help")) {
    std::cout << kSynopsis << "\n" << desc;
    return kOk;
  }
  for (const std::string& n : pos_names) {
    if (!vm.count(n)) return Usage("missing " + n);
    if (vm[n].as<std::string>().empty()) return Usage(n + " is an empty path");
  }
  return std::nullopt;
}

void AddCommon(po::options_description& d, Common& c) {
  d.add_options()("help,h", "show this help")(
      "threads,j", po::value<int>(&c.threads)->default_value(0), "worker threads (0: all cores)")(
      "force,f", po::bool_switch(&c.force), "replace an existing output")(
      "quiet,q", po::bool_switch(&c.quiet), "no progress bar, no table")(
      "json", po::bool_switch(&c.json), "print a JSON summary on stdout instead of the table");
}

hct::Status WriteReport(const std::string& path, const std::string& json, bool overwrite) {
  HCT_ASSIGN_OR_RETURN(hct::detail::AtomicFile f,
                       hct::detail::AtomicFile::Create(path, overwrite));
  const std::string s = json + "\n";
  HCT_RETURN_IF_ERROR(f.Append(s.data(), s.size()));
  return f.Commit();
}

int RunConvert(int argc, char** argv) {
  Common c;
  double max_error = 0, bits = 0, retention = 0, dead_zone = 0;
  const bool huff_default = hct::LossyOptions{}.entropy == hct::Entropy::kHuffman;
  std::string entropy = huff_default ? "huff" : "zstd";
  std::string lossless_entropy =
      hct::LosslessOptions{}.entropy == hct::Entropy::kHuffman ? "huff" : "zstd";
  std::string transform = "auto", tile = "16", chunk = std::to_string(hct::kDefaultChunkElems);
  std::string report;
  std::vector<std::string> keep;
  int zstd_level = hct::kDefaultZstdLevel;
  bool lossless = false, verify = false;
  char def[32];
  std::snprintf(def, sizeof def, "%g", hct::kDefaultBits);
  const std::string bits_help =
      std::string("target average bits per weight per lossy tensor (the default: ") + def + ")";
  po::options_description d("Convert options");
  d.add_options()("max-error", po::value<double>(&max_error),
                  "target relative RMS error per lossy tensor instead of --bits")(
      "bits", po::value<double>(&bits), bits_help.c_str())(
      "retention", po::value<double>(&retention),
      "keep the largest R fraction of DCT coefficients (original HCT experiments)")(
      "transform", po::value<std::string>(&transform)->default_value("auto"),
      "auto|dct|none (auto keeps the cheaper one per tensor)")(
      "tile", po::value<std::string>(&tile)->default_value("16"), "DCT tile: N or RxC (1..64)")(
      "entropy", po::value<std::string>(&entropy)->default_value(entropy),
      "lossy symbols: huff (GPU-decodable Huffman, int8 symbols) or zstd")(
      "lossless-entropy",
      po::value<std::string>(&lossless_entropy)->default_value(lossless_entropy),
      "lossless BF16 tensors: huff (bf16-huff, exponent plane in GPU-decodable Huffman) or zstd "
      "(bytesplit-zstd)")(
      "dead-zone", po::value<double>(&dead_zone)->default_value(0),
      "quantizer rounding offset in [0, 0.5)")("lossless", po::bool_switch(&lossless),
                                               "store every tensor losslessly")(
      "keep", po::value<std::vector<std::string>>(&keep)->composing(),
      "glob of tensor names kept lossless (repeatable)")(
      "zstd-level", po::value<int>(&zstd_level)->default_value(hct::kDefaultZstdLevel),
      "zstd level of every chunk")("chunk-size",
                                   po::value<std::string>(&chunk)->default_value("1M"),
                                   "weights per chunk (K, M suffixes)")(
      "verify", po::bool_switch(&verify), "decode the output and check it before finishing")(
      "report", po::value<std::string>(&report), "write the per-tensor report as JSON to FILE");
  AddCommon(d, c);
  po::variables_map vm;
  if (auto r = Parse(argc, argv, d, {"INPUT", "OUTPUT"}, vm)) return *r;

  hct::ConvertOptions o;
  const int modes = int(vm.count("max-error")) + int(vm.count("bits")) + int(vm.count("retention"));
  if (modes > 1) return Usage("--max-error, --bits and --retention exclude each other");
  if (vm.count("bits")) o.lossy.mode = hct::RateMode::kBits, o.lossy.bits = bits;
  if (vm.count("retention"))
    o.lossy.mode = hct::RateMode::kRetention, o.lossy.retention = retention;
  if (vm.count("max-error")) o.lossy.mode = hct::RateMode::kMaxError, o.lossy.max_error = max_error;
  if (transform == "auto")
    o.lossy.transform = hct::Transform::kAuto;
  else if (transform == "dct")
    o.lossy.transform = hct::Transform::kDct;
  else if (transform == "none")
    o.lossy.transform = hct::Transform::kNone;
  else
    return Usage("--transform must be auto, dct or none, not '" + transform + "'");
  if (!ParseTile(tile, &o.lossy.tile_r, &o.lossy.tile_c))
    return Usage("--tile must be N or RxC, each " + Range(1, kMaxTile) + ", not '" + tile + "'");
  o.lossy.dead_zone = dead_zone;
  if (entropy == "huff")
    o.lossy.entropy = hct::Entropy::kHuffman;
  else if (entropy == "zstd")
    o.lossy.entropy = hct::Entropy::kZstd;
  else
    return Usage("--entropy must be huff or zstd, not '" + entropy + "'");
  if (lossless_entropy == "huff")
    o.lossless_entropy = hct::Entropy::kHuffman;
  else if (lossless_entropy == "zstd")
    o.lossless_entropy = hct::Entropy::kZstd;
  else
    return Usage("--lossless-entropy must be huff or zstd, not '" + lossless_entropy + "'");
  const auto chunk_elems = hct::ParseSize(chunk, kMaxChunkElems);
  if (!chunk_elems.ok() || *chunk_elems == 0)
    return Usage("--chunk-size must be a count like 1M or 262144, " + Range(1, kMaxChunkElems) +
                 ": " + (chunk_elems.ok() ? "not 0" : chunk_elems.status().message()));
  o.chunk_elems = *chunk_elems;
  if (c.threads < 0 || c.threads > kMaxThreads)
    return Usage("--threads must be " + Range(0, kMaxThreads));
  o.zstd_level = zstd_level;
  o.policy.lossless = lossless;
  o.policy.keep = keep;
  o.threads = c.threads;
  o.force = c.force;
  o.verify = verify;
  hct::cli::ProgressBar bar(!c.quiet);
  o.progress = [&](const hct::Progress& p) { bar.Update(BarState(p)); };

  if (vm.count("report")) {  // before converting: it must not replace an input or output file
    hct::Status s = hct::CheckReportPath(report, vm["INPUT"].as<std::string>(),
                                         vm["OUTPUT"].as<std::string>(), c.force);
    if (!s.ok()) return Fail(s);
  }
  hct::Result<hct::ConvertReport> rep =
      hct::Convert(vm["INPUT"].as<std::string>(), vm["OUTPUT"].as<std::string>(), o);
  bar.Finish();
  if (!rep.ok()) return Fail(rep.status());
  const std::string j = hct::ReportToJson(*rep);
  if (!report.empty()) {
    hct::Status s = WriteReport(report, j, c.force);
    if (!s.ok()) return Fail(s.WithContext("--report"));
  }
  if (c.json)
    std::cout << j << "\n";
  else if (!c.quiet)
    std::cout << hct::cli::EscapeText(hct::FormatReportTable(*rep));
  return kOk;
}

int RunDecode(int argc, char** argv) {
  Common c;
  po::options_description d("Decode options");
  AddCommon(d, c);
  po::variables_map vm;
  if (auto r = Parse(argc, argv, d, {"INPUT", "OUTPUT"}, vm)) return *r;
  hct::DecodeOptions o;
  o.threads = c.threads;
  o.force = c.force;
  if (o.threads < 0 || o.threads > kMaxThreads)
    return Usage("--threads must be " + Range(0, kMaxThreads));
  hct::cli::ProgressBar bar(!c.quiet);
  o.progress = [&](const hct::Progress& p) { bar.Update(BarState(p)); };
  auto rep = hct::DecodeModel(vm["INPUT"].as<std::string>(), vm["OUTPUT"].as<std::string>(), o);
  bar.Finish();
  if (!rep.ok()) return Fail(rep.status());
  if (c.json) {
    std::cout << hct::DecodeReportToJson(*rep) << "\n";
  } else if (!c.quiet) {
    std::printf("decoded %llu tensors into %zu safetensors file%s in %s (%.1f MB, %.2f s)\n",
                (unsigned long long)rep->tensors, rep->files.size(),
                rep->files.size() == 1 ? "" : "s", hct::cli::Escape(rep->output).c_str(), rep->output_bytes / 1e6,
                rep->seconds);
  }
  return kOk;
}

int RunInspect(int argc, char** argv) {
  bool json = false;
  po::options_description d("Inspect options");
  d.add_options()("help,h", "show this help")("json", po::bool_switch(&json), "JSON output");
  po::variables_map vm;
  if (auto r = Parse(argc, argv, d, {"PATH"}, vm)) return *r;
  auto rep = hct::Inspect(vm["PATH"].as<std::string>());
  if (!rep.ok()) return Fail(rep.status());
  if (json)
    std::cout << hct::InspectToJson(*rep) << "\n";
  else
    std::cout << hct::cli::EscapeText(hct::FormatInspect(*rep));
  return kOk;
}

// The demo model is small by design; sizes outside these ranges would only exhaust memory.
hct::Status CheckDemoSizes(const hct::DemoModelOptions& o) {
  auto in = [](const char* name, int v, int lo, int hi) {
    return v >= lo && v <= hi ? hct::Status::OK()
                              : hct::Status::InvalidArgument(std::string("--") + name +
                                                             " must be " + Range(lo, hi));
  };
  HCT_RETURN_IF_ERROR(in("layers", o.layers, 1, 256));
  HCT_RETURN_IF_ERROR(in("hidden", o.hidden, 16, 16384));
  HCT_RETURN_IF_ERROR(in("vocab", o.vocab, 1, 1 << 20));
  HCT_RETURN_IF_ERROR(in("shards", o.shards, 1, 64));
  return hct::Status::OK();
}

int RunDemoModel(int argc, char** argv) {
  hct::DemoModelOptions o;
  po::options_description d("Demo model options");
  d.add_options()("help,h", "show this help")("force,f", po::bool_switch(&o.force),
                                              "replace an existing folder")(
      "layers", po::value<int>(&o.layers)->default_value(o.layers), "decoder layers")(
      "hidden", po::value<int>(&o.hidden)->default_value(o.hidden), "hidden size")(
      "vocab", po::value<int>(&o.vocab)->default_value(o.vocab), "vocabulary size")(
      "shards", po::value<int>(&o.shards)->default_value(o.shards), "safetensors shards")(
      "seed", po::value<uint64_t>(&o.seed)->default_value(o.seed), "random seed");
  po::variables_map vm;
  if (auto r = Parse(argc, argv, d, {"DIR"}, vm)) return *r;
  if (hct::Status s = CheckDemoSizes(o); !s.ok()) return Usage(s.message());
  o.intermediate = (o.hidden * 8 / 3 + 15) / 16 * 16;
  const std::string dir = vm["DIR"].as<std::string>();
  hct::Status s = hct::WriteDemoModel(dir, o);
  if (!s.ok()) return Fail(s);
  std::printf("wrote demo model to %s\n", hct::cli::Escape(dir).c_str());
  return kOk;
}

int RunBaseline(int argc, char** argv) {
  hct::PolicyOptions policy;
  po::options_description d("Baseline options (measurements: RTN INT8, symmetric and asymmetric INT4/INT3 g128)");
  d.add_options()("help,h", "show this help")(
      "keep", po::value<std::vector<std::string>>(&policy.keep)->composing(),
      "glob of tensor names kept lossless (excluded, as in convert)");
  po::variables_map vm;
  if (auto r = Parse(argc, argv, d, {"INPUT"}, vm)) return *r;
  auto r = hct::MeasureBaselines(vm["INPUT"].as<std::string>(), policy);
  if (!r.ok()) return Fail(r.status());
  nlohmann::json j = {{"tensors", r->tensors}, {"elements", r->elements}};
  for (const hct::BaselineReport::Method& m : r->methods)
    j[m.key] = {{"rel_rms_error", m.rel_rms_error}, {"bits_per_weight", m.bits_per_weight}};
  std::cout << j.dump(2) << "\n";
  return kOk;
}

}  // namespace

int Main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(kSynopsis, stderr);
    return kUsage;
  }
  const std::string cmd = argv[1];
  if (cmd == "--version") {
    std::printf("%s\n", std::string(hct::kConverterName).c_str());
    return kOk;
  }
  if (cmd == "-h" || cmd == "--help" || cmd == "help") {
    char* help[] = {argv[0], const_cast<char*>("--help")};
    return RunConvert(2, help);
  }
  // Subcommand argv: drop the program name so argv[0] is the subcommand (as parsers expect).
  if (cmd == "decode") return RunDecode(argc - 1, argv + 1);
  if (cmd == "inspect") return RunInspect(argc - 1, argv + 1);
  if (cmd == "baseline") return RunBaseline(argc - 1, argv + 1);
  if (cmd == "demo-model") return RunDemoModel(argc - 1, argv + 1);
  if (cmd == "convert") return RunConvert(argc - 1, argv + 1);
  return RunConvert(argc, argv);
}

int main(int argc, char** argv) {
  return hct::cli::GuardedMain("hct-convert", [&] { return Main(argc, argv); });
}
