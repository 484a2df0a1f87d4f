#include "gpu/tiny_model.h"

#include "core/rng.h"
#include "gpu/errors.h"
#include "gpu/family.h"
#include "gpu/model_file_tensors.h"
#include "gpu/safetensors.h"
#include "tokenizer/bpe_train.h"
#include "tokenizer/tokenizer.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>

namespace bouquet::gpu {
namespace {

void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  if (!out.flush()) throw ModelFileError(fmt::format("{}: write failed", path.string()));
}

DType stored_dtype(const std::string& name) {
  if (name == "f32") return DType::F32;
  if (name == "f16") return DType::F16;
  if (name == "bf16") return DType::BF16;
  throw InputError(fmt::format("--dtype '{}' is not f32, f16 or bf16", name));
}

std::string torch_dtype_name(DType dtype) {
  return dtype == DType::F32 ? "float32" : dtype == DType::F16 ? "float16" : "bfloat16";
}

at::Tensor random_tensor(const TensorSpec& spec, core::Rng rng) {
  at::Tensor t = at::empty(spec.shape, at::TensorOptions().dtype(at::kFloat));
  float* data = t.data_ptr<float>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    data[i] = static_cast<float>(spec.init_mean + spec.init_std * rng.normal());
  }
  return t;
}

// Splits tensors (in checkpoint order) into `shards` runs of about equal bytes.
std::vector<std::vector<NamedTensor>> split_shards(std::vector<NamedTensor> tensors, int64_t shards) {
  uint64_t total = 0;
  for (const auto& t : tensors) total += t.tensor.numel();
  std::vector<std::vector<NamedTensor>> out(shards);
  uint64_t done = 0;
  size_t next = 0;
  for (int64_t s = 0; s < shards; ++s) {
    const uint64_t goal = total * (s + 1) / shards;
    const size_t left_for_later = static_cast<size_t>(shards - s - 1);
    while (next < tensors.size() && tensors.size() - next > left_for_later && (out[s].empty() || done < goal)) {
      done += tensors[next].tensor.numel();
      out[s].push_back(std::move(tensors[next++]));
    }
  }
  return out;
}

}  // namespace

ModelConfig tiny_model_config(const TinyModelConfig& t) {
  const Family* family = lookup_family(t.family);
  if (family == nullptr) {
    throw InputError(fmt::format("--family '{}' is unknown (known: {})", t.family, fmt::join(family_names(), ", ")));
  }
  for (const auto& [flag, value] : {std::pair{"--layers", t.layers},
                                    {"--hidden", t.hidden},
                                    {"--intermediate", t.intermediate},
                                    {"--heads", t.heads},
                                    {"--kv-heads", t.kv_heads},
                                    {"--vocab", t.vocab},
                                    {"--shards", t.shards}}) {
    if (value <= 0) throw InputError(fmt::format("{} must be positive (is {})", flag, value));
  }
  if (t.hidden % t.heads != 0 || (t.hidden / t.heads) % 2 != 0) {
    throw InputError(fmt::format("--hidden {} must be --heads {} times an even head size", t.hidden, t.heads));
  }
  const bool bloom = t.family == "bloom";
  if (!bloom && t.heads % t.kv_heads != 0) {
    throw InputError(fmt::format("--kv-heads {} must divide --heads {}", t.kv_heads, t.heads));
  }
  if (!t.rope_scaling.empty() && (bloom || t.rope_scaling != "llama3")) {
    throw InputError(fmt::format("--rope-scaling '{}' is not llama3{}", t.rope_scaling,
                                 bloom ? " (bloom uses ALiBi, not rotary embeddings)" : ""));
  }
  if (!t.tensor_prefix.empty() && (!bloom || t.tensor_prefix != "transformer.")) {
    throw InputError(fmt::format("--tensor-prefix '{}' must be empty or 'transformer.' (bloom only)", t.tensor_prefix));
  }
  ModelConfig c;
  c.family = t.family;
  c.hidden_size = t.hidden;
  c.intermediate_size = t.intermediate;
  c.num_layers = t.layers;
  c.num_heads = t.heads;
  c.num_kv_heads = t.kv_heads;
  c.head_dim = t.hidden / t.heads;
  c.vocab_size = t.vocab;
  c.norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.tie_word_embeddings = t.tie_embeddings;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  c.max_position_embeddings = 256;
  c.torch_dtype = torch_dtype_name(stored_dtype(t.dtype));
  if (t.rope_scaling == "llama3") {
    // A short original context so a tiny head_dim has frequencies in all three of Llama 3's
    // regimes (kept, blended, divided by factor).
    c.rope_scaling = RopeScaling{"llama3", 8.0, 1.0, 4.0, 64};
    c.max_position_embeddings = 512;
  }
  if (bloom) {
    c.intermediate_size = 4 * t.hidden;
    c.num_kv_heads = t.heads;
    c.tie_word_embeddings = true;
  }
  return c;
}

ModelConfig write_tiny_checkpoint(const TinyModelConfig& t) {
  ModelConfig c = tiny_model_config(t);
  const Family& family = family_of(c);
  const DType dtype = stored_dtype(t.dtype);
  std::filesystem::create_directories(t.out);

  // Hugging Face's order: the embedding tensors, the blocks, then the final norm and LM head.
  std::vector<TensorSpec> specs = family.head_tensors(c);
  const auto after_embeddings = std::find_if(
      specs.begin(), specs.end(), [](const TensorSpec& s) { return s.name.find("embed") == std::string::npos; });
  const auto blocks_at = after_embeddings - specs.begin();
  for (int64_t b = c.num_layers - 1; b >= 0; --b) {
    auto block = family.block_tensors(c, b);
    specs.insert(specs.begin() + blocks_at, block.begin(), block.end());
  }
  const core::Rng rng(t.seed);
  std::vector<NamedTensor> tensors;
  for (size_t i = 0; i < specs.size(); ++i) {
    // The sub-stream follows the tensor's name, so tying or untying the head keeps the others.
    uint64_t stream = 1469598103934665603ULL;
    for (unsigned char ch : specs[i].name) stream = (stream ^ ch) * 1099511628211ULL;
    // Only tensors with another accepted name (the base model's) take the prefix.
    const std::string& name =
        specs[i].other_names.empty() || t.tensor_prefix.empty() ? specs[i].name : specs[i].other_names.front();
    tensors.push_back({name, random_tensor(specs[i], rng.derive(stream))});
  }
  if (t.shards > static_cast<int64_t>(tensors.size())) {
    throw InputError(fmt::format("--shards {} exceeds the {} tensors", t.shards, tensors.size()));
  }

  for (const auto& old : std::filesystem::directory_iterator(t.out)) {
    const std::string name = old.path().filename().string();
    if (name.starts_with("model") && name.find(".safetensors") != std::string::npos) {
      std::filesystem::remove(old.path());  // a stale shard set would shadow the new weights
    }
  }
  if (t.shards == 1) {
    write_safetensors(t.out / "model.safetensors", tensors, dtype);
  } else {
    nlohmann::json weight_map = nlohmann::json::object();
    uint64_t total_bytes = 0;
    const auto shards = split_shards(std::move(tensors), t.shards);
    for (size_t s = 0; s < shards.size(); ++s) {
      const std::string file = fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, t.shards);
      write_safetensors(t.out / file, shards[s], dtype);
      for (const auto& nt : shards[s]) {
        weight_map[nt.name] = file;
        total_bytes += nt.tensor.numel() * dtype_size_bytes(dtype);
      }
    }
    const nlohmann::json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}};
    write_text(t.out / "model.safetensors.index.json", index.dump(2) + "\n");
  }
  write_text(t.out / "config.json", family.write_config(c));
  const nlohmann::json generation = {
      {"bos_token_id", *c.bos_token_id}, {"eos_token_id", c.eos_token_ids[0]}, {"do_sample", false}};
  write_text(t.out / "generation_config.json", generation.dump(2) + "\n");
  c.file = t.out / "config.json";
  return c;
}

namespace {

// What transformers' BloomTokenizerFast reads: no BOS added, BLOOM's four special tokens.
void write_bloom_tokenizer(const TinyModelConfig& t, const ModelConfig& c) {
  std::filesystem::remove(t.out / "tokenizer.model");  // a stale one must not describe the model
  train_byte_level_bpe(tiny_corpus(), t.vocab, t.out);
  const nlohmann::json tokenizer_config = {{"tokenizer_class", "BloomTokenizerFast"},
                                           {"add_prefix_space", false},
                                           {"bos_token", "<s>"},
                                           {"eos_token", "</s>"},
                                           {"unk_token", "<unk>"},
                                           {"pad_token", "<pad>"},
                                           {"padding_side", "left"},
                                           {"model_max_length", c.max_position_embeddings}};
  write_text(t.out / "tokenizer_config.json", tokenizer_config.dump(2) + "\n");
  const nlohmann::json special = {
      {"bos_token", "<s>"}, {"eos_token", "</s>"}, {"unk_token", "<unk>"}, {"pad_token", "<pad>"}};
  write_text(t.out / "special_tokens_map.json", special.dump(2) + "\n");
}

}  // namespace

ModelConfig make_tiny_model(const TinyModelConfig& t) {
  ModelConfig c = write_tiny_checkpoint(t);
  if (c.family == "bloom") {
    write_bloom_tokenizer(t, c);
    return c;
  }
  std::filesystem::remove(t.out / "tokenizer.json");  // it would be preferred to tokenizer.model
  train_sentencepiece(tiny_corpus(), t.vocab, t.out);
  // What transformers' LlamaTokenizer reads: BOS added, EOS not, the trainer's special pieces.
  const nlohmann::json tokenizer_config = {{"tokenizer_class", "LlamaTokenizer"},
                                           {"add_bos_token", true},
                                           {"add_eos_token", false},
                                           {"bos_token", "<s>"},
                                           {"eos_token", "</s>"},
                                           {"unk_token", "<unk>"},
                                           {"legacy", true},
                                           {"model_max_length", c.max_position_embeddings}};
  write_text(t.out / "tokenizer_config.json", tokenizer_config.dump(2) + "\n");
  const nlohmann::json special = {{"bos_token", "<s>"}, {"eos_token", "</s>"}, {"unk_token", "<unk>"}};
  write_text(t.out / "special_tokens_map.json", special.dump(2) + "\n");
  return c;
}

}  // namespace bouquet::gpu
