#include "gpu/gguf_checkpoint.h"

#include "gpu/errors.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdio>

namespace bouquet::gpu {
namespace {

// llama.cpp's block tensor names and the Hugging Face names they came from (convert_hf_to_gguf.py).
constexpr std::pair<std::string_view, std::string_view> kBlockNames[] = {
    {"attn_norm.weight", "input_layernorm.weight"},    {"attn_q.weight", "self_attn.q_proj.weight"},
    {"attn_k.weight", "self_attn.k_proj.weight"},      {"attn_v.weight", "self_attn.v_proj.weight"},
    {"attn_output.weight", "self_attn.o_proj.weight"}, {"ffn_norm.weight", "post_attention_layernorm.weight"},
    {"ffn_gate.weight", "mlp.gate_proj.weight"},       {"ffn_up.weight", "mlp.up_proj.weight"},
    {"ffn_down.weight", "mlp.down_proj.weight"},
};
constexpr std::pair<std::string_view, std::string_view> kHeadNames[] = {
    {"token_embd.weight", "model.embed_tokens.weight"},
    {"output_norm.weight", "model.norm.weight"},
    {"output.weight", "lm_head.weight"},
};

// "model.layers.12.mlp.up_proj.weight" -> 12 and "mlp.up_proj.weight"; false for other names.
bool split_layer_name(const std::string& name, std::string& block, std::string& rest) {
  constexpr std::string_view kPrefix = "model.layers.";
  if (!name.starts_with(kPrefix)) return false;
  const size_t dot = name.find('.', kPrefix.size());
  if (dot == std::string::npos || dot == kPrefix.size()) return false;
  block = name.substr(kPrefix.size(), dot - kPrefix.size());
  if (block.find_first_not_of("0123456789") != std::string::npos) return false;
  rest = name.substr(dot + 1);
  return true;
}

std::string hf_name_of(const std::string& gguf) {
  for (const auto& [g, hf] : kHeadNames) {
    if (gguf == g) return std::string(hf);
  }
  if (!gguf.starts_with("blk.")) return "";
  const size_t dot = gguf.find('.', 4);
  if (dot == std::string::npos) return "";
  const std::string block = gguf.substr(4, dot - 4);
  const std::string rest = gguf.substr(dot + 1);
  for (const auto& [g, hf] : kBlockNames) {
    if (rest == g) return fmt::format("model.layers.{}.{}", block, hf);
  }
  return "";
}

// The config.json a Hugging Face folder of this model carries, from llama.cpp's metadata keys.
nlohmann::json llama_config(const GgufFile& f) {
  const std::string p = "llama.";
  nlohmann::json j = {{"model_type", "llama"}, {"hidden_act", "silu"}};
  j["hidden_size"] = f.integer(p + "embedding_length");
  j["intermediate_size"] = f.integer(p + "feed_forward_length");
  j["num_hidden_layers"] = f.integer(p + "block_count");
  j["num_attention_heads"] = f.integer(p + "attention.head_count");
  if (f.has(p + "attention.head_count_kv")) j["num_key_value_heads"] = f.integer(p + "attention.head_count_kv");
  if (f.has(p + "attention.key_length")) j["head_dim"] = f.integer(p + "attention.key_length");
  if (f.has(p + "attention.layer_norm_rms_epsilon"))
    j["rms_norm_eps"] = f.number(p + "attention.layer_norm_rms_epsilon");
  if (f.has(p + "rope.freq_base")) j["rope_theta"] = f.number(p + "rope.freq_base");
  if (f.has(p + "context_length")) j["max_position_embeddings"] = f.integer(p + "context_length");
  // The embedding's shape is what the weights hold; the metadata's vocab_size may be absent.
  if (const GgufTensor* embed = f.find("token_embd.weight"); embed != nullptr && embed->dims.size() == 2) {
    j["vocab_size"] = embed->dims[1];
  } else if (f.has(p + "vocab_size")) {
    j["vocab_size"] = f.integer(p + "vocab_size");
  }
  j["tie_word_embeddings"] = f.find("output.weight") == nullptr;
  if (f.has("tokenizer.ggml.bos_token_id")) j["bos_token_id"] = f.integer("tokenizer.ggml.bos_token_id");
  if (f.has("tokenizer.ggml.eos_token_id")) j["eos_token_id"] = f.integer("tokenizer.ggml.eos_token_id");

  if (f.find("rope_freqs.weight") != nullptr) {
    f.fail("tensor 'rope_freqs.weight' (Llama 3.1-style rope scaling) is not supported");
  }
  if (f.has(p + "rope.scaling.type")) {
    const std::string type = f.string(p + "rope.scaling.type");
    if (type != "none") f.fail(fmt::format("metadata '{}rope.scaling.type' is '{}'; Bouquet supports none", p, type));
  }
  if (f.has(p + "rope.dimension_count")) {
    const int64_t heads = j["num_attention_heads"].get<int64_t>();
    const int64_t head_dim = j.contains("head_dim") ? j["head_dim"].get<int64_t>()
                             : heads > 0            ? j["hidden_size"].get<int64_t>() / heads
                                                    : 0;
    if (f.integer(p + "rope.dimension_count") != head_dim) {
      f.fail(
          fmt::format("metadata '{}rope.dimension_count' is {} but heads are {} wide; partial rotary "
                      "embeddings are not supported",
                      p, f.integer(p + "rope.dimension_count"), head_dim));
    }
  }
  return j;
}

}  // namespace

GgufCheckpoint::GgufCheckpoint(std::filesystem::path path) : file_(std::move(path)) {
  const std::string arch = file_.string("general.architecture");
  if (arch != "llama") {
    file_.fail(
        fmt::format("metadata 'general.architecture' is '{}'; Bouquet serves GGUF checkpoints of "
                    "architecture llama",
                    arch));
  }
  config_json_ = llama_config(file_).dump(2) + "\n";
  config_ = parse_model_config(config_json_, file_.path());
}

std::string GgufCheckpoint::gguf_name(const std::string& hf_name) const {
  for (const auto& [g, hf] : kHeadNames) {
    if (hf_name == hf) return std::string(g);
  }
  std::string block, rest;
  if (!split_layer_name(hf_name, block, rest)) return "";
  for (const auto& [g, hf] : kBlockNames) {
    if (rest == hf) return fmt::format("blk.{}.{}", block, g);
  }
  return "";
}

std::optional<TensorInfo> GgufCheckpoint::info(const std::string& hf_name) const {
  const GgufTensor* t = file_.find(gguf_name(hf_name));
  if (t == nullptr) return std::nullopt;
  TensorInfo info;
  info.name = hf_name;
  info.dtype = DType::F32;
  info.shape = t->shape();
  info.begin = t->offset;
  info.end = t->offset + t->size_bytes;
  return info;
}

at::Tensor GgufCheckpoint::read(const std::string& hf_name) const {
  const std::string name = gguf_name(hf_name);
  const GgufTensor* t = file_.find(name);
  if (t == nullptr) file_.fail(fmt::format("missing tensor '{}' ('{}' in Hugging Face's names)", name, hf_name));
  at::Tensor tensor = file_.read_f32(name);
  // llama.cpp's converter interleaves each head's rotary halves ((x0, x_half), (x1, x_half+1), ...)
  // for its own rope kernel; Bouquet's rope rotates halves, as the original checkpoint does.
  const bool q = name.ends_with(".attn_q.weight");
  if ((q || name.ends_with(".attn_k.weight")) && tensor.dim() == 2) {
    const int64_t heads = q ? config_.num_heads : config_.num_kv_heads;
    const int64_t rows = tensor.size(0);
    if (rows != heads * config_.head_dim) {
      file_.fail(fmt::format("tensor '{}' has {} rows but {} heads of {} need {}", name, rows, heads, config_.head_dim,
                             heads * config_.head_dim));
    }
    tensor = tensor.reshape({heads, config_.head_dim / 2, 2, tensor.size(1)})
                 .transpose(1, 2)
                 .reshape({rows, tensor.size(1)})
                 .contiguous();
  }
  return tensor;
}

std::vector<std::string> GgufCheckpoint::tensor_names() const {
  std::vector<std::string> names;
  for (const auto& [name, t] : file_.tensors()) {
    if (std::string hf = hf_name_of(name); !hf.empty()) names.push_back(std::move(hf));
  }
  return names;
}

ModelConfig load_gguf_model_config(const std::filesystem::path& path) { return GgufCheckpoint(path).config(); }

}  // namespace bouquet::gpu
