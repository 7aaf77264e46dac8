// WriteDemoModel(): a small LLaMA-shaped BF16 model folder, generated (no download, no Python).
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "convert/detail/convert_internal.h"
#include "hct/convert.h"
#include "hct/safetensors.h"

namespace hct {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// splitmix64 + Box-Muller: the same numbers on every platform and standard library.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t Next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double Uniform() { return ((Next() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
  double Normal() {
    if (have_) return have_ = false, spare_;
    const double r = std::sqrt(-2 * std::log(Uniform())), a = 2 * M_PI * Uniform();
    spare_ = r * std::sin(a), have_ = true;
    return r * std::cos(a);
  }

 private:
  uint64_t s_;
  double spare_ = 0;
  bool have_ = false;
};

struct Tensor {
  std::string name;
  std::vector<uint64_t> shape;
  std::vector<std::byte> bf16;
};

Tensor Make(std::string name, std::vector<uint64_t> shape, const std::vector<float>& v) {
  Tensor t{std::move(name), std::move(shape), std::vector<std::byte>(v.size() * 2)};
  (void)FromFloat(v, DType::kBF16, t.bf16);
  return t;
}

// Linear layer: Gaussian, std 1/sqrt(fan_in), rows with somewhat different scales.
Tensor Linear(Rng& rng, std::string name, uint64_t out, uint64_t in) {
  std::vector<float> v(out * in);
  const double base = 1.0 / std::sqrt(static_cast<double>(in));
  for (uint64_t r = 0; r < out; ++r) {
    const double s = base * std::exp(0.25 * rng.Normal());
    for (uint64_t c = 0; c < in; ++c) v[r * in + c] = static_cast<float>(s * rng.Normal());
  }
  return Make(std::move(name), {out, in}, v);
}

// Embedding whose rows change smoothly with the token id: a few low-frequency cosines per
// column plus a little noise.
Tensor OrderedEmbedding(Rng& rng, std::string name, uint64_t vocab, uint64_t hidden) {
  constexpr int kWaves = 6;
  std::vector<double> amp(hidden * kWaves), phase(hidden * kWaves);
  for (uint64_t i = 0; i < amp.size(); ++i) {
    amp[i] = rng.Normal() / (1 + i % kWaves);
    phase[i] = 2 * M_PI * rng.Uniform();
  }
  std::vector<float> v(vocab * hidden);
  for (uint64_t r = 0; r < vocab; ++r)
    for (uint64_t c = 0; c < hidden; ++c) {
      double x = 0;
      for (int k = 0; k < kWaves; ++k)
        x += amp[c * kWaves + k] * std::cos(M_PI * (k + 1) * r / vocab + phase[c * kWaves + k]);
      v[r * hidden + c] = static_cast<float>(0.02 * x + 0.002 * rng.Normal());
    }
  return Make(std::move(name), {vocab, hidden}, v);
}

Tensor Norm(Rng& rng, std::string name, uint64_t n) {
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(1 + 0.05 * rng.Normal());
  return Make(std::move(name), {n}, v);
}

}  // namespace

Status WriteDemoModel(const std::string& dir, const DemoModelOptions& o) {
  if (o.vocab < 1 || o.hidden < 1 || o.layers < 1 || o.intermediate < 1 || o.heads < 1 ||
      o.kv_heads < 1 || o.hidden % o.heads || o.heads % o.kv_heads || o.shards < 1 ||
      o.shards > o.layers + 1)
    return Status::InvalidArgument("demo model: inconsistent sizes");
  HCT_ASSIGN_OR_RETURN(detail::StagingDir stage, detail::StagingDir::Create(dir, o.force));
  Rng rng(o.seed);
  const uint64_t h = o.hidden, hd = h / o.heads, kv = hd * o.kv_heads;
  // Shard s holds layers [s * L / S, (s + 1) * L / S); the embedding goes first, head last.
  std::vector<std::vector<Tensor>> shards(o.shards);
  shards.front().push_back(OrderedEmbedding(rng, "model.embed_tokens.weight", o.vocab, h));
  for (int l = 0; l < o.layers; ++l) {
    auto& sh = shards[static_cast<size_t>(l) * o.shards / o.layers];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    sh.push_back(Norm(rng, p + "input_layernorm.weight", h));
    sh.push_back(Linear(rng, p + "self_attn.q_proj.weight", h, h));
    sh.push_back(Linear(rng, p + "self_attn.k_proj.weight", kv, h));
    sh.push_back(Linear(rng, p + "self_attn.v_proj.weight", kv, h));
    sh.push_back(Linear(rng, p + "self_attn.o_proj.weight", h, h));
    sh.push_back(Norm(rng, p + "post_attention_layernorm.weight", h));
    sh.push_back(Linear(rng, p + "mlp.gate_proj.weight", o.intermediate, h));
    sh.push_back(Linear(rng, p + "mlp.up_proj.weight", o.intermediate, h));
    sh.push_back(Linear(rng, p + "mlp.down_proj.weight", h, o.intermediate));
  }
  shards.back().push_back(Norm(rng, "model.norm.weight", h));
  shards.back().push_back(Linear(rng, "lm_head.weight", o.vocab, h));

  json weight_map = json::object();
  uint64_t total = 0;
  for (int s = 0; s < o.shards; ++s) {
    char name[64];
    if (o.shards == 1)
      std::snprintf(name, sizeof name, "model.safetensors");
    else
      std::snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, o.shards);
    std::vector<TensorData> td;
    for (const Tensor& t : shards[s]) {
      td.push_back({t.name, DType::kBF16, t.shape, t.bf16});
      weight_map[t.name] = name;
      total += t.bf16.size();
    }
    HCT_RETURN_IF_ERROR(
        WriteSafetensors((fs::path(stage.path()) / name).string(), td, {{"format", "pt"}}));
  }
  auto write = [&](const char* file, const json& j) {
    return detail::WriteTextFile((fs::path(stage.path()) / file).string(), j.dump(2) + "\n");
  };
  if (o.shards > 1)
    HCT_RETURN_IF_ERROR(write("model.safetensors.index.json",
                              {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}}));
  HCT_RETURN_IF_ERROR(write("config.json", {{"architectures", {"LlamaForCausalLM"}},
                                            {"model_type", "llama"},
                                            {"vocab_size", o.vocab},
                                            {"hidden_size", o.hidden},
                                            {"intermediate_size", o.intermediate},
                                            {"num_hidden_layers", o.layers},
                                            {"num_attention_heads", o.heads},
                                            {"num_key_value_heads", o.kv_heads},
                                            {"head_dim", hd},
                                            {"hidden_act", "silu"},
                                            {"max_position_embeddings", 512},
                                            {"rms_norm_eps", 1e-5},
                                            {"rope_theta", 10000.0},
                                            {"tie_word_embeddings", false},
                                            {"bos_token_id", 1},
                                            {"eos_token_id", 2},
                                            {"torch_dtype", "bfloat16"}}));
  HCT_RETURN_IF_ERROR(write("generation_config.json",
                            {{"bos_token_id", 1}, {"eos_token_id", 2}, {"max_length", 512}}));
  // A word-level tokenizer over made-up words: enough for tools that expect one.
  json vocab = json::object();
  vocab["<unk>"] = 0, vocab["<s>"] = 1, vocab["</s>"] = 2;
  for (int i = 3; i < o.vocab; ++i) vocab["w" + std::to_string(i)] = i;
  HCT_RETURN_IF_ERROR(
      write("tokenizer.json",
            {{"version", "1.0"},
             {"model", {{"type", "WordLevel"}, {"vocab", vocab}, {"unk_token", "<unk>"}}},
             {"pre_tokenizer", {{"type", "Whitespace"}}}}));
  HCT_RETURN_IF_ERROR(write("tokenizer_config.json", {{"bos_token", "<s>"},
                                                      {"eos_token", "</s>"},
                                                      {"unk_token", "<unk>"},
                                                      {"model_max_length", 512}}));
  return stage.Commit();
}

}  // namespace hct
