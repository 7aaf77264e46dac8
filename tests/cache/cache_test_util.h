// Helpers for the cache tests: temp dirs and safetensors sources written by hand (independently
// of the code under test).
#pragma once

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace hct::testing {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string t = (fs::temp_directory_path() / "hct_cache_test_XXXXXX").string();
    char* p = ::mkdtemp(t.data());
    if (p) path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& s) const { return path_ + "/" + s; }

 private:
  std::string path_;
};

struct FakeTensor {
  std::string name;
  std::string dtype;  // safetensors name
  std::vector<uint64_t> shape;
  std::vector<uint8_t> bytes;
};

// Deterministic pseudo-random bytes.
inline std::vector<uint8_t> RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(rng());
  return v;
}

// Writes a minimal safetensors file: 8-byte LE length, JSON header, contiguous data.
inline void WriteFakeSafetensors(const std::string& path, const std::vector<FakeTensor>& ts) {
  std::string h = "{";
  uint64_t off = 0;
  for (size_t i = 0; i < ts.size(); ++i) {
    const auto& t = ts[i];
    if (i) h += ",";
    h += "\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":[";
    for (size_t k = 0; k < t.shape.size(); ++k) h += (k ? "," : "") + std::to_string(t.shape[k]);
    h += "],\"data_offsets\":[" + std::to_string(off) + "," +
         std::to_string(off + t.bytes.size()) + "]}";
    off += t.bytes.size();
  }
  h += "}";
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  uint64_t n = h.size();
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
  f.write(reinterpret_cast<const char*>(len), 8);
  f.write(h.data(), static_cast<std::streamsize>(h.size()));
  for (const auto& t : ts)
    f.write(reinterpret_cast<const char*>(t.bytes.data()), static_cast<std::streamsize>(t.bytes.size()));
}

// A small sharded "model": `shards` files, `layers` layers with `per_layer` F32 tensors of
// `elems` elements each, plus an embedding and a final norm in shard 0.
struct FakeModel {
  std::string dir;
  std::vector<FakeTensor> all;
};

inline FakeModel MakeFakeModel(const std::string& dir, int shards, int layers, int per_layer,
                               uint64_t elems, uint64_t seed = 1) {
  fs::create_directories(dir);
  FakeModel m;
  m.dir = dir;
  std::vector<std::vector<FakeTensor>> files(shards);
  const char* kinds[] = {"q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"};
  files[0].push_back({"model.embed_tokens.weight", "F32", {4, elems / 4},
                      RandomBytes(elems * 4, seed * 1000 + 1)});
  for (int l = 0; l < layers; ++l)
    for (int k = 0; k < per_layer; ++k) {
      std::string name = "model.layers." + std::to_string(l) + ".self_attn." +
                         kinds[k % 6] + (k >= 6 ? std::to_string(k) : "") + ".weight";
      files[l % shards].push_back(
          {name, "F32", {elems}, RandomBytes(elems * 4, seed * 1000 + 7 + l * 100 + k)});
    }
  files[0].push_back({"model.norm.weight", "BF16", {8}, RandomBytes(16, seed * 1000 + 3)});
  for (int s = 0; s < shards; ++s) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, shards);
    WriteFakeSafetensors(dir + "/" + name, files[s]);
    for (auto& t : files[s]) m.all.push_back(t);
  }
  return m;
}

// Reads [offset, offset+len) of a file.
inline std::vector<uint8_t> ReadRange(const std::string& path, uint64_t off, uint64_t len) {
  std::ifstream f(path, std::ios::binary);
  f.seekg(static_cast<std::streamoff>(off));
  std::vector<uint8_t> v(len);
  f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(len));
  if (static_cast<uint64_t>(f.gcount()) != len) v.clear();
  return v;
}

inline void FlipBit(const std::string& path, uint64_t off, int bit) {
  std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
  f.seekg(static_cast<std::streamoff>(off));
  char c;
  f.read(&c, 1);
  c ^= static_cast<char>(1 << bit);
  f.seekp(static_cast<std::streamoff>(off));
  f.write(&c, 1);
}

// Runs fn in a child process; returns its exit status (or 128 + signal).
template <class F>
int RunInChild(F fn) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int rc = fn();
    ::_exit(rc);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return -1;
}

}  // namespace hct::testing
