// Many-tensor benchmark (issue 10 item 7): a safetensors header of N small tensors parsed in
// memory (MB/s of header on one core, the SafetensorsFile::Parse step alone), `hct-convert
// inspect`'s work on that file and on its lossless HCT conversion (hct::Inspect + the JSON the
// tool prints), the HCT model's open alone and `hct-convert decode`'s work (hct::DecodeModel
// into the scratch folder). Medians of --runs; one thread.
//
// Each figure is given twice: wall time, and CPU time of the process (getrusage, user + sys;
// the work is one thread). The targets are judged on CPU time of one core: on the shared 2-core
// machine wall time grows with the load average (printed) while CPU time moves much less.
//
//   hct_bench_many_tensors [--tensors N] [--dir SCRATCH] [--runs R]
//
// The inputs match scripts/campaign/run.py item 7: tensors "t.<i>", F32 [4], a header written
// by Python's json.dumps (", " and ": " separators). The HCT conversion is made once per
// scratch folder (hct::Convert --lossless) and reused.
#include <sys/resource.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "hct/container.h"
#include "hct/convert.h"
#include "hct/safetensors.h"
#include <nlohmann/json.hpp>

namespace po = boost::program_options;
namespace fs = std::filesystem;
using hct::bench::Die;
using hct::bench::Median;
using hct::bench::Now;

namespace {

std::string SafetensorsBytes(size_t n, size_t* header_bytes) {
  std::string h = "{";
  for (size_t i = 0; i < n; ++i) {
    if (i) h += ", ";
    h += "\"t." + std::to_string(i) + "\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [" +
         std::to_string(16 * i) + ", " + std::to_string(16 * i + 16) + "]}";
  }
  h += "}";
  while (h.size() % 8) h += ' ';
  *header_bytes = h.size();
  std::string out(8, '\0');
  for (int b = 0; b < 8; ++b) out[b] = static_cast<char>((h.size() >> (8 * b)) & 0xff);
  out += h;
  for (size_t i = 0; i < n; ++i) {
    float v[4] = {float(i), 1, 2, 3};
    out.append(reinterpret_cast<const char*>(v), sizeof v);
  }
  return out;
}

// The ceiling: nlohmann's SAX lexer over the same header with a handler that keeps nothing (the
// reader uses this parser; everything above this time is the reader's own work).
struct NullSax {
  using json = nlohmann::json;
  bool null() { return true; }
  bool boolean(bool) { return true; }
  bool number_integer(json::number_integer_t) { return true; }
  bool number_unsigned(json::number_unsigned_t) { return true; }
  bool number_float(json::number_float_t, const std::string&) { return true; }
  bool string(std::string&) { return true; }
  bool binary(json::binary_t&) { return true; }
  bool start_object(std::size_t) { return true; }
  bool end_object() { return true; }
  bool start_array(std::size_t) { return true; }
  bool end_array() { return true; }
  bool key(std::string&) { return true; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) {
    return false;
  }
};

double CpuNow() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  auto s = [](const timeval& t) { return t.tv_sec + t.tv_usec * 1e-6; };
  return s(u.ru_utime) + s(u.ru_stime);
}

struct Times {
  double wall, cpu;  // medians, seconds
};

template <class F>
Times Time(int runs, F&& f) {
  std::vector<double> w, c;
  for (int r = 0; r < runs; ++r) {
    const double t0 = Now(), c0 = CpuNow();
    f();
    c.push_back(CpuNow() - c0);
    w.push_back(Now() - t0);
  }
  return {Median(w), Median(c)};
}

std::string Load() {
  double l[3] = {0, 0, 0};
  if (getloadavg(l, 3) < 0) return "?";
  char b[64];
  std::snprintf(b, sizeof b, "%.2f %.2f %.2f", l[0], l[1], l[2]);
  return b;
}

// "0.123 s CPU (0.150 s wall)"
std::string Fmt(Times t) {
  char b[96];
  std::snprintf(b, sizeof b, "%.3f s CPU (%.3f s wall)", t.cpu, t.wall);
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  size_t n = 100000;
  std::string dir = "/tmp/hct_bench_many_tensors";
  int runs = 5;
  po::options_description d("options");
  d.add_options()("tensors", po::value(&n), "tensors")("dir", po::value(&dir), "scratch folder")(
      "runs", po::value(&runs), "runs (median)");
  po::variables_map vm;
  po::store(po::parse_command_line(argc, argv, d), vm);
  po::notify(vm);

  size_t header = 0;
  const std::string bytes = SafetensorsBytes(n, &header);
  fs::create_directories(dir + "/in");
  const std::string st_path = dir + "/in/model.safetensors";
  std::ofstream(st_path, std::ios::binary | std::ios::trunc) << bytes;

  std::printf("load average at start: %s\n", Load().c_str());
  std::span<const std::byte> span(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size());
  const Times parse =
      Time(runs, [&] { Die(hct::SafetensorsFile::Parse(span, "mem").status(), "parse"); });
  std::printf("safetensors header, %zu tensors, %.2f MB: parse %s = %.1f MB/s CPU (%.1f MB/s "
              "wall, %.2f us/tensor CPU)\n",
              n, header / 1e6, Fmt(parse).c_str(), header / 1e6 / parse.cpu,
              header / 1e6 / parse.wall, parse.cpu / n * 1e6);
  const char* h0 = bytes.data() + 8;
  const Times lex = Time(runs, [&] {
    NullSax sax;
    nlohmann::json::sax_parse(h0, h0 + header, &sax);
  });
  std::printf("ceiling, the JSON lexer alone on that header: %s = %.1f MB/s CPU (parse at %.0f%%)\n",
              Fmt(lex).c_str(), header / 1e6 / lex.cpu, 100 * lex.cpu / parse.cpu);
  const Times st_inspect = Time(runs, [&] {
    auto r = hct::Inspect(st_path);
    Die(r.status(), "inspect safetensors");
    (void)hct::InspectToJson(*r);
  });
  std::printf("inspect --json of the safetensors file: %s = %.1f MB/s of header CPU\n",
              Fmt(st_inspect).c_str(), header / 1e6 / st_inspect.cpu);

  const std::string hct_dir = dir + "/hct";
  if (!fs::exists(hct_dir + "/" + std::string(hct::kHctModelIndexName))) {
    hct::ConvertOptions co;
    co.policy.lossless = true;
    double t0 = Now();
    Die(hct::Convert(dir + "/in", hct_dir, co).status(), "convert");
    std::printf("convert --lossless (once): %.2f s\n", Now() - t0);
  }
  const Times open = Time(runs, [&] { Die(hct::HctModel::Open(hct_dir).status(), "open"); });
  std::printf("HCT model of %zu tensors: open %s\n", n, Fmt(open).c_str());
  const Times inspect = Time(runs, [&] { Die(hct::Inspect(hct_dir).status(), "inspect"); });
  const Times json = Time(runs, [&] {
    auto r = hct::Inspect(hct_dir);
    Die(r.status(), "inspect");
    (void)hct::InspectToJson(*r);
  });
  const Times table = Time(runs, [&] {
    auto r = hct::Inspect(hct_dir);
    Die(r.status(), "inspect");
    (void)hct::FormatInspect(*r);
  });
  std::printf("inspect of the HCT model: Inspect %s\n  + JSON %s\n  + table %s\n",
              Fmt(inspect).c_str(), Fmt(json).c_str(), Fmt(table).c_str());
  const std::string out_dir = dir + "/decoded";
  const Times decode = Time(runs, [&] {
    hct::DecodeOptions o;
    o.force = true;
    o.threads = 1;
    Die(hct::DecodeModel(hct_dir, out_dir, o).status(), "decode");
  });
  std::printf("decode of the HCT model (hct-convert decode's work, one thread): %s "
              "(target < 2 s CPU)\n",
              Fmt(decode).c_str());
  std::printf("load average at end: %s\n", Load().c_str());
  return 0;
}
