// Many-tensor benchmark (issue 10 item 7): a safetensors header of N small tensors parsed in
// memory (MB/s of header on one core, the SafetensorsFile::Parse step alone), `hct-convert
// inspect`'s work on that file and on its lossless HCT conversion (hct::Inspect + the JSON the
// tool prints), and the HCT model's open alone. Medians of --runs; one thread.
//
//   hct_bench_many_tensors [--tensors N] [--dir SCRATCH] [--runs R]
//
// The inputs match scripts/campaign/run.py item 7: tensors "t.<i>", F32 [4], a header written
// by Python's json.dumps (", " and ": " separators). The HCT conversion is made once per
// scratch folder (hct::Convert --lossless) and reused.
#include <boost/program_options.hpp>
#include <cstdio>
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

template <class F>
double Time(int runs, F&& f) {
  std::vector<double> t;
  for (int r = 0; r < runs; ++r) {
    double t0 = Now();
    f();
    t.push_back(Now() - t0);
  }
  return Median(t);
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

  std::span<const std::byte> span(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size());
  double parse = Time(runs, [&] { Die(hct::SafetensorsFile::Parse(span, "mem").status(), "parse"); });
  std::printf("safetensors header, %zu tensors, %.2f MB: parse %.3f s = %.1f MB/s (%.2f us/tensor)\n",
              n, header / 1e6, parse, header / 1e6 / parse, parse / n * 1e6);
  const char* h0 = bytes.data() + 8;
  double lex = Time(runs, [&] {
    NullSax sax;
    nlohmann::json::sax_parse(h0, h0 + header, &sax);
  });
  std::printf("ceiling, the JSON lexer alone on that header: %.3f s = %.1f MB/s (parse at %.0f%%)\n",
              lex, header / 1e6 / lex, 100 * lex / parse);
  double st_inspect = Time(runs, [&] {
    auto r = hct::Inspect(st_path);
    Die(r.status(), "inspect safetensors");
    (void)hct::InspectToJson(*r);
  });
  std::printf("inspect --json of the safetensors file: %.3f s\n", st_inspect);

  const std::string hct_dir = dir + "/hct";
  if (!fs::exists(hct_dir + "/" + std::string(hct::kHctModelIndexName))) {
    hct::ConvertOptions co;
    co.policy.lossless = true;
    double t0 = Now();
    Die(hct::Convert(dir + "/in", hct_dir, co).status(), "convert");
    std::printf("convert --lossless (once): %.2f s\n", Now() - t0);
  }
  double open = Time(runs, [&] { Die(hct::HctModel::Open(hct_dir).status(), "open"); });
  std::printf("HCT model of %zu tensors: open %.3f s\n", n, open);
  double inspect = Time(runs, [&] { Die(hct::Inspect(hct_dir).status(), "inspect"); });
  double json = Time(runs, [&] {
    auto r = hct::Inspect(hct_dir);
    Die(r.status(), "inspect");
    (void)hct::InspectToJson(*r);
  });
  double table = Time(runs, [&] {
    auto r = hct::Inspect(hct_dir);
    Die(r.status(), "inspect");
    (void)hct::FormatInspect(*r);
  });
  std::printf("inspect of the HCT model: Inspect %.3f s, + JSON %.3f s, + table %.3f s\n", inspect,
              json, table);
  return 0;
}
