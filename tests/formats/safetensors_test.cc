// Tests for the safetensors reader and writer.
//
// Golden and must-fail files in tests/data/safetensors/ come from
// scripts/make_safetensors_testdata.py (pure Python, independent of this code); golden.json
// records what each golden file holds.
//
// Compatibility with the reference Python library (needs `safetensors` + numpy or torch), run on
// the GPU machine after this test has written its files:
//   HCT_KEEP_SAFETENSORS_OUT=/tmp/st-out build-st/tests/formats/hct_formats_tests \
//       --gtest_filter='Safetensors*'
//   python3 scripts/check_safetensors_py.py --json tests/data/safetensors/golden.json \
//       tests/data/safetensors
//   python3 scripts/check_safetensors_py.py --json /tmp/st-out/roundtrip/expect.json \
//       /tmp/st-out/roundtrip
//   python3 scripts/check_safetensors_py.py --compare /tmp/st-out/weights ../shared/weights
#include "hct/safetensors.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "linearity_test_util.h"

namespace hct {
namespace {

namespace fs = std::filesystem;

const std::string kData = std::string(HCT_TEST_DATA_DIR) + "/safetensors";

std::vector<std::byte> ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> v((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(v.size());
  if (!v.empty()) std::memcpy(out.data(), v.data(), v.size());
  return out;
}

std::string Hex(std::span<const std::byte> b) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (std::byte x : b) {
    s += d[static_cast<int>(x) >> 4];
    s += d[static_cast<int>(x) & 15];
  }
  return s;
}

// A fresh temporary directory, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string t = (fs::temp_directory_path() / "hct-st-XXXXXX").string();
    path_ = ::mkdtemp(t.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string operator/(const std::string& n) const { return path_ + "/" + n; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Where to keep written files for scripts/check_safetensors_py.py (empty: don't keep).
std::string KeepDir(const std::string& sub) {
  const char* k = std::getenv("HCT_KEEP_SAFETENSORS_OUT");
  if (!k || !*k) return "";
  std::string d = std::string(k) + "/" + sub;
  fs::create_directories(d);
  return d;
}

std::string WeightsDir() {
  if (const char* e = std::getenv("HCT_WEIGHTS_DIR")) return e;
  return std::string(HCT_SOURCE_DIR) + "/../shared/weights";
}

// ------------------------------------------------------------------------------ basics
TEST(SafetensorsBasics, ElementCount) {
  EXPECT_EQ(ElementCount(std::vector<uint64_t>{}), 1u);
  EXPECT_EQ(ElementCount(std::vector<uint64_t>{2, 3, 4}), 24u);
  EXPECT_EQ(ElementCount(std::vector<uint64_t>{5, 0, 7}), 0u);
  EXPECT_EQ(ElementCount(std::vector<uint64_t>{1ull << 32, 1ull << 32}), std::nullopt);
  // Overflowing partial product but a zero later: the product is 0.
  EXPECT_EQ(ElementCount(std::vector<uint64_t>{1ull << 32, 1ull << 32, 0}), 0u);
  EXPECT_EQ(ElementCount(std::vector<uint64_t>{1ull << 63, 2}), std::nullopt);
  EXPECT_EQ(ShapeString(std::vector<uint64_t>{2, 3}), "[2,3]");
  EXPECT_EQ(ShapeString(std::vector<uint64_t>{}), "[]");
}

// ------------------------------------------------------------------------------ golden
class SafetensorsGolden : public ::testing::TestWithParam<SafetensorsAccess> {};

TEST_P(SafetensorsGolden, MatchesGeneratorRecord) {
  std::ifstream in(kData + "/golden.json");
  ASSERT_TRUE(in) << "missing golden.json; run scripts/make_safetensors_testdata.py";
  nlohmann::json expect = nlohmann::json::parse(in);
  ASSERT_GE(expect.size(), 4u);
  for (auto& [fname, e] : expect.items()) {
    SCOPED_TRACE(fname);
    auto f = SafetensorsFile::Open(kData + "/" + fname, GetParam());
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    EXPECT_EQ(f->file_size(), e["file_size"].get<uint64_t>());
    EXPECT_EQ(f->data_offset() % 8, 0u);
    ASSERT_EQ(f->tensors().size(), e["tensors"].size());
    for (size_t i = 0; i < f->tensors().size(); ++i) {
      const TensorInfo& t = f->tensors()[i];
      const auto& et = e["tensors"][i];
      EXPECT_EQ(t.name, et["name"].get<std::string>()) << "header order";
      EXPECT_EQ(DTypeName(t.dtype), et["dtype"].get<std::string>());
      EXPECT_EQ(t.shape, et["shape"].get<std::vector<uint64_t>>());
      EXPECT_EQ(t.data_begin, et["data_offsets"][0].get<uint64_t>());
      EXPECT_EQ(t.data_end, et["data_offsets"][1].get<uint64_t>());
      std::vector<std::byte> buf(t.num_bytes());
      ASSERT_TRUE(f->Read(t, buf).ok());
      EXPECT_EQ(Hex(buf), et["hex"].get<std::string>()) << t.name;
      if (GetParam() == SafetensorsAccess::kMmap) {
        auto span = f->data(t);
        ASSERT_TRUE(span.ok());
        EXPECT_EQ(Hex(*span), et["hex"].get<std::string>());
      }
      ASSERT_EQ(f->Find(t.name), &t);
    }
    std::vector<std::string> order;
    for (size_t i : f->data_order()) order.push_back(f->tensors()[i].name);
    EXPECT_EQ(order, e["data_order"].get<std::vector<std::string>>());
    EXPECT_EQ(f->metadata(), (e["metadata"].get<std::map<std::string, std::string>>()));
    EXPECT_EQ(f->Find("no.such.tensor"), nullptr);
  }
}

INSTANTIATE_TEST_SUITE_P(Access, SafetensorsGolden,
                         ::testing::Values(SafetensorsAccess::kMmap, SafetensorsAccess::kPread));

TEST(SafetensorsGolden, AllDTypesCovered) {
  auto f = SafetensorsFile::Open(kData + "/golden_all_dtypes.safetensors");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  std::set<DType> seen;
  for (const TensorInfo& t : f->tensors()) seen.insert(t.dtype);
  EXPECT_EQ(seen.size(), static_cast<size_t>(kNumDTypes));
}

// Our writer reproduces the generator's bytes (the reference layout: compact JSON, metadata
// first, space padding to 8) for a file whose header order is its data order.
TEST(SafetensorsGolden, WriterReproducesGoldenBytes) {
  const std::string src = kData + "/golden_all_dtypes.safetensors";
  auto f = SafetensorsFile::Open(src);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  TempDir dir;
  std::vector<TensorData> td;
  for (const TensorInfo& t : f->tensors()) td.push_back({t.name, t.dtype, t.shape, *f->data(t)});
  ASSERT_TRUE(WriteSafetensors(dir / "out.safetensors", td, f->metadata()).ok());
  EXPECT_EQ(ReadAll(dir / "out.safetensors"), ReadAll(src));
}

TEST(SafetensorsRead, PartialReadsAndPreadMode) {
  const std::string src = kData + "/golden_order.safetensors";
  auto m = SafetensorsFile::Open(src, SafetensorsAccess::kMmap);
  auto p = SafetensorsFile::Open(src, SafetensorsAccess::kPread);
  ASSERT_TRUE(m.ok() && p.ok());
  const TensorInfo* t = p->Find("c.bf16");
  ASSERT_NE(t, nullptr);
  std::vector<std::byte> a(3), b(3);
  ASSERT_TRUE(p->ReadAt(*t, 5, a).ok());
  ASSERT_TRUE(m->ReadAt(*m->Find("c.bf16"), 5, b).ok());
  EXPECT_EQ(a, b);
  auto raw = ReadAll(src);
  EXPECT_EQ(0, std::memcmp(a.data(), raw.data() + p->file_offset(*t) + 5, 3));
  std::vector<std::byte> big(4);
  Status s = p->ReadAt(*t, 5, big);
  EXPECT_EQ(s.code(), Code::kOutOfRange);
  EXPECT_NE(s.message().find("passes its end"), std::string::npos) << s.ToString();
  auto d = p->data(*t);
  EXPECT_EQ(d.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(p->Read(*t, a).code(), Code::kInvalidArgument);  // wrong size buffer
  TensorInfo foreign = *t;
  foreign.name = "elsewhere";
  EXPECT_EQ(m->data(foreign).status().code(), Code::kNotFound);
}

TEST(SafetensorsRead, MissingFile) {
  auto f = SafetensorsFile::Open(kData + "/does-not-exist.safetensors");
  EXPECT_EQ(f.status().code(), Code::kNotFound);
  EXPECT_NE(f.status().message().find("does-not-exist.safetensors"), std::string::npos);
}

// ------------------------------------------------------------------------------ must fail
struct BadCase {
  const char* file;
  Code code;
  const char* fragment;
};

const BadCase kBad[] = {
    {"truncated", Code::kOutOfRange,
     "tensor 'b': data_offsets [8, 16) pass the end of the data section (12 bytes"},
    {"truncated_len", Code::kOutOfRange, "file is 5 bytes, too short"},
    {"bad_header_len", Code::kCorruption, "header length 1099511627520 exceeds the limit"},
    {"header_past_end", Code::kOutOfRange, "header length 1000 passes the end of the file"},
    {"offsets_past_end", Code::kOutOfRange, "tensor 'a': data_offsets [100, 116) pass the end"},
    {"overlap", Code::kCorruption, "tensor 'b': data_offsets [8, 16) overlap tensor 'a' [0, 16)"},
    {"gap", Code::kCorruption, "tensor 'b': gap of 8 bytes"},
    {"trailing", Code::kCorruption, "4 bytes after the last tensor"},
    {"shape_overflow", Code::kOutOfRange,
     "tensor 'a': shape [4294967296,4294967296,16] has more than 2^64 elements"},
    {"bytes_overflow", Code::kOutOfRange, "x F32 overflows 64 bits"},
    {"size_mismatch", Code::kCorruption,
     "tensor 'a.weight': data_offsets [0, 10) do not match shape [2,3] x F32 = 24 bytes"},
    {"bad_json", Code::kCorruption, "header is not valid JSON"},
    {"not_object", Code::kCorruption, "header is not a JSON object"},
    {"wrong_dtype", Code::kUnsupported, "tensor 'a': unknown dtype 'F128'"},
    {"metadata_not_string", Code::kCorruption, "__metadata__ value of 'k' is a number"},
    {"metadata_not_object", Code::kCorruption, "__metadata__ is not a JSON object"},
    {"duplicate", Code::kCorruption, "tensor 'a': duplicate name"},
    {"negative_dim", Code::kCorruption, "shape is not an array of non-negative"},
    {"f4_odd", Code::kCorruption, "shape [3] x F4 is 12 bits, not whole bytes"},
    {"reversed_offsets", Code::kCorruption, "data_offsets [8, 0) end before they begin"},
    {"unknown_field", Code::kCorruption, "unknown field 'extra'"},
    {"missing_field", Code::kCorruption, "missing field 'shape'"},
    // Refused where the nesting starts: the reader builds no tree, so depth costs nothing.
    {"deep", Code::kCorruption, "__metadata__ is not a JSON object"},
    {"bad_utf8", Code::kCorruption, "header is not valid JSON"},
};

TEST(SafetensorsMustFail, EachFileGivesItsError) {
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(kData + "/bad")) files += e.is_regular_file();
  EXPECT_EQ(files, std::size(kBad)) << "a must-fail file without an expectation (or vice versa)";
  for (const BadCase& c : kBad) {
    const std::string name = std::string(c.file) + ".safetensors";
    const std::string path = kData + "/bad/" + name;
    SCOPED_TRACE(name);
    ASSERT_TRUE(fs::exists(path));
    const auto bytes = ReadAll(path);
    std::vector<Status> got = {
        SafetensorsFile::Open(path, SafetensorsAccess::kMmap).status(),
        SafetensorsFile::Open(path, SafetensorsAccess::kPread).status(),
        SafetensorsFile::Parse(bytes, name).status(),
    };
    for (const Status& s : got) {
      EXPECT_EQ(s.code(), c.code) << s.ToString();
      EXPECT_NE(s.message().find(c.fragment), std::string::npos) << s.ToString();
      EXPECT_NE(s.message().find(name), std::string::npos) << "error must name the file";
    }
  }
}

// Every strict prefix of a valid file is rejected (never crashes, never a huge allocation).
TEST(SafetensorsMustFail, EveryTruncationRejected) {
  const auto bytes = ReadAll(kData + "/golden_order.safetensors");
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto f = SafetensorsFile::Parse(std::span(bytes).first(n), "cut");
    EXPECT_FALSE(f.ok()) << n;
  }
  EXPECT_TRUE(SafetensorsFile::Parse(bytes, "whole").ok());
}

// ------------------------------------------------------------------------------ writer
std::vector<uint64_t> ShapeFor(DType t) {
  switch (DTypeBits(t)) {
    case 4:
      return {3, 2};  // 6 x 4 bits = 3 bytes
    case 6:
      return {2, 4};  // 8 x 6 bits = 6 bytes
    default:
      return {3, 5};
  }
}

TEST(SafetensorsWriter, RoundTripEveryDTypeStreaming) {
  TempDir dir;
  const std::string keep = KeepDir("roundtrip");
  const std::string path = (keep.empty() ? dir.path() : keep) + "/all_dtypes.safetensors";
  auto w = SafetensorsWriter::Create(path, {.data_alignment = 8, .overwrite = true});
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  ASSERT_TRUE(w->SetMetadata("format", "pt").ok());
  ASSERT_TRUE(w->SetMetadata("note", "streamed \xE2\x9C\x93").ok());
  std::vector<std::vector<std::byte>> data;
  for (int i = 0; i < kNumDTypes; ++i) {
    DType t = static_cast<DType>(i);
    ASSERT_TRUE(w->Declare("t." + std::string(DTypeName(t)), t, ShapeFor(t)).ok());
    std::vector<std::byte> d(*DTypeBytes(t, *ElementCount(ShapeFor(t))));
    for (size_t k = 0; k < d.size(); ++k) d[k] = static_cast<std::byte>(i * 17 + k * 5 + 1);
    data.push_back(std::move(d));
  }
  ASSERT_TRUE(w->Declare("scalar", DType::kF32, {}).ok());
  ASSERT_TRUE(w->Declare("empty", DType::kBF16, {0, 4}).ok());
  data.push_back({std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4}});
  data.push_back({});
  // Stream the whole data section in 7-byte pieces that straddle tensor boundaries.
  std::vector<std::byte> all;
  for (const auto& d : data) all.insert(all.end(), d.begin(), d.end());
  for (size_t off = 0; off < all.size(); off += 7)
    ASSERT_TRUE(w->Append(std::span(all).subspan(off, std::min<size_t>(7, all.size() - off))).ok());
  EXPECT_FALSE(fs::exists(path)) << "visible before Finish";
  ASSERT_TRUE(w->Finish().ok());

  for (auto access : {SafetensorsAccess::kMmap, SafetensorsAccess::kPread}) {
    auto f = SafetensorsFile::Open(path, access);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    EXPECT_EQ(f->data_offset() % 8, 0u);
    ASSERT_EQ(f->tensors().size(), data.size());
    for (size_t i = 0; i < data.size(); ++i) {
      const TensorInfo& t = f->tensors()[i];
      if (i < static_cast<size_t>(kNumDTypes)) {
        EXPECT_EQ(t.dtype, static_cast<DType>(i));
        EXPECT_EQ(t.shape, ShapeFor(t.dtype));
        EXPECT_EQ(t.name, "t." + std::string(DTypeName(t.dtype)));
      }
      std::vector<std::byte> got(t.num_bytes());
      ASSERT_TRUE(f->Read(t, got).ok());
      EXPECT_EQ(got, data[i]) << t.name;
    }
    EXPECT_EQ(f->Find("scalar")->shape, std::vector<uint64_t>{});
    EXPECT_EQ(f->Find("empty")->num_bytes(), 0u);
    EXPECT_EQ(f->metadata().at("note"), "streamed \xE2\x9C\x93");
  }
  if (!keep.empty()) {
    // What the Python check expects, from this test's inputs (format of golden.json).
    nlohmann::json e;
    e["metadata"] = {{"format", "pt"}, {"note", "streamed \xE2\x9C\x93"}};
    for (size_t i = 0; i < data.size(); ++i) {
      const TensorInfo& t = (*w).tensors()[i];  // declared name, dtype, shape, offsets
      e["tensors"].push_back({{"name", t.name},
                              {"dtype", std::string(DTypeName(t.dtype))},
                              {"shape", t.shape},
                              {"data_offsets", {t.data_begin, t.data_end}},
                              {"hex", Hex(data[i])}});
    }
    std::ofstream(keep + "/expect.json") << nlohmann::json{{"all_dtypes.safetensors", e}}.dump(1);
  }
  // The header is padded with spaces, as the reference writer does.
  auto raw = ReadAll(path);
  auto f = SafetensorsFile::Open(path);
  EXPECT_EQ(static_cast<char>(raw[f->data_offset() - 1]) == ' ' ||
                static_cast<char>(raw[f->data_offset() - 1]) == '}',
            true);
}

// Zero-size tensors between, before and after others are written by name with Write(); this
// used to fail with "written out of order" once the tensor before them was complete.
TEST(SafetensorsWriter, ZeroSizeTensorsWrittenByName) {
  TempDir dir;
  const std::string path = dir.path() + "/zeros.safetensors";
  auto w = SafetensorsWriter::Create(path, {});
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  const std::vector<std::byte> four(4, std::byte{7});
  ASSERT_TRUE(w->Declare("z0", DType::kF32, {0}).ok());
  ASSERT_TRUE(w->Declare("a", DType::kF32, {1}).ok());
  ASSERT_TRUE(w->Declare("z1", DType::kBF16, {0, 3}).ok());
  ASSERT_TRUE(w->Declare("z2", DType::kU8, {0}).ok());
  ASSERT_TRUE(w->Declare("b", DType::kF32, {1}).ok());
  ASSERT_TRUE(w->Declare("z3", DType::kI64, {2, 0}).ok());
  for (const char* n : {"z0", "a", "z1", "z2", "b", "z3"}) {
    const bool empty = n[0] == 'z';
    Status st = w->Write(n, empty ? std::span<const std::byte>() : std::span<const std::byte>(four));
    ASSERT_TRUE(st.ok()) << n << ": " << st.ToString();
  }
  ASSERT_TRUE(w->Finish().ok());
  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->tensors().size(), 6u);
  EXPECT_EQ(f->data_size(), 8u);
}

TEST(SafetensorsWriter, AlignmentPadsHeaderTo4096) {
  TempDir dir;
  std::vector<std::byte> a(4096, std::byte{7}), b(10, std::byte{9});
  std::vector<TensorData> td = {{"a", DType::kU8, {4096}, a}, {"b", DType::kU8, {10}, b}};
  ASSERT_TRUE(WriteSafetensors(dir / "x.safetensors", td, {}, {.data_alignment = 4096}).ok());
  auto f = SafetensorsFile::Open(dir / "x.safetensors");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->data_offset(), 4096u);
  EXPECT_EQ(f->file_offset(*f->Find("b")), 8192u);  // aligned because 'a' is 4096 bytes
  EXPECT_EQ(f->file_size(), 8192u + 10);
  auto bad = SafetensorsWriter::Create(dir / "y.safetensors", {.data_alignment = 12});
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
}

TEST(SafetensorsWriter, MisuseIsRejectedAndLeavesNoFile) {
  TempDir dir;
  const std::string path = dir / "w.safetensors";
  std::vector<std::byte> eight(8), four(4);
  {
    auto w = SafetensorsWriter::Create(path);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE(w->Declare("a", DType::kF32, {2}).ok());
    ASSERT_TRUE(w->Declare("b", DType::kF32, {1}).ok());
    Status s = w->Declare("a", DType::kF32, {2});
    EXPECT_EQ(s.code(), Code::kInvalidArgument);
    EXPECT_NE(s.message().find("tensor 'a': declared twice"), std::string::npos) << s.ToString();
    s = w->Declare("f4", DType::kF4, {3});
    EXPECT_EQ(s.code(), Code::kInvalidArgument);
    EXPECT_NE(s.message().find("not a whole number of bytes"), std::string::npos);
    s = w->Declare("huge", DType::kF32, {1ull << 62, 4});
    EXPECT_EQ(s.code(), Code::kOutOfRange);
    EXPECT_EQ(w->Declare("__metadata__", DType::kU8, {1}).code(), Code::kInvalidArgument);
    s = w->Write("b", four);
    EXPECT_EQ(s.code(), Code::kInvalidArgument);
    EXPECT_NE(s.message().find("out of order (next due: 'a')"), std::string::npos) << s.ToString();
    EXPECT_EQ(w->Write("a", four).code(), Code::kInvalidArgument);  // wrong size
    ASSERT_TRUE(w->Write("a", eight).ok());
    EXPECT_EQ(w->Declare("c", DType::kU8, {1}).code(), Code::kInvalidArgument);
    EXPECT_EQ(w->SetMetadata("k", "v").code(), Code::kInvalidArgument);
    EXPECT_EQ(w->Append(eight).code(), Code::kOutOfRange);  // only 4 bytes left
    s = w->Finish();
    EXPECT_EQ(s.code(), Code::kInvalidArgument);
    EXPECT_NE(s.message().find("8 of 12 declared data bytes written (tensor 'b' incomplete)"),
              std::string::npos)
        << s.ToString();
  }
  EXPECT_FALSE(fs::exists(path));
  for (const auto& e : fs::directory_iterator(dir.path()))
    ADD_FAILURE() << "left behind: " << e.path();
  // Existing outputs are not overwritten unless asked.
  { std::ofstream(path) << "x"; }
  EXPECT_EQ(SafetensorsWriter::Create(path).status().code(), Code::kAlreadyExists);
  EXPECT_TRUE(SafetensorsWriter::Create(path, {.overwrite = true}).ok());
}

TEST(SafetensorsWriter, InvalidUtf8NameRejected) {
  TempDir dir;
  auto w = SafetensorsWriter::Create(dir / "u.safetensors");
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(w->Declare("bad\xff", DType::kU8, {0}).ok());
  Status s = w->Finish();
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("UTF-8"), std::string::npos) << s.ToString();
}

// ------------------------------------------------------------------------------ real weights
// Reads every *.safetensors under the shared weights, writes it back in data order and checks
// the data section is byte-identical and the headers agree.
TEST(SafetensorsRealWeights, RewriteKeepsDataSectionIdentical) {
  const std::string root = WeightsDir();
  if (!fs::is_directory(root)) GTEST_SKIP() << "no weights at " << root;
  const std::string keep = KeepDir("weights");
  TempDir tmp;
  int n = 0;
  uint64_t bytes = 0;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    if (!e.is_regular_file() || e.path().extension() != ".safetensors") continue;
    const std::string src = e.path().string();
    SCOPED_TRACE(src);
    auto f = SafetensorsFile::Open(src);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    const std::string rel = fs::relative(e.path(), root).string();
    std::string dst = (keep.empty() ? tmp.path() : keep) + "/" + rel;
    fs::create_directories(fs::path(dst).parent_path());
    auto w = SafetensorsWriter::Create(dst, {.overwrite = true});
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    for (const auto& [k, v] : f->metadata()) ASSERT_TRUE(w->SetMetadata(k, v).ok());
    for (size_t i : f->data_order()) {
      const TensorInfo& t = f->tensors()[i];
      ASSERT_TRUE(w->Declare(t.name, t.dtype, t.shape).ok());
    }
    for (size_t i : f->data_order()) {
      const TensorInfo& t = f->tensors()[i];
      ASSERT_TRUE(w->Write(t.name, *f->data(t)).ok());
    }
    ASSERT_TRUE(w->Finish().ok());
    auto g = SafetensorsFile::Open(dst, SafetensorsAccess::kPread);
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    ASSERT_EQ(g->data_size(), f->data_size());
    auto a = ReadAll(src), b = ReadAll(dst);
    ASSERT_EQ(a.size() - f->data_offset(), b.size() - g->data_offset());
    EXPECT_EQ(0,
              std::memcmp(a.data() + f->data_offset(), b.data() + g->data_offset(), f->data_size()))
        << "data sections differ";
    EXPECT_EQ(g->metadata(), f->metadata());
    ASSERT_EQ(g->tensors().size(), f->tensors().size());
    for (const TensorInfo& t : f->tensors()) {
      const TensorInfo* u = g->Find(t.name);
      ASSERT_NE(u, nullptr) << t.name;
      EXPECT_EQ(u->dtype, t.dtype);
      EXPECT_EQ(u->shape, t.shape);
      EXPECT_EQ(u->data_begin, t.data_begin);
      EXPECT_EQ(u->data_end, t.data_end);
    }
    ++n;
    bytes += f->data_size();
  }
  EXPECT_GT(n, 0);
  std::cout << "rewrote " << n << " files, " << bytes << " data bytes\n";
}

// ------------------------------------------------------------ hostile headers (issue 10)
// A whole file image: 8-byte length, `header` as given (no padding added), `data` bytes.
std::vector<std::byte> Image(const std::string& header, size_t data = 0) {
  std::vector<std::byte> f(8 + header.size() + data);
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) f[i] = static_cast<std::byte>((n >> (8 * i)) & 0xff);
  std::memcpy(f.data() + 8, header.data(), header.size());
  return f;
}

// The header is exactly its declared bytes: nlohmann's lexer stopped at a NUL byte, so
// "{...}\0garbage" was accepted with the rest ignored. Only spaces may follow the object.
TEST(SafetensorsHostile, HeaderIsExactlyItsDeclaredBytes) {
  const std::string obj = R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})";
  EXPECT_TRUE(SafetensorsFile::Parse(Image(obj, 1), "ok").ok());
  EXPECT_TRUE(SafetensorsFile::Parse(Image(obj + "     ", 1), "spaces").ok());
  const std::vector<std::string> bad = {obj + std::string("\0garbage", 8), obj + '\0',
                                        obj + "\n", obj + "\t ", obj + " x",
                                        obj.substr(0, 20) + std::string(1, '\0') + obj.substr(20)};
  for (const std::string& h : bad) {
    SCOPED_TRACE(::testing::PrintToString(h));
    Result<SafetensorsFile> f = SafetensorsFile::Parse(Image(h, 1), "x.safetensors");
    ASSERT_FALSE(f.ok());
    EXPECT_EQ(f.status().code(), Code::kCorruption) << f.status().ToString();
    EXPECT_NE(f.status().message().find("x.safetensors: header"), std::string::npos)
        << f.status().ToString();
  }
  Result<SafetensorsFile> f = SafetensorsFile::Parse(Image(bad[0], 1), "x.safetensors");
  EXPECT_NE(f.status().message().find("NUL byte at offset 53"), std::string::npos)
      << f.status().ToString();
}

// Parsing and writing were quadratic in the number of tensors (ordered_json's linear key
// search, nlohmann's callback parser rescanning the root after every entry): 10 MB of header
// took 23 s to read. Checked as growth, not time: the CPU time of parsing (in memory) and of
// writing 100k tensors against 25k must grow like 4x, not 16x (tests/linearity_test_util.h).
TEST(SafetensorsHostile, ManyTensorsAreLinear) {
  constexpr size_t kTensors = 25000;
  const std::byte one[1] = {std::byte{7}};
  std::vector<TensorData> ts;
  auto make = [&](size_t n) {
    ts.assign(n, {});
    for (size_t i = 0; i < n; ++i)
      ts[i] = {"model.layers." + std::to_string(i) + ".weight", DType::kU8, {1}, one};
  };
  TempDir d;
  const std::string path = d / "many.safetensors";
  auto write = [&](size_t) {
    ASSERT_TRUE(WriteSafetensors(path, ts, {}, {.overwrite = true}).ok());
  };
  const double write_growth = test::GrowthOf4x(kTensors, make, write);

  std::vector<std::byte> image;
  auto image_of = [&](size_t n) {
    make(n);
    write(n);
    std::ifstream in(path, std::ios::binary);
    std::vector<char> c((std::istreambuf_iterator<char>(in)), {});
    image.assign(reinterpret_cast<const std::byte*>(c.data()),
                 reinterpret_cast<const std::byte*>(c.data()) + c.size());
  };
  auto parse = [&](size_t n) {
    Result<SafetensorsFile> f = SafetensorsFile::Parse(image, "many.safetensors");
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    ASSERT_EQ(f->tensors().size(), n);
    EXPECT_EQ(f->tensors()[12345].name, "model.layers.12345.weight") << "header order kept";
  };
  const double parse_growth = test::GrowthOf4x(kTensors, image_of, parse);
  std::cout << "25k -> 100k tensors: write x" << write_growth << ", parse x" << parse_growth
            << " (CPU time; linear 4, quadratic 16)\n";
  EXPECT_LT(write_growth, test::kMaxLinearGrowth);
  EXPECT_LT(parse_growth, test::kMaxLinearGrowth);
}

}  // namespace
}  // namespace hct
