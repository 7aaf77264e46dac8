// LayerStreamer over many layers and several passes (issue 12 item 4): N decoder layers of
// Llama-70B shape (random Gaussian BF16 weights, 1.59 GiB each) written as a safetensors folder
// (one file per layer), converted to HCT at the converter's defaults (layer 0 is converted; the
// other layers' HCT files reuse its encoded chunks under their own names, so every layer is its
// own file but the conversion runs once), and warmed into a cache. Then, for each source, one
// runtime and one LayerStreamer stream every layer, pass after pass (Restart between passes, no
// compute), and the per-pass GB/s (BF16 bytes of the layers over the pass time) is printed next to
// the pinned cudaMemcpy ceiling and the page-cache pread rate measured in the same run, with the
// one-time setup and the host memory held (pinned ring, registered bytes, device scratch).
// Sources: st (safetensors, one-shot), cache (one-shot), cache-resident, hct (page cache),
// hct-resident (resident_budget covering the HCT files); a mode may end in -ds0 (kernels after
// the copies on the copy stream, as before the decode streams) and/or -prof (GPU profile), e.g.
// hct-resident-ds0, hct-resident-prof, hct-prof.
#include <boost/program_options.hpp>
#include <filesystem>
#include <iostream>
#include <map>
#include <sstream>

#include "bench/bench_util.h"
#include "hct/cache.h"
#include "hct/container.h"
#include "hct/convert.h"
#include "hct/runtime.h"
#include "hct/safetensors.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;
using hct::bench::Die;
using hct::bench::Median;
using hct::bench::Now;

namespace {

struct Args {
  std::string dir = "/tmp/hct_bench_stream", modes = "st,cache,cache-resident,hct,hct-resident";
  int layers = 8, passes = 4, prefetch = 1, threads = 0;
  double scale = 1.0;
  bool keep = false;
};

std::string LayerName(int i, const std::string& base_name) {  // model.layers.0.x -> .i.x
  const std::string p0 = "model.layers.0.";
  return "model.layers." + std::to_string(i) + "." + base_name.substr(p0.size());
}

std::string LayerFile(const std::string& dir, int i, const char* ext) {
  char b[64];
  std::snprintf(b, sizeof b, "/model-layer%03d.%s", i, ext);
  return dir + b;
}

// Every layer file of the safetensors folder, the same random weights under each layer's names.
uint64_t WriteSafetensors(const Args& a, const std::string& dir) {
  const auto shapes = hct::bench::Llama70bLayer(a.scale);
  std::vector<std::vector<uint16_t>> data(shapes.size());
  uint64_t layer_bytes = 0;
  for (size_t t = 0; t < shapes.size(); ++t) {
    hct::bench::FillGaussianBF16(&data[t], shapes[t].rows * shapes[t].cols, a.threads, t + 1);
    layer_bytes += data[t].size() * 2;
  }
  hct::SafetensorsWriterOptions wo;
  wo.data_alignment = 4096;
  wo.overwrite = true;
  for (int i = 0; i < a.layers; ++i) {
    auto w = hct::SafetensorsWriter::Create(LayerFile(dir, i, "safetensors"), wo);
    Die(w.status(), "create safetensors");
    for (const auto& s : shapes)
      Die(w->Declare(LayerName(i, s.name), hct::DType::kBF16,
                     s.rows == 1 ? std::vector<uint64_t>{s.cols} : std::vector<uint64_t>{s.rows, s.cols}),
          "declare");
    for (size_t t = 0; t < shapes.size(); ++t)
      Die(w->Write(LayerName(i, shapes[t].name),
                   {reinterpret_cast<const std::byte*>(data[t].data()), data[t].size() * 2}),
          "write");
    Die(w->Finish(), "finish safetensors");
  }
  return layer_bytes;
}

// Layer i's HCT file: layer 0's encoded tensors, chunk by chunk, under layer i's names.
void CloneHctLayer(const hct::HctFile& src, int i, const std::string& path) {
  auto w = hct::HctWriter::Create(path, true);
  Die(w.status(), "create hct");
  for (const auto& [k, v] : src.metadata()) Die(w->SetMetadata(k, v), "metadata");
  for (const hct::TensorEntry& e : src.tensors()) {
    Die(w->BeginTensor(LayerName(i, e.name), e.dtype, e.shape, e.codec, e.codec_params), "begin");
    for (size_t c = 0; c < e.chunks.size(); ++c) {
      auto bytes = src.ReadChunk(e, c);
      Die(bytes.status(), "read chunk");
      const hct::ChunkEntry& ch = e.chunks[c];
      Die(w->AppendChunk(*bytes, ch.decoded_size, ch.decoded_xxh3, ch.elem_offset, ch.elem_count),
          "append");
    }
    Die(w->EndTensor(e.metadata), "end");
  }
  Die(w->Finish(), "finish hct");
}

// Converts layer 0 with the converter's defaults, then writes the other layers from it.
void WriteHct(const Args& a, const std::string& st_dir, const std::string& hct_dir) {
  const std::string one = a.dir + "/layer0-st", conv = a.dir + "/layer0-hct";
  fs::create_directories(one);
  fs::copy_file(LayerFile(st_dir, 0, "safetensors"), LayerFile(one, 0, "safetensors"),
                fs::copy_options::overwrite_existing);
  hct::ConvertOptions co;
  co.threads = a.threads;
  co.force = true;
  const double t0 = Now();
  auto rep = hct::Convert(one, conv, co);
  Die(rep.status(), "convert");
  auto src = hct::HctFile::Open(LayerFile(conv, 0, "hct"));
  Die(src.status(), "open converted layer");
  fs::create_directories(hct_dir);
  for (int i = 0; i < a.layers; ++i) CloneHctLayer(*src, i, LayerFile(hct_dir, i, "hct"));
  std::printf("HCT: layer 0 converted at the defaults in %.1f s (%d threads), %d layer files in "
              "%.1f s: %.3f bytes/weight stored\n",
              rep->seconds, a.threads, a.layers, Now() - t0,
              double(rep->totals.output_bytes) / double(rep->totals.elements));
  fs::remove_all(one);
  fs::remove_all(conv);
}

void ReadTree(const std::string& dir) {  // page cache hot
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) hct::bench::ReadRate(e.path().string(), 8, false);
}

struct Source {
  std::string mode;
  hct::Catalog catalog;
  uint64_t resident_budget = 0;
  int decode_streams = -1;  // -ds0: 0 (kernels after the copies, as before); else the default
  bool profile = false;     // -prof: hct_profile, the GPU breakdown printed after the line
};

hct::Catalog OpenCatalog(const std::string& mode, const std::string& root) {
  auto c = mode == "st" ? hct::Catalog::FromSafetensors(root + "/st")
           : mode.rfind("cache", 0) == 0 ? hct::Catalog::FromCache(root + "/cache")
                                         : hct::Catalog::FromHct(root + "/hct");
  Die(c.status(), ("catalog " + mode).c_str());
  return std::move(*c);
}

std::string Gb(uint64_t b) {
  std::ostringstream o;
  o.precision(2);
  o << std::fixed << double(b) / 1e9 << " GB";
  return o.str();
}

// One runtime + LayerStreamer over every layer of `src`, `passes` times; prints each pass.
void StreamSource(const Args& a, const Source& src, uint64_t layer_bytes, double ceiling,
                  double pread_rate, void* stream) {
  auto opt = hct::RuntimeOptions::FromEnv();
  Die(opt.status(), "options");
  opt->resident_budget = src.resident_budget;
  if (src.decode_streams >= 0) opt->hct_decode_streams = src.decode_streams;
  opt->hct_profile = src.profile;
  auto rt = hct::Runtime::Create(*opt);
  Die(rt.status(), "runtime");
  std::vector<std::vector<hct::TensorSpec>> layers;
  for (int i = 0; i < src.catalog.num_layers(); ++i) layers.push_back(src.catalog.Layer(i));
  double t0 = Now();
  auto ls = hct::LayerStreamer::Create(rt->get(), layers, a.prefetch, stream);
  Die(ls.status(), "streamer");
  const double create_s = Now() - t0;
  std::vector<double> rates;
  for (int p = 0; p < a.passes; ++p) {
    if (p > 0) Die((*ls)->Restart(), "restart");
    t0 = Now();
    hct::LoadedTensor last;
    for (int i = 0; i < int(layers.size()); ++i) {
      auto l = (*ls)->Next();
      Die(l.status(), "next");
      last = l->tensors.back();
    }
    Die(last.Wait(), "wait");
    rates.push_back(double(layer_bytes) * double(layers.size()) / (Now() - t0) / 1e9);
  }
  const hct::RuntimeStats s = (*rt)->stats();
  const double later = Median(std::vector<double>(rates.begin() + (rates.size() > 1), rates.end()));
  std::printf("%-15s", src.mode.c_str());
  for (double r : rates) std::printf(" %6.2f", r);
  std::printf("  | median from pass 2: %6.2f GB/s = %.2f x ceiling, %.2f x pread | create %.2f s "
              "(setup %.2f s) | pinned %s, registered %s (%llu files), device scratch %s%s%s\n",
              later, ceiling > 0 ? later / ceiling : 0.0, later / pread_rate, create_s, s.setup_seconds, Gb(s.pinned_staging_bytes).c_str(),
              Gb(s.registered_bytes).c_str(), (unsigned long long)s.resident_files,
              Gb(s.hct_device_scratch_bytes).c_str(),
              s.resident_fallback.empty() ? "" : " | resident refused: ",
              s.resident_fallback.c_str());
  if (src.profile && s.hct_gpu_span_seconds > 0)
    std::printf("  GPU profile over all passes: %llu groups; copies %.1f ms = %.0f%% of the loads' "
                "GPU spans (%.1f ms); Huffman %.1f ms + dequant %.1f ms summed over groups "
                "(%.2f decoding at a time)\n",
                (unsigned long long)s.hct_gpu_groups, s.hct_gpu_copy_seconds * 1e3,
                100 * s.hct_gpu_copy_seconds / s.hct_gpu_span_seconds,
                s.hct_gpu_span_seconds * 1e3, s.hct_gpu_huff_seconds * 1e3,
                s.hct_gpu_dequant_seconds * 1e3,
                (s.hct_gpu_huff_seconds + s.hct_gpu_dequant_seconds) / s.hct_gpu_span_seconds);
}

// The pinned-copy ceiling of one layer's bytes (0 without a GPU); *stream: the stream the
// streamers use.
double PinnedCeiling(uint64_t bytes, void** stream) {
#if HCT_WITH_CUDA
  if (!hct::bench::UseDevice(false)) return 0;
  cudaStream_t s = hct::bench::OpenDevice(0);
  *stream = s;
  void* dev = nullptr;
  CK(cudaMalloc(&dev, bytes));
  const double c = hct::bench::PinnedCopyCeiling(dev, bytes, s, 5);
  CK(cudaFree(dev));
  return c;
#else
  (void)bytes, (void)stream;
  return 0;
#endif
}

Args Parse(int argc, char** argv) {
  Args a;
  po::options_description d("hct_bench_stream: LayerStreamer over many 70B-shaped layers");
  d.add_options()("help,h", "this help")("dir", po::value(&a.dir)->default_value(a.dir), "scratch")(
      "layers", po::value(&a.layers)->default_value(a.layers), "decoder layers")(
      "passes", po::value(&a.passes)->default_value(a.passes), "passes over the layers")(
      "prefetch", po::value(&a.prefetch)->default_value(a.prefetch), "layers loading ahead")(
      "threads", po::value(&a.threads)->default_value(0), "write/convert threads (0: all)")(
      "scale", po::value(&a.scale)->default_value(1.0), "fraction of the rows (quick tries)")(
      "modes", po::value(&a.modes)->default_value(a.modes), "comma-separated sources")(
      "keep", po::bool_switch(&a.keep), "keep the generated files");
  po::variables_map vm;
  po::store(po::parse_command_line(argc, argv, d), vm);
  po::notify(vm);
  if (vm.count("help")) {
    std::cout << d;
    std::exit(0);
  }
  if (a.threads <= 0) a.threads = int(std::max(1u, std::thread::hardware_concurrency()));
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = Parse(argc, argv);
  fs::remove_all(a.dir);
  fs::create_directories(a.dir + "/st");
  double t0 = Now();
  const uint64_t layer_bytes = WriteSafetensors(a, a.dir + "/st");
  std::printf("%d layers of %.3f GB BF16 written in %.1f s: %s/st\n", a.layers, layer_bytes / 1e9,
              Now() - t0, a.dir.c_str());
  WriteHct(a, a.dir + "/st", a.dir + "/hct");
  t0 = Now();
  {
    auto cache = hct::Cache::Open(a.dir + "/cache");
    Die(cache.status(), "cache");
    Die((*cache)->Warm(a.dir + "/st").status(), "warm");
  }
  std::printf("cache warmed in %.1f s\n", Now() - t0);
  ReadTree(a.dir);
  void* stream = nullptr;
  const double ceiling = PinnedCeiling(layer_bytes, &stream);
  const double pread_rate = hct::bench::ReadRate(LayerFile(a.dir + "/st", 0, "safetensors"), 8, false);
  if (ceiling == 0) std::printf("no GPU: host placement (x ceiling prints 0)\n");
  std::printf("pinned cudaMemcpy ceiling (one layer's bytes): %.2f GB/s; page cache -> pinned "
              "pread (8 threads, 8 MiB): %.2f GB/s\n", ceiling, pread_rate);
  std::printf("per-pass GB/s (BF16 bytes of %d layers / pass time), prefetch %d:\n", a.layers,
              a.prefetch);
  std::stringstream ms(a.modes);
  for (std::string m; std::getline(ms, m, ',');) {
    // Suffixes: -ds0 (no decode streams), -prof (GPU profile); the rest names the source.
    std::string base_mode = m;
    int ds = -1;
    bool prof = false;
    auto strip = [&](const std::string& x) {
      const bool has = base_mode.size() > x.size() &&
                       base_mode.compare(base_mode.size() - x.size(), x.size(), x) == 0;
      if (has) base_mode.resize(base_mode.size() - x.size());
      return has;
    };
    for (int k = 0; k < 2; ++k) {
      if (strip("-prof")) prof = true;
      if (strip("-ds0")) ds = 0;
    }
    Source s{m, OpenCatalog(base_mode, a.dir)};
    s.decode_streams = ds;
    s.profile = prof;
    if (m.find("resident") != std::string::npos) s.resident_budget = 2 * layer_bytes * a.layers;
    StreamSource(a, s, layer_bytes, ceiling, pread_rate, stream);
  }
  std::printf("%s\n", hct::bench::ProcStatus("VmPin:").c_str());
  if (!a.keep) fs::remove_all(a.dir);
  return 0;
}
