// Tests of the HCT container (docs/hct-format.md): round trips, golden and must-fail files,
// > 4 GiB offsets, forward compatibility, writer misuse.
//
// The files in tests/data/hct/ are produced by this file: run
//   HCT_REGEN_TESTDATA=1 build-hct/tests/formats/hct_formats_tests --gtest_filter='HctData.*'
// to rewrite them (see tests/data/hct/README.md). Byte layout and checksums are re-derived here
// from the spec (XXH3 called directly), not taken from the code under test.
#include "hct/container.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "linearity_test_util.h"

namespace hct {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Bytes = std::vector<unsigned char>;

const unsigned char kMagic[8] = {0x89, 'H', 'C', 'T', '\r', '\n', 0x1a, '\n'};

std::string DataDir() { return std::string(HCT_TEST_DATA_DIR) + "/hct"; }

Bytes ReadAll(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), {});
}
void WriteAll(const std::string& p, const Bytes& b) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  ASSERT_TRUE(out.good()) << p;
}
std::span<const std::byte> AsBytes(const Bytes& b) {
  return {reinterpret_cast<const std::byte*>(b.data()), b.size()};
}
uint64_t Le(const unsigned char* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= uint64_t(p[i]) << (8 * i);
  return v;
}
void PutLe(unsigned char* p, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
std::string Hex(uint64_t v) {
  char b[17];
  std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(v));
  return b;
}

// Builds the 48-byte footer as the spec describes it.
Bytes Footer(uint64_t index_off, const std::string& index, uint16_t major, uint16_t minor) {
  Bytes f(48, 0);
  PutLe(f.data(), index_off, 8);
  PutLe(f.data() + 8, index.size(), 8);
  PutLe(f.data() + 16, XXH3_64bits(index.data(), index.size()), 8);
  PutLe(f.data() + 24, major, 2);
  PutLe(f.data() + 26, minor, 2);
  PutLe(f.data() + 32, XXH3_64bits(f.data(), 32), 8);
  std::memcpy(f.data() + 40, kMagic, 8);
  return f;
}

// Splits a file into everything before the index, and the index text.
void SplitFile(const Bytes& file, Bytes* prefix, std::string* index) {
  const unsigned char* ft = file.data() + file.size() - 48;
  const uint64_t off = Le(ft, 8), len = Le(ft + 8, 8);
  *prefix = Bytes(file.begin(), file.begin() + static_cast<long>(off));
  *index = std::string(file.begin() + static_cast<long>(off),
                       file.begin() + static_cast<long>(off + len));
}

// Replaces the index text (and the version in header and footer), keeping checksums right.
Bytes Reseal(const Bytes& file, const std::string& index, uint16_t major = 1, uint16_t minor = 0) {
  Bytes prefix;
  std::string old;
  SplitFile(file, &prefix, &old);
  PutLe(prefix.data() + 8, major, 2);
  PutLe(prefix.data() + 10, minor, 2);
  Bytes out = prefix;
  out.insert(out.end(), index.begin(), index.end());
  Bytes f = Footer(prefix.size(), index, major, minor);
  out.insert(out.end(), f.begin(), f.end());
  return out;
}

json IndexOf(const Bytes& file) {
  Bytes prefix;
  std::string index;
  SplitFile(file, &prefix, &index);
  return json::parse(index);
}

class TempDir {
 public:
  TempDir() {
    std::string t = (fs::temp_directory_path() / "hct_container_test.XXXXXX").string();
    EXPECT_NE(::mkdtemp(t.data()), nullptr);
    path_ = t;
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// ------------------------------------------------------------------ the golden tiny file
// Tensor "w": F16 [2,2] = 1, 2, 3, 4 (one chunk). Tensor "b": I8 [3] = 1, -2, 3 in two chunks.
const Bytes kW = {0x00, 0x3c, 0x00, 0x40, 0x00, 0x42, 0x00, 0x44};
const Bytes kB = {0x01, 0xfe, 0x03};

Status WriteTiny(const std::string& path) {
  HCT_ASSIGN_OR_RETURN(HctWriter w, HctWriter::Create(path, /*overwrite=*/true));
  HCT_RETURN_IF_ERROR(w.SetMetadata("source", "tiny.safetensors"));
  HCT_RETURN_IF_ERROR(w.SetMetadata("converter", "hct-test"));
  HCT_RETURN_IF_ERROR(w.AddRawTensor("w", DType::kF16, {2, 2}, AsBytes(kW)));
  HCT_RETURN_IF_ERROR(w.BeginTensor("b", DType::kI8, {3}, "raw", "{}"));
  HCT_RETURN_IF_ERROR(w.AppendRawChunk(AsBytes(kB).subspan(0, 2), 0, 2));
  HCT_RETURN_IF_ERROR(w.AppendRawChunk(AsBytes(kB).subspan(2, 1), 2, 1));
  HCT_RETURN_IF_ERROR(w.EndTensor({{"role", "bias"}}));
  return w.Finish();
}

Bytes TinyBytes() {
  TempDir d;
  const std::string p = d / "tiny.hct";
  Status s = WriteTiny(p);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return ReadAll(p);
}

// ------------------------------------------------------------------ must-fail files
enum class Stage { kOpen, kReadChunk, kReadRaw, kOk };
struct Case {
  std::string file;
  Stage stage;
  Code code;
  std::string fragment;  // must appear in the message
  Bytes bytes;
};

std::vector<Case> Cases() {
  const Bytes g = TinyBytes();
  const json idx = IndexOf(g);
  auto with = [&](auto edit, uint16_t major = 1, uint16_t minor = 0) {
    json j = idx;
    edit(j);
    return Reseal(g, j.dump(), major, minor);
  };
  std::vector<Case> v;
  v.push_back({"truncated.hct", Stage::kOpen, Code::kCorruption, "truncated or unfinished",
               Bytes(g.begin(), g.begin() + 6000)});
  Bytes bad = g;
  bad[1] = 'X';
  v.push_back({"bad_magic.hct", Stage::kOpen, Code::kCorruption, "bad magic", bad});
  v.push_back({"newer_major.hct", Stage::kOpen, Code::kUnsupported,
               "file format 2.0 is newer than this reader (1.x); upgrade hct",
               with([](json&) {}, 2, 0)});
  v.push_back({"offset_past_end.hct", Stage::kOpen, Code::kOutOfRange,
               "tensor 'b': chunk 1: bytes [1099511627776, 1099511627777) lie outside",
               with([](json& j) { j["tensors"][1]["chunks"][1]["offset"] = 1ull << 40; })});
  v.push_back({"overlapping_chunks.hct", Stage::kOpen, Code::kCorruption,
               "tensor 'b': chunk 0: bytes [4096, 4098) overlap tensor 'w' chunk 0 [4096, 4104)",
               with([](json& j) { j["tensors"][1]["chunks"][0]["offset"] = 4096; })});
  v.push_back({"misaligned_chunk.hct", Stage::kOpen, Code::kCorruption,
               "tensor 'b': chunk 0: offset 8193 is not aligned to 4096",
               with([](json& j) { j["tensors"][1]["chunks"][0]["offset"] = 8193; })});
  v.push_back({"shape_overflow.hct", Stage::kOpen, Code::kOutOfRange,
               "tensor 'w': shape [4294967296, 4294967296, 2] overflows", with([](json& j) {
                 j["tensors"][0]["shape"] = {4294967296ull, 4294967296ull, 2};
               })});
  {
    std::string text = idx.dump();
    text.pop_back();  // drop the closing brace
    v.push_back({"bad_json.hct", Stage::kOpen, Code::kCorruption, "index is not valid JSON",
                 Reseal(g, text)});
  }
  {
    Bytes b = g;
    Bytes prefix;
    std::string index;
    SplitFile(g, &prefix, &index);
    const size_t at = prefix.size() + index.find("tiny.safetensors");
    b[at] = 'T';  // same length, checksum not updated
    v.push_back(
        {"index_checksum.hct", Stage::kOpen, Code::kCorruption, "index checksum mismatch", b});
  }
  {
    Bytes b = g;
    b[4096 + 1] ^= 0x01;  // first stored byte run: tensor "w" chunk 0
    v.push_back({"chunk_checksum.hct", Stage::kReadChunk, Code::kCorruption,
                 "chunk_checksum.hct: tensor 'w': chunk 0 checksum mismatch", b});
  }
  v.push_back({"unknown_codec.hct", Stage::kReadRaw, Code::kUnsupported,
               "tensor 'b': unknown codec 'zfp-9000'",
               with([](json& j) { j["tensors"][1]["codec"] = "zfp-9000"; })});
  v.push_back({"missing_field.hct", Stage::kOpen, Code::kCorruption,
               "tensor 'w': missing required field 'dtype'",
               with([](json& j) { j["tensors"][0].erase("dtype"); })});
  // Checksum-valid indexes whose sizes would make a decoder allocate without bound (issue 10,
  // item 6: both ended decode and warm in std::bad_alloc). A non-raw codec, so only the
  // container's size rules stand between them and a decoder.
  v.push_back({"chunk_decoded_size.hct", Stage::kOpen, Code::kOutOfRange,
               "tensor 'b': chunk 0: decoded_size 1099511627776 exceeds 4 bytes",
               with([](json& j) {
                 json& b = j["tensors"][1];
                 b["codec"] = "bytesplit-zstd";
                 b["chunks"][0]["decoded_size"] = 1ull << 40;
                 b["decoded_size"] = (1ull << 40) + 1;
               })});
  v.push_back({"huge_chunk.hct", Stage::kOpen, Code::kOutOfRange,
               "tensor 'w': chunk 0: 8589934592 elements of U8 are more than the 4294967296 "
               "bytes a chunk may cover",
               with([](json& j) {
                 json& w = j["tensors"][0];
                 w["codec"] = "bytesplit-zstd";
                 w["dtype"] = "U8";
                 w["shape"] = {1ull << 33};
                 w["chunks"][0]["elem_count"] = 1ull << 33;
                 w["chunks"][0]["decoded_size"] = 1ull << 33;
                 w["decoded_size"] = 1ull << 33;
               })});
  // Issue 10 campaign re-run: a decoded_size of 0 (tensor sum fixed too) opened, and decode
  // then failed with a usage error (a buffer of the wrong size) instead of "corrupt".
  v.push_back({"chunk_decoded_size_0.hct", Stage::kOpen, Code::kCorruption,
               "tensor 'b': chunk 0: decoded_size 0 is neither 2 (the bytes of 2 elements of I8)",
               with([](json& j) {
                 json& b = j["tensors"][1];
                 b["codec"] = "bytesplit-zstd";
                 b["decoded_size"] = b["decoded_size"].get<uint64_t>() -
                                     b["chunks"][0]["decoded_size"].get<uint64_t>();
                 b["chunks"][0]["decoded_size"] = 0;
               })});
  // Not a failure: a newer minor with fields this reader does not know must be read.
  v.push_back({"newer_minor.hct", Stage::kOk, Code::kOk, "",
               with(
                   [](json& j) {
                     j["future_section"] = {{"anything", {1, 2, 3}}};
                     j["tensors"][0]["future_field"] = "x";
                     j["tensors"][1]["chunks"][0]["future_chunk_field"] = {{"k", 1.5}};
                     j["metadata"]["future_key"] = "v";
                   },
                   1, 7)});
  return v;
}

Status Exercise(const HctFile& f) {
  for (const TensorEntry& t : f.tensors()) {
    for (size_t i = 0; i < t.chunks.size(); ++i) HCT_RETURN_IF_ERROR(f.ReadChunk(t, i).status());
    std::vector<std::byte> out(t.decoded_size);
    HCT_RETURN_IF_ERROR(f.ReadRawTensor(t, out));
  }
  return Status::OK();
}

TEST(HctData, GoldenTinyFileIsWhatTheWriterProduces) {
  const Bytes g = TinyBytes();
  const std::string golden = DataDir() + "/tiny.hct";
  if (std::getenv("HCT_REGEN_TESTDATA")) WriteAll(golden, g);
  const Bytes committed = ReadAll(golden);
  ASSERT_FALSE(committed.empty()) << golden << " missing";
  EXPECT_EQ(committed, g) << "the writer's output changed: a format change must bump the "
                             "version and regenerate tests/data/hct (see README.md there)";
}

TEST(HctData, GoldenTinyFileLayoutMatchesSpec) {
  const Bytes g = ReadAll(DataDir() + "/tiny.hct");
  ASSERT_GT(g.size(), 4096u + 48u);
  EXPECT_EQ(0, std::memcmp(g.data(), kMagic, 8));
  EXPECT_EQ(Le(&g[8], 2), 1u);   // major
  EXPECT_EQ(Le(&g[10], 2), 0u);  // minor
  EXPECT_EQ(Le(&g[12], 4), 0u);  // flags
  for (size_t i = 16; i < 4096; ++i) ASSERT_EQ(g[i], 0) << i;
  // Chunks at 4096, 8192, 12288: w's 8 bytes, then b's 2 and 1.
  EXPECT_EQ(Bytes(&g[4096], &g[4104]), kW);
  EXPECT_EQ(Bytes(&g[8192], &g[8194]), (Bytes{0x01, 0xfe}));
  EXPECT_EQ(g[12288], 0x03);
  const unsigned char* ft = &g[g.size() - 48];
  EXPECT_EQ(0, std::memcmp(ft + 40, kMagic, 8));
  EXPECT_EQ(Le(ft, 8), 12289u);  // index right after the last stored byte
  EXPECT_EQ(Le(ft, 8) + Le(ft + 8, 8), g.size() - 48);
  EXPECT_EQ(Le(ft + 16, 8), XXH3_64bits(&g[12289], Le(ft + 8, 8)));
  EXPECT_EQ(Le(ft + 24, 2), 1u);
  EXPECT_EQ(Le(ft + 32, 8), XXH3_64bits(ft, 32));
  const json j = IndexOf(g);
  EXPECT_EQ(j["metadata"]["source"], "tiny.safetensors");
  const json& w = j["tensors"][0];
  EXPECT_EQ(w["name"], "w");
  EXPECT_EQ(w["dtype"], "F16");
  EXPECT_EQ(w["shape"], json({2, 2}));
  EXPECT_EQ(w["codec"], "raw");
  EXPECT_EQ(w["codec_params"], json::object());
  EXPECT_EQ(w["decoded_size"], 8);
  EXPECT_EQ(w["chunks"][0]["offset"], 4096);
  EXPECT_EQ(w["chunks"][0]["xxh3"], Hex(XXH3_64bits(kW.data(), kW.size())));
  EXPECT_EQ(w["chunks"][0]["decoded_xxh3"], w["chunks"][0]["xxh3"]);
  // Tensor checksum: XXH3 over the chunks' decoded_xxh3 as 8-byte little-endian values.
  const json& b = j["tensors"][1];
  Bytes cat(16);
  PutLe(cat.data(), XXH3_64bits(kB.data(), 2), 8);
  PutLe(cat.data() + 8, XXH3_64bits(kB.data() + 2, 1), 8);
  EXPECT_EQ(b["decoded_xxh3"], Hex(XXH3_64bits(cat.data(), cat.size())));
  EXPECT_EQ(b["chunks"][1]["elem_offset"], 2);
  EXPECT_EQ(b["chunks"][1]["elem_count"], 1);
  EXPECT_EQ(b["metadata"]["role"], "bias");
}

TEST(HctData, GoldenTinyFileReads) {
  Result<HctFile> f = HctFile::Open(DataDir() + "/tiny.hct");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->version().major, 1);
  EXPECT_EQ(f->metadata().at("converter"), "hct-test");
  ASSERT_EQ(f->tensors().size(), 2u);
  const TensorEntry* b = f->Find("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->dtype, DType::kI8);
  EXPECT_EQ(b->shape, std::vector<uint64_t>{3});
  EXPECT_EQ(b->metadata.at("role"), "bias");
  std::vector<std::byte> out(3);
  ASSERT_TRUE(f->ReadRawTensor(*b, out).ok());
  EXPECT_EQ(0, std::memcmp(out.data(), kB.data(), 3));
  EXPECT_EQ(f->Find("nope"), nullptr);
  EXPECT_TRUE(f->VerifyData().ok());
}

TEST(HctData, MustFailFiles) {
  const bool regen = std::getenv("HCT_REGEN_TESTDATA") != nullptr;
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.file);
    const std::string p = DataDir() + "/" + c.file;
    if (regen) WriteAll(p, c.bytes);
    EXPECT_EQ(ReadAll(p), c.bytes) << "committed file differs from the generator's";
    Result<HctFile> f = HctFile::Open(p);
    // The same bytes through the in-memory parser must give the same verdict.
    Result<HctFile> m = HctFile::Parse(AsBytes(c.bytes), p);
    EXPECT_EQ(f.ok(), m.ok());
    if (c.stage == Stage::kOpen) {
      ASSERT_FALSE(f.ok());
      EXPECT_EQ(f.status().code(), c.code) << f.status().ToString();
      EXPECT_NE(f.status().message().find(c.fragment), std::string::npos) << f.status().ToString();
      EXPECT_NE(f.status().message().find(c.file), std::string::npos) << "names the file";
      EXPECT_EQ(m.status().code(), c.code);
      continue;
    }
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    Status s = Exercise(*f);
    if (c.stage == Stage::kOk) {
      EXPECT_TRUE(s.ok()) << s.ToString();
      EXPECT_TRUE(Exercise(*m).ok());
      continue;
    }
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.code(), c.code) << s.ToString();
    EXPECT_NE(s.message().find(c.fragment), std::string::npos) << s.ToString();
  }
}

TEST(HctData, NewerMinorKeepsKnownFields) {
  Result<HctFile> f = HctFile::Open(DataDir() + "/newer_minor.hct");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->version().minor, 7);
  EXPECT_EQ(f->metadata().at("future_key"), "v");
  ASSERT_NE(f->Find("w"), nullptr);
  std::vector<std::byte> out(8);
  ASSERT_TRUE(f->ReadRawTensor(*f->Find("w"), out).ok());
  EXPECT_EQ(0, std::memcmp(out.data(), kW.data(), 8));
}

TEST(HctData, UnknownCodecStillLists) {
  Result<HctFile> f = HctFile::Open(DataDir() + "/unknown_codec.hct");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  const TensorEntry* b = f->Find("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->codec, "zfp-9000");
  EXPECT_TRUE(f->ReadChunk(*b, 0).ok());  // stored bytes stay readable
  EXPECT_TRUE(f->VerifyData().ok());
}

// ------------------------------------------------------------------ more rejections (in memory)
struct Mutation {
  const char* what;
  std::function<Bytes(const Bytes&)> make;
  Code code;
  const char* fragment;
};

TEST(HctReader, RejectsMalformedIndexes) {
  const Bytes g = TinyBytes();
  const json idx = IndexOf(g);
  auto with = [&](std::function<void(json&)> edit) {
    return [=](const Bytes& file) {
      json j = idx;
      edit(j);
      return Reseal(file, j.dump());
    };
  };
  const std::vector<Mutation> ms = {
      {"empty file", [](const Bytes&) { return Bytes{}; }, Code::kCorruption, "bad magic"},
      {"magic only", [](const Bytes&) { return Bytes(kMagic, kMagic + 8); }, Code::kCorruption,
       "truncated"},
      {"header only", [](const Bytes& f) { return Bytes(f.begin(), f.begin() + 4096); },
       Code::kCorruption, "truncated"},
      {"major 0", [](const Bytes& f) { return Reseal(f, IndexOf(f).dump(), 0, 3); },
       Code::kCorruption, "invalid format version 0.3"},
      {"flags",
       [](const Bytes& f) {
         Bytes b = f;
         b[12] = 1;
         return b;
       },
       Code::kUnsupported, "header flags 0x00000001"},
      {"footer checksum",
       [](const Bytes& f) {
         Bytes b = f;
         b[b.size() - 48] ^= 1;
         return b;
       },
       Code::kCorruption, "footer checksum mismatch"},
      {"footer version differs",
       [](const Bytes& f) {
         Bytes b = Reseal(f, IndexOf(f).dump(), 1, 1);
         b[10] = 0;  // header back to 1.0
         return b;
       },
       Code::kCorruption, "footer version 1.1 differs from header version 1.0"},
      {"index length too large",
       [](const Bytes& f) {
         Bytes b = f;
         unsigned char* ft = &b[b.size() - 48];
         PutLe(ft + 8, (1ull << 30) + 1, 8);
         PutLe(ft + 32, XXH3_64bits(ft, 32), 8);
         return b;
       },
       Code::kOutOfRange, "index length 1073741825"},
      {"index not ending at footer",
       [](const Bytes& f) {
         Bytes b = f;
         unsigned char* ft = &b[b.size() - 48];
         PutLe(ft, Le(ft, 8) - 1, 8);
         PutLe(ft + 32, XXH3_64bits(ft, 32), 8);
         return b;
       },
       Code::kOutOfRange, "does not end at the footer"},
      {"index in header",
       [](const Bytes& f) {
         Bytes b = f;
         unsigned char* ft = &b[b.size() - 48];
         const uint64_t end = b.size() - 48;
         PutLe(ft, 100, 8);
         PutLe(ft + 8, end - 100, 8);
         PutLe(ft + 16, XXH3_64bits(&b[100], end - 100), 8);
         PutLe(ft + 32, XXH3_64bits(ft, 32), 8);
         return b;
       },
       Code::kOutOfRange, "does not end at the footer"},
      {"root not object", [](const Bytes& f) { return Reseal(f, "[1,2]"); }, Code::kCorruption,
       "not a JSON object"},
      {"no tensors", [](const Bytes& f) { return Reseal(f, "{}"); }, Code::kCorruption,
       "missing required field 'tensors'"},
      {"duplicate name", with([](json& j) { j["tensors"].push_back(j["tensors"][0]); }),
       Code::kCorruption, "duplicate tensor name 'w'"},
      {"gap in elements", with([](json& j) { j["tensors"][1]["chunks"][1]["elem_offset"] = 3; }),
       Code::kCorruption, "tensor 'b': chunk 1: elements start at 3, expected 2"},
      {"missing chunk", with([](json& j) { j["tensors"][1]["chunks"].erase(1); }),
       Code::kCorruption, "tensor 'b': chunks cover 2 of 3 elements"},
      {"negative offset", with([](json& j) { j["tensors"][1]["chunks"][0]["offset"] = -4096; }),
       Code::kCorruption, "'offset' is not a non-negative integer"},
      {"float size", with([](json& j) { j["tensors"][1]["chunks"][0]["stored_size"] = 2.0; }),
       Code::kCorruption, "'stored_size' is not a non-negative integer"},
      {"bad hex", with([](json& j) { j["tensors"][1]["chunks"][0]["xxh3"] = "ABCD"; }),
       Code::kCorruption, "'xxh3' is not 16 lowercase hex digits"},
      {"tensor checksum",
       with([](json& j) { j["tensors"][1]["decoded_xxh3"] = "0000000000000000"; }),
       Code::kCorruption, "differs from the hash of its chunks' decoded_xxh3"},
      {"decoded size sum", with([](json& j) {
         j["tensors"][1]["codec"] = "x";
         j["tensors"][1]["decoded_size"] = 4;
       }),
       Code::kCorruption, "decoded_size 4 differs"},
      {"raw size", with([](json& j) {
         j["tensors"][0]["shape"] = {3};
         j["tensors"][0]["chunks"][0]["elem_count"] = 3;
       }),
       Code::kCorruption, "raw chunk of 3 elements must store and decode to 6 bytes, not 8 / 8"},
      {"unknown dtype", with([](json& j) { j["tensors"][0]["dtype"] = "F128"; }),
       Code::kUnsupported, "unknown dtype 'F128'"},
      {"params not object", with([](json& j) { j["tensors"][0]["codec_params"] = 3; }),
       Code::kCorruption, "'codec_params' is not an object"},
      {"metadata not strings", with([](json& j) { j["metadata"]["n"] = 3; }), Code::kCorruption,
       "'metadata.n' is not a string"},
      {"chunk in header", with([](json& j) { j["tensors"][1]["chunks"][0]["offset"] = 0; }),
       Code::kOutOfRange, "lie outside the chunk data [4096, 12289)"},
      {"chunk over index", with([](json& j) { j["tensors"][1]["chunks"][1]["stored_size"] = 2; }),
       Code::kOutOfRange, "bytes [12288, 12290) lie outside"},
      {"offset wraps", with([](json& j) {
         j["tensors"][1]["chunks"][1]["offset"] = 18446744073709547520ull;  // 2^64 - 4096
         j["tensors"][1]["chunks"][1]["stored_size"] = 8192;
       }),
       Code::kOutOfRange, "lie outside"},
  };
  for (const Mutation& m : ms) {
    SCOPED_TRACE(m.what);
    const Bytes b = m.make(g);
    Result<HctFile> f = HctFile::Parse(AsBytes(b), "mem.hct");
    ASSERT_FALSE(f.ok());
    EXPECT_EQ(f.status().code(), m.code) << f.status().ToString();
    EXPECT_NE(f.status().message().find(m.fragment), std::string::npos) << f.status().ToString();
    EXPECT_EQ(f.status().message().rfind("mem.hct: ", 0), 0u) << f.status().ToString();
  }
}

// The index is read as a stream of JSON events, not as a tree (issue 10 item 7). These cases
// hold what a tree reader gave for free: every member type checked where it is, errors in the
// order of docs/hct-format.md section 4 whatever the member order, invalid JSON anywhere
// winning over an earlier bad tensor, and a repeated member refused rather than silently
// overwritten (a tree kept the last one).
TEST(HctReader, StreamedIndexChecksEveryMemberWhereItIs) {
  const Bytes g = TinyBytes();
  const json idx = IndexOf(g);
  auto with = [&](std::function<void(json&)> edit, std::string tail = "") {
    return [=](const Bytes& file) {
      json j = idx;
      edit(j);
      return Reseal(file, j.dump() + tail);
    };
  };
  // Text edits: a tree cannot hold a repeated member. `from` must occur in the index.
  auto text = [&](std::string from, std::string to) {
    return [=](const Bytes& file) {
      std::string t = idx.dump();
      const size_t at = t.find(from);
      EXPECT_NE(at, std::string::npos) << from;
      if (at != std::string::npos) t.replace(at, from.size(), to);
      return Reseal(file, t);
    };
  };
  const std::vector<Mutation> ms = {
      {"tensors not an array", with([](json& j) { j["tensors"] = 3; }), Code::kCorruption,
       "field 'tensors' is not an array"},
      {"tensor not an object", with([](json& j) { j["tensors"][1] = {1, 2}; }), Code::kCorruption,
       "tensor entry 1 is not an object"},
      {"no name", with([](json& j) { j["tensors"][1].erase("name"); }), Code::kCorruption,
       "tensor 1: missing required field 'name'"},
      {"name a number", with([](json& j) { j["tensors"][0]["name"] = 7; }), Code::kCorruption,
       "tensor 0: field 'name' is not a string"},
      {"no dtype", with([](json& j) { j["tensors"][0].erase("dtype"); }), Code::kCorruption,
       "tensor 'w': missing required field 'dtype'"},
      {"shape an object", with([](json& j) { j["tensors"][0]["shape"] = {{"a", 1}}; }),
       Code::kCorruption, "field 'shape' is not an array"},
      {"shape item negative", with([](json& j) { j["tensors"][0]["shape"] = {2, -2}; }),
       Code::kCorruption, "'shape' is not an array of non-negative integers"},
      {"shape item an array", with([](json& j) { j["tensors"][0]["shape"] = {2, {2}}; }),
       Code::kCorruption, "'shape' is not an array of non-negative integers"},
      {"codec null", with([](json& j) { j["tensors"][0]["codec"] = nullptr; }), Code::kCorruption,
       "tensor 'w': field 'codec' is not a string"},
      {"no codec_params", with([](json& j) { j["tensors"][0].erase("codec_params"); }),
       Code::kCorruption, "missing required field 'codec_params'"},
      {"decoded_size a string", with([](json& j) { j["tensors"][0]["decoded_size"] = "8"; }),
       Code::kCorruption, "'decoded_size' is not a non-negative integer"},
      {"tensor metadata an array", with([](json& j) { j["tensors"][1]["metadata"] = {1}; }),
       Code::kCorruption, "tensor 'b': field 'metadata' is not an object"},
      {"tensor metadata value", with([](json& j) { j["tensors"][1]["metadata"]["z"] = {{"k", 1}}; }),
       Code::kCorruption, "tensor 'b': field 'metadata.z' is not a string"},
      {"chunks an object", with([](json& j) { j["tensors"][1]["chunks"] = json::object(); }),
       Code::kCorruption, "tensor 'b': field 'chunks' is not an array"},
      {"chunk not an object", with([](json& j) { j["tensors"][1]["chunks"][1] = "c"; }),
       Code::kCorruption, "tensor 'b': chunk 1: chunk entry is not an object"},
      {"chunk without xxh3", with([](json& j) { j["tensors"][1]["chunks"][0].erase("xxh3"); }),
       Code::kCorruption, "tensor 'b': chunk 0: missing required field 'xxh3'"},
      {"chunk hex a number", with([](json& j) { j["tensors"][1]["chunks"][0]["decoded_xxh3"] = 1; }),
       Code::kCorruption, "chunk 0: field 'decoded_xxh3' is not 16 lowercase hex digits"},
      {"root metadata an array", with([](json& j) { j["metadata"] = {1}; }), Code::kCorruption,
       "field 'metadata' is not an object"},
      // Precedence: the root's metadata is checked before any tensor, wherever it stands.
      {"metadata after a bad tensor",
       [](const Bytes& f) { return Reseal(f, "{\"tensors\":[1],\"metadata\":{\"n\":1}}"); },
       Code::kCorruption, "field 'metadata.n' is not a string"},
      {"bad metadata and bad tensor", with([](json& j) {
         j["metadata"]["n"] = 3;
         j["tensors"][0]["dtype"] = "F128";
       }),
       Code::kCorruption, "'metadata.n' is not a string"},
      // Invalid JSON after a bad tensor is still invalid JSON.
      {"bad tensor, then junk", with([](json& j) { j["tensors"][0]["dtype"] = "F128"; }, "x"),
       Code::kCorruption, "index is not valid JSON"},
      {"unterminated", [&](const Bytes& f) {
         std::string t = idx.dump();
         return Reseal(f, t.substr(0, t.size() / 2));
       },
       Code::kCorruption, "index is not valid JSON"},
      {"scalar root", [](const Bytes& f) { return Reseal(f, "17"); }, Code::kCorruption,
       "index is not a JSON object"},
      {"repeated tensor member", text("\"codec\":\"raw\"", "\"codec\":\"raw\",\"codec\":\"raw\""),
       Code::kCorruption, "tensor 0: duplicate member 'codec'"},
      {"repeated chunk member", text("\"elem_count\":4,", "\"elem_count\":4,\"elem_count\":4,"),
       Code::kCorruption, "tensor 'w': chunk 0: duplicate member 'elem_count'"},
      {"repeated metadata key", text("\"metadata\":{", "\"metadata\":{\"source\":\"x\","),
       Code::kCorruption, "duplicate member 'metadata.source'"},
      {"repeated codec_params key", text("\"codec_params\":{}", "\"codec_params\":{\"k\":1,\"k\":2}"),
       Code::kCorruption, "tensor 'w': duplicate member 'codec_params.k'"},
  };
  for (const Mutation& m : ms) {
    SCOPED_TRACE(m.what);
    const Bytes b = m.make(g);
    Result<HctFile> f = HctFile::Parse(AsBytes(b), "mem.hct");
    ASSERT_FALSE(f.ok());
    EXPECT_EQ(f.status().code(), m.code) << f.status().ToString();
    EXPECT_NE(f.status().message().find(m.fragment), std::string::npos) << f.status().ToString();
    EXPECT_EQ(f.status().message().rfind("mem.hct: ", 0), 0u) << f.status().ToString();
  }
}

// Members the reader does not know are skipped whatever they hold (nested objects and arrays
// included), at every level; codec_params, the one free-form member, comes back exactly.
TEST(HctReader, StreamedIndexSkipsUnknownMembersAndKeepsCodecParams) {
  const Bytes g = TinyBytes();
  json idx = IndexOf(g);
  const json deep = {{"a", {1, {{"b", {nullptr, true, -3, 2.5, "s"}}}}}, {"e", json::array()}};
  idx["zzz"] = deep;
  idx["tensors"][0]["x_unknown"] = deep;
  idx["tensors"][0]["codec_params"] = deep;  // raw ignores its params; the reader keeps them
  idx["tensors"][1]["chunks"][0]["x_unknown"] = {deep, deep};
  idx["tensors"][1]["metadata"]["k2"] = "v2";
  Result<HctFile> f = HctFile::Parse(AsBytes(Reseal(g, idx.dump())), "mem.hct");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  ASSERT_EQ(f->tensors().size(), 2u);
  EXPECT_EQ(json::parse(f->tensors()[0].codec_params), deep);
  EXPECT_EQ(json::parse(f->tensors()[1].codec_params), json::object());
  EXPECT_EQ(f->tensors()[1].metadata.at("k2"), "v2");
  EXPECT_EQ(f->tensors()[1].metadata.at("role"), "bias");
  EXPECT_EQ(f->tensors()[1].chunks.size(), 2u);
  EXPECT_EQ(f->tensors()[1].chunks[1].offset, 12288u);
  EXPECT_TRUE(f->VerifyData().ok());
}

// An index of many small tensors was read as an nlohmann tree: 100k tensors took most of a
// second before any of them was decoded, and the campaign of issue 10 found the JSON handling
// quadratic. Built here from the spec (raw F32 [4] tensors of zeros, one chunk each), opened
// in memory at n and 4n: the CPU time must grow like 4x, not 16x.
TEST(HctHostile, ManyTensorIndexIsLinear) {
  constexpr size_t kTensors = 4000;
  Bytes file;
  auto make = [&](size_t n) {
    const unsigned char zeros[16] = {};
    const std::string chunk_hash = Hex(XXH3_64bits(zeros, 16));
    unsigned char le[8];
    PutLe(le, XXH3_64bits(zeros, 16), 8);
    const std::string tensor_hash = Hex(XXH3_64bits(le, 8));
    std::string index = "{\"metadata\":{},\"tensors\":[";
    for (size_t i = 0; i < n; ++i) {
      if (i) index += ',';
      index += "{\"chunks\":[{\"decoded_size\":16,\"decoded_xxh3\":\"" + chunk_hash +
               "\",\"elem_count\":4,\"elem_offset\":0,\"offset\":" + std::to_string(4096 * (i + 1)) +
               ",\"stored_size\":16,\"xxh3\":\"" + chunk_hash +
               "\"}],\"codec\":\"raw\",\"codec_params\":{},\"decoded_size\":16,\"decoded_xxh3\":\"" +
               tensor_hash + "\",\"dtype\":\"F32\",\"name\":\"t." + std::to_string(i) +
               "\",\"shape\":[4]}";
    }
    index += "]}";
    file.assign(4096 * (n + 1), 0);
    std::memcpy(file.data(), kMagic, 8);
    PutLe(file.data() + 8, 1, 2);  // version 1.0, flags 0
    file.insert(file.end(), index.begin(), index.end());
    const Bytes foot = Footer(4096 * (n + 1), index, 1, 0);
    file.insert(file.end(), foot.begin(), foot.end());
  };
  auto open = [&](size_t n) {
    Result<HctFile> f = HctFile::Parse(AsBytes(file), "many.hct");
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    ASSERT_EQ(f->tensors().size(), n);
    ASSERT_NE(f->Find("t.3999"), nullptr);
  };
  const double growth = test::GrowthOf4x(kTensors, make, open);
  std::cout << "4k -> 16k tensors: open x" << growth << " (CPU time; linear 4, quadratic 16)\n";
  EXPECT_LT(growth, test::kMaxLinearGrowth);

  // The measurement can tell: a linear search per name (what ordered_json did per key) grows
  // past the bound.
  std::vector<std::string> names;
  auto named = [&](size_t n) {
    names.clear();
    for (size_t i = 0; i < n; ++i) names.push_back("t." + std::to_string(i));
  };
  auto quadratic = [&](size_t n) {
    size_t fresh = 0;
    for (size_t i = 0; i < n; ++i)
      fresh += std::find(names.begin(), names.begin() + i, names[i]) == names.begin() + i;
    ASSERT_EQ(fresh, n);
  };
  const double q = test::GrowthOf4x(2000, named, quadratic);
  std::cout << "quadratic reference: x" << q << "\n";
  EXPECT_GT(q, test::kMaxLinearGrowth);
}

// ------------------------------------------------------------------ round trips
struct Made {
  std::string name;
  DType dtype;
  std::vector<uint64_t> shape;
  Bytes data;
  uint64_t chunk_elems;
};

TEST(HctRoundTrip, EveryDTypeManyTensors) {
  std::mt19937_64 rng(7);
  std::vector<Made> made;
  for (int k = 0; k < kNumDTypes; ++k) {
    const DType t = static_cast<DType>(k);
    // Sub-byte types: element counts and chunk sizes multiples of 8 keep bytes whole.
    for (std::vector<uint64_t> shape : {std::vector<uint64_t>{8 * (1 + rng() % 40), 24},
                                        std::vector<uint64_t>{16}, std::vector<uint64_t>{}}) {
      uint64_t n = 1;
      for (uint64_t d : shape) n *= d;
      if (DTypeBits(t) < 8 && n % 8 != 0) continue;
      Made m;
      m.name = "layers." + std::to_string(made.size()) + "." + std::string(DTypeName(t));
      m.dtype = t;
      m.shape = shape;
      m.data.resize(*DTypeBytes(t, n));
      for (auto& x : m.data) x = static_cast<unsigned char>(rng());
      m.chunk_elems = shape.size() == 2 ? 8 * (1 + rng() % 16) : 0;
      made.push_back(std::move(m));
    }
  }
  made.push_back({"empty", DType::kF32, {0, 5}, {}, 0});
  TempDir d;
  const std::string p = d / "all.hct";
  {
    Result<HctWriter> w = HctWriter::Create(p, false);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    ASSERT_TRUE(w->SetMetadata("source_xxh3", "0123456789abcdef").ok());
    for (const Made& m : made) {
      Status s = w->AddRawTensor(m.name, m.dtype, m.shape, AsBytes(m.data), m.chunk_elems);
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
    ASSERT_TRUE(w->Finish().ok());
  }
  const Bytes file = ReadAll(p);
  for (int pass = 0; pass < 2; ++pass) {
    Result<HctFile> f = pass == 0 ? HctFile::Open(p) : HctFile::Parse(AsBytes(file), p);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    ASSERT_EQ(f->tensors().size(), made.size());
    EXPECT_EQ(f->metadata().at("source_xxh3"), "0123456789abcdef");
    for (size_t i = 0; i < made.size(); ++i) {
      const Made& m = made[i];
      const TensorEntry& t = f->tensors()[i];
      SCOPED_TRACE(m.name);
      EXPECT_EQ(t.name, m.name);
      EXPECT_EQ(f->Find(m.name), &t);
      EXPECT_EQ(t.dtype, m.dtype);
      EXPECT_EQ(t.shape, m.shape);
      EXPECT_EQ(t.codec, "raw");
      EXPECT_EQ(t.decoded_size, m.data.size());
      Bytes hashes;
      for (const ChunkEntry& c : t.chunks) {
        EXPECT_EQ(c.offset % 4096, 0u);
        ASSERT_LE(c.offset + c.stored_size, file.size());
        EXPECT_EQ(c.xxh3, XXH3_64bits(&file[c.offset], c.stored_size));
        for (int b = 0; b < 8; ++b) hashes.push_back(static_cast<unsigned char>(c.xxh3 >> 8 * b));
      }
      EXPECT_EQ(t.decoded_xxh3, XXH3_64bits(hashes.data(), hashes.size()));
      if (m.chunk_elems) {
        const uint64_t n = m.shape[0] * m.shape[1];
        EXPECT_EQ(t.chunks.size(), (n + m.chunk_elems - 1) / m.chunk_elems);
      }
      std::vector<std::byte> out(t.decoded_size);
      Status s = f->ReadRawTensor(t, out);
      ASSERT_TRUE(s.ok()) << s.ToString();
      EXPECT_TRUE(out.empty() || 0 == std::memcmp(out.data(), m.data.data(), out.size()));
    }
    EXPECT_TRUE(f->VerifyData().ok());
  }
}

TEST(HctRoundTrip, OpaqueCodecChunksAndParams) {
  TempDir d;
  const std::string p = d / "codec.hct";
  const json params = {{"level", 19}, {"planes", {"hi", "lo"}}, {"scale", 0.125}};
  {
    auto w = HctWriter::Create(p, false);
    ASSERT_TRUE(w.ok());
    // Spaces and key order are the caller's; the file holds the compact sorted form.
    ASSERT_TRUE(w->BeginTensor("q", DType::kBF16, {1000, 3}, "dctq-zstd",
                               R"({ "scale": 0.125, "planes": ["hi", "lo"], "level": 19 })")
                    .ok());
    Bytes s1(100, 0xaa), s2(5000, 0xbb);
    ASSERT_TRUE(w->AppendChunk(AsBytes(s1), 4000, 0x1111, 0, 2000).ok());
    ASSERT_TRUE(w->AppendChunk(AsBytes(s2), 2000, 0x2222, 2000, 1000).ok());
    ASSERT_TRUE(w->EndTensor().ok());
    ASSERT_TRUE(w->Finish().ok());
  }
  auto f = HctFile::Open(p);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  const TensorEntry& t = f->tensors()[0];
  EXPECT_EQ(json::parse(t.codec_params), params);
  EXPECT_EQ(t.codec_params, R"({"level":19,"planes":["hi","lo"],"scale":0.125})");
  ASSERT_EQ(t.chunks.size(), 2u);
  EXPECT_EQ(t.chunks[0].offset, 4096u);
  EXPECT_EQ(t.chunks[1].offset, 8192u);
  EXPECT_EQ(t.chunks[1].stored_size, 5000u);
  EXPECT_EQ(t.chunks[1].decoded_xxh3, 0x2222u);
  EXPECT_EQ(t.decoded_size, 6000u);
  auto c = f->ReadChunk(t, 1);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ((*c)[4999], std::byte{0xbb});
  std::vector<std::byte> small(10);
  EXPECT_EQ(f->ReadChunk(t, 1, small).code(), Code::kInvalidArgument);
  EXPECT_EQ(f->ReadChunk(t, 2).status().code(), Code::kOutOfRange);
}

TEST(HctRoundTrip, DeterministicBytes) {
  TempDir d;
  ASSERT_TRUE(WriteTiny(d / "a.hct").ok());
  ASSERT_TRUE(WriteTiny(d / "b.hct").ok());
  EXPECT_EQ(ReadAll(d / "a.hct"), ReadAll(d / "b.hct"));
}

// A file whose only chunk lies past 5 GiB, built by hand as a sparse file (no 5 GiB written).
TEST(HctLargeFile, OffsetsAbove4GiB) {
  TempDir d;
  const std::string p = d / "big.hct";
  const uint64_t off = (5ull << 30) + 4096 * 3;
  const std::string payload = "far away bytes";
  const uint64_t ph = XXH3_64bits(payload.data(), payload.size());
  Bytes hs(8);
  PutLe(hs.data(), ph, 8);
  const json idx = {{"tensors",
                     {{{"name", "far"},
                       {"dtype", "U8"},
                       {"shape", {payload.size()}},
                       {"codec", "raw"},
                       {"codec_params", json::object()},
                       {"decoded_size", payload.size()},
                       {"decoded_xxh3", Hex(XXH3_64bits(hs.data(), 8))},
                       {"chunks",
                        {{{"offset", off},
                          {"stored_size", payload.size()},
                          {"xxh3", Hex(ph)},
                          {"decoded_size", payload.size()},
                          {"decoded_xxh3", Hex(ph)},
                          {"elem_offset", 0},
                          {"elem_count", payload.size()}}}}}}}};
  const std::string text = idx.dump();
  const uint64_t index_off = off + payload.size();
  Bytes head(16, 0);
  std::memcpy(head.data(), kMagic, 8);
  PutLe(head.data() + 8, 1, 2);
  const Bytes foot = Footer(index_off, text, 1, 0);
  int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, head.data(), head.size(), 0), 16);
  ASSERT_EQ(::pwrite(fd, payload.data(), payload.size(), static_cast<off_t>(off)),
            static_cast<ssize_t>(payload.size()));
  ASSERT_EQ(::pwrite(fd, text.data(), text.size(), static_cast<off_t>(index_off)),
            static_cast<ssize_t>(text.size()));
  ASSERT_EQ(::pwrite(fd, foot.data(), foot.size(), static_cast<off_t>(index_off + text.size())),
            48);
  ::close(fd);
  auto f = HctFile::Open(p);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_GT(f->file_size(), 5ull << 30);
  const TensorEntry* t = f->Find("far");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->chunks[0].offset, off);
  std::vector<std::byte> out(payload.size());
  ASSERT_TRUE(f->ReadRawTensor(*t, out).ok());
  EXPECT_EQ(0, std::memcmp(out.data(), payload.data(), payload.size()));

  // The same index claiming the chunk 1 byte further runs into the index: rejected.
  json bad = idx;
  bad["tensors"][0]["chunks"][0]["stored_size"] = payload.size() + 4096;
  const std::string bt = bad.dump();
  const Bytes bf = Footer(index_off, bt, 1, 0);
  fd = ::open(p.c_str(), O_WRONLY | O_TRUNC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, head.data(), head.size(), 0), 16);
  ASSERT_EQ(::pwrite(fd, bt.data(), bt.size(), static_cast<off_t>(index_off)),
            static_cast<ssize_t>(bt.size()));
  ASSERT_EQ(::pwrite(fd, bf.data(), bf.size(), static_cast<off_t>(index_off + bt.size())), 48);
  ::close(fd);
  auto g = HctFile::Open(p);
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), Code::kOutOfRange);
  EXPECT_NE(g.status().message().find("tensor 'far': chunk 0: bytes [5368721408, 5368725518)"),
            std::string::npos)
      << g.status().ToString();
}

// ------------------------------------------------------------------ writer misuse
TEST(HctWriterTest, RefusesInconsistentInput) {
  TempDir d;
  const std::string p = d / "w.hct";
  auto w = HctWriter::Create(p, false);
  ASSERT_TRUE(w.ok());
  Bytes four(4, 1);
  ASSERT_TRUE(w->BeginTensor("a", DType::kU8, {4}, "raw").ok());
  EXPECT_EQ(w->BeginTensor("x", DType::kU8, {4}, "raw").code(), Code::kInvalidArgument);
  Status s = w->AppendRawChunk(AsBytes(four).subspan(0, 2), 1, 2);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("tensor 'a': chunk 0: elements start at 1, expected 0"),
            std::string::npos)
      << s.ToString();
  EXPECT_EQ(w->AppendChunk(AsBytes(four).subspan(0, 2), 2, 0, 0, 2).code(),
            Code::kInvalidArgument);  // raw with a wrong decoded checksum
  EXPECT_EQ(w->AppendRawChunk(AsBytes(four), 0, 5).code(), Code::kOutOfRange);
  ASSERT_TRUE(w->AppendRawChunk(AsBytes(four).subspan(0, 2), 0, 2).ok());
  s = w->EndTensor();
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("chunks cover 2 of 4 elements"), std::string::npos);
  EXPECT_EQ(w->Finish().code(), Code::kInvalidArgument);  // still inside "a"
  ASSERT_TRUE(w->AppendRawChunk(AsBytes(four).subspan(2, 2), 2, 2).ok());
  ASSERT_TRUE(w->EndTensor().ok());
  EXPECT_EQ(w->BeginTensor("a", DType::kU8, {1}, "raw").code(), Code::kAlreadyExists);
  EXPECT_EQ(w->BeginTensor("p", DType::kU8, {1}, "c", "[]").code(), Code::kInvalidArgument);
  EXPECT_EQ(w->BeginTensor("p", DType::kU8, {1}, "c", "{\"a\": ").code(),
            Code::kInvalidArgument);  // not JSON at all
  EXPECT_EQ(w->BeginTensor("", DType::kU8, {1}, "raw").code(), Code::kInvalidArgument);
  EXPECT_EQ(w->BeginTensor("bad\xff", DType::kU8, {1}, "raw").code(), Code::kInvalidArgument);
  EXPECT_EQ(w->BeginTensor("o", DType::kU8, {1ull << 40, 1ull << 40}, "raw").code(),
            Code::kOutOfRange);
  EXPECT_EQ(w->AddRawTensor("f4", DType::kF4, {3}, AsBytes(four)).code(),
            Code::kInvalidArgument);  // 3 nibbles are not whole bytes
  EXPECT_FALSE(fs::exists(p)) << "nothing visible before Finish";
  ASSERT_TRUE(w->Finish().ok());
  EXPECT_TRUE(fs::exists(p));
  EXPECT_EQ(w->Finish().code(), Code::kInvalidArgument);
  EXPECT_EQ(HctWriter::Create(p, false).status().code(), Code::kAlreadyExists);
  auto f = HctFile::Open(p);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->tensors().size(), 1u);
}

TEST(HctWriterTest, AbandonedWriterLeavesNothing) {
  TempDir d;
  {
    auto w = HctWriter::Create(d / "gone.hct", false);
    ASSERT_TRUE(w.ok());
    Bytes one(1, 7);
    ASSERT_TRUE(w->AddRawTensor("x", DType::kU8, {1}, AsBytes(one)).ok());
  }
  EXPECT_TRUE(fs::is_empty(d.path()));
}

TEST(HctWriterTest, EmptyFileIsValid) {
  TempDir d;
  auto w = HctWriter::Create(d / "e.hct", false);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(w->Finish().ok());
  auto f = HctFile::Open(d / "e.hct");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_TRUE(f->tensors().empty());
  EXPECT_EQ(f->index_offset(), 4096u);
}

}  // namespace
}  // namespace hct
