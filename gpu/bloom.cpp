// The BLOOM family (BLOOM-560m ... BLOOM-176B, BLOOMZ), computing what Hugging Face's
// BloomForCausalLM computes: LayerNorm (with bias) on the embeddings and before attention and MLP,
// a fused query_key_value laid out per head, ALiBi position bias instead of rotary embeddings,
// softmax in f32, tanh-approximated GELU, biases on every linear, and the LM head tied to the
// word embeddings. Checkpoints name tensors with or without a "transformer." prefix. Block matrices
// go through Linear (gpu/linear.h), so --quant int8 and the decode kernels apply as for Llama.
#include "gpu/bloom.h"

#include "core/check.h"
#include "gpu/errors.h"
#include "gpu/family.h"
#include "gpu/linear.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <limits>

namespace bouquet::gpu {

std::vector<double> alibi_slopes(int64_t heads) {
  BOUQUET_CHECK(heads > 0, "alibi_slopes needs a positive head count");
  int64_t closest = 1;
  while (closest * 2 <= heads) closest *= 2;
  std::vector<double> slopes;
  const double base = std::exp2(-8.0 / static_cast<double>(closest));
  for (int64_t i = 1; i <= closest; ++i) slopes.push_back(std::pow(base, static_cast<double>(i)));
  // The extra heads take every other slope of the series for 2 * closest heads.
  const double extra_base = std::exp2(-4.0 / static_cast<double>(closest));
  for (int64_t i = 0; i < heads - closest; ++i) {
    slopes.push_back(std::pow(extra_base, static_cast<double>(2 * i + 1)));
  }
  return slopes;
}

SplitQkv split_fused_qkv(const at::Tensor& fused, int64_t heads, int64_t head_dim) {
  BOUQUET_CHECK(fused.dim() == 3 && fused.size(2) == heads * 3 * head_dim,
                "split_fused_qkv needs [batch, tokens, heads * 3 * head_dim]");
  const at::Tensor per_head = fused.view({fused.size(0), fused.size(1), heads, 3, head_dim});
  const auto part = [&](int64_t which) { return per_head.select(3, which).transpose(1, 2); };
  return {part(0), part(1), part(2)};
}

namespace {

constexpr const char* kPrefix = "transformer.";

at::ScalarType accumulate_type(at::ScalarType dtype) { return dtype == at::kDouble ? at::kDouble : at::kFloat; }

// A tensor of the base model (BloomModel), found with or without the prefix BloomForCausalLM adds.
TensorSpec base_tensor(std::string name, std::vector<int64_t> shape, double mean, double std) {
  std::string prefixed = kPrefix + name;
  return {std::move(name), std::move(shape), mean, std, {std::move(prefixed)}};
}

std::string layer_prefix(int64_t block) { return fmt::format("h.{}.", block); }

at::Tensor layer_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps) {
  return at::layer_norm(x, {x.size(-1)}, weight, bias, eps);
}

class BloomBlock final : public Block {
 public:
  BloomBlock(const ModelConfig& config, int64_t block, TensorMap w, const ComputeOptions& options)
      : options_(options), heads_(config.num_heads), head_dim_(config.head_dim), eps_(config.norm_eps) {
    const std::string p = layer_prefix(block);
    const auto take = [&](const std::string& name) { return w.at(p + name); };
    const auto linear = [&](const std::string& name) {
      Linear l(take(name + ".weight"), options, take(name + ".bias"));
      l.set_lora_site(lora_site(config, block, {name}));
      return l;
    };
    input_norm_w_ = take("input_layernorm.weight");
    input_norm_b_ = take("input_layernorm.bias");
    qkv_ = linear("self_attention.query_key_value");
    dense_ = linear("self_attention.dense");
    post_norm_w_ = take("post_attention_layernorm.weight");
    post_norm_b_ = take("post_attention_layernorm.bias");
    up_ = linear("mlp.dense_h_to_4h");
    down_ = linear("mlp.dense_4h_to_h");
    const std::vector<double> slopes = alibi_slopes(heads_);
    slopes_ = at::tensor(slopes, at::TensorOptions().dtype(at::kDouble))
                  .to(options.device, accumulate_type(options.dtype))
                  .view({heads_, 1, 1});
  }

  KvCache make_cache(int64_t batch, int64_t capacity) const override {
    const auto o = at::TensorOptions().device(options_.device).dtype(options_.dtype);
    return {at::zeros({batch, heads_, capacity, head_dim_}, o), at::zeros({batch, heads_, capacity, head_dim_}, o)};
  }

  uint64_t weight_bytes() const override {
    uint64_t total = 0;
    for (const auto* t : {&input_norm_w_, &input_norm_b_, &post_norm_w_, &post_norm_b_}) {
      total += t->numel() * t->element_size();
    }
    for (const auto* l : {&qkv_, &dense_, &up_, &down_}) total += l->weight_bytes();
    return total;
  }

 protected:
  at::Tensor project(const at::Tensor& hidden) const override {
    return qkv_(layer_norm(hidden, input_norm_w_, input_norm_b_, eps_));
  }

  at::Tensor attend(const at::Tensor& fused, int64_t start, KvCache* cache) const override {
    const int64_t tokens = fused.size(1);
    const SplitQkv qkv = split_fused_qkv(fused, heads_, head_dim_);
    at::Tensor keys = qkv.key;
    at::Tensor values = qkv.value;
    int64_t key_start = start;
    if (cache != nullptr) {
      cache->key.narrow(2, start, tokens).copy_(qkv.key);
      cache->value.narrow(2, start, tokens).copy_(qkv.value);
      keys = cache->key.narrow(2, 0, start + tokens);
      values = cache->value.narrow(2, 0, start + tokens);
      key_start = 0;
    }
    return attention(qkv.query, keys, values, start, key_start);
  }

  at::Tensor finish(const at::Tensor& hidden, const at::Tensor& attended) const override {
    const at::Tensor x = hidden + dense_(attended);
    const at::Tensor up = up_(layer_norm(x, post_norm_w_, post_norm_b_, eps_));
    return x + down_(at::gelu(up, "tanh"));
  }

 private:
  // q: [batch, heads, tokens, head_dim] at positions start...; keys/values: [batch, heads, length,
  // head_dim] at positions key_start... Returns [batch, tokens, heads * head_dim].
  at::Tensor attention(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values, int64_t start,
                       int64_t key_start) const {
    const int64_t batch = q.size(0);
    const int64_t tokens = q.size(2);
    const int64_t length = keys.size(2);
    const auto o = at::TensorOptions().dtype(at::kLong).device(q.device());
    const at::Tensor query_pos = at::arange(start, start + tokens, o).unsqueeze(1);
    const at::Tensor key_pos = at::arange(key_start, key_start + length, o).unsqueeze(0);
    // Hugging Face adds slope * key position; slope * (key - query) differs from it by a constant
    // per row, which softmax ignores, and stays small at long positions where f32 would round.
    const at::Tensor distance = (key_pos - query_pos).to(slopes_.scalar_type());
    at::Tensor scores =
        at::matmul(q, keys.transpose(2, 3)).to(slopes_.scalar_type()) / std::sqrt(static_cast<double>(head_dim_));
    scores = scores + slopes_ * distance;
    if (key_start + length - 1 > start) {  // some key lies after some query: mask the future
      scores = scores.masked_fill(key_pos > query_pos, -std::numeric_limits<double>::infinity());
    }
    const at::Tensor probs = at::softmax(scores, -1).to(values.scalar_type());
    return at::matmul(probs, values).transpose(1, 2).reshape({batch, tokens, heads_ * head_dim_});
  }

  ComputeOptions options_;
  int64_t heads_, head_dim_;
  double eps_;
  at::Tensor input_norm_w_, input_norm_b_, post_norm_w_, post_norm_b_;
  Linear qkv_, dense_, up_, down_;  // biased, as every BLOOM linear
  at::Tensor slopes_;               // [heads, 1, 1] in the accumulation dtype
};

class BloomHead final : public Head {
 public:
  BloomHead(const ModelConfig& config, TensorMap w) : eps_(config.norm_eps) {
    embed_ = w.at("word_embeddings.weight");
    embed_norm_w_ = w.at("word_embeddings_layernorm.weight");
    embed_norm_b_ = w.at("word_embeddings_layernorm.bias");
    final_norm_w_ = w.at("ln_f.weight");
    final_norm_b_ = w.at("ln_f.bias");
    lm_head_ = config.tie_word_embeddings ? embed_ : w.at("lm_head.weight");
  }

  at::Tensor embed(const at::Tensor& ids) const override {
    return layer_norm(at::embedding(embed_, ids.to(embed_.device())), embed_norm_w_, embed_norm_b_, eps_);
  }

  at::Tensor logits(const at::Tensor& hidden) const override {
    const at::Tensor h =
        layer_norm(hidden.to(final_norm_w_.device(), final_norm_w_.scalar_type()), final_norm_w_, final_norm_b_, eps_);
    return at::linear(h, lm_head_).to(at::kFloat);
  }

 private:
  double eps_;
  at::Tensor embed_, embed_norm_w_, embed_norm_b_, final_norm_w_, final_norm_b_, lm_head_;
};

// Hugging Face's BloomConfig accepts either name of these fields (attribute_map, n_embed).
int64_t integer_either(const ConfigReader& r, const char* name, const char* other, int64_t lo, int64_t hi) {
  return r.has(name) || !r.has(other) ? r.integer_in(name, lo, hi) : r.integer_in(other, lo, hi);
}

class BloomFamily final : public Family {
 public:
  std::string_view model_type() const override { return "bloom"; }

  void read_config(const ConfigReader& r, ModelConfig& c) const override {
    c.hidden_size = integer_either(r, "hidden_size", "n_embed", 1, kMaxConfigWidth);
    c.num_layers = integer_either(r, "n_layer", "num_hidden_layers", 1, kMaxConfigLayers);
    c.num_heads = integer_either(r, "n_head", "num_attention_heads", 1, kMaxConfigWidth);
    c.vocab_size = r.integer_in("vocab_size", 250880, 1, kMaxConfigVocab);  // BloomConfig's default
    c.norm_eps = r.number_in("layer_norm_epsilon", 1e-5, 0, 1);
    c.tie_word_embeddings = r.boolean("tie_word_embeddings", true);
    c.bos_token_id = r.integer("bos_token_id", 1);
    c.eos_token_ids = r.has("eos_token_id") ? r.id_list("eos_token_id") : std::vector<int64_t>{2};
    // ALiBi has no learned positions; seq_length is the context BLOOM was trained on.
    c.max_position_embeddings = r.integer_in("seq_length", 2048, 1, kMaxConfigPositions);
    c.torch_dtype = r.string("torch_dtype", "");
    if (c.hidden_size % c.num_heads != 0) {
      r.fail("hidden_size", fmt::format("({}) is not a multiple of n_head ({})", c.hidden_size, c.num_heads));
    }
    c.num_kv_heads = c.num_heads;
    c.head_dim = c.hidden_size / c.num_heads;
    c.intermediate_size = 4 * c.hidden_size;  // BloomMLP's fixed width
    if (r.boolean("apply_residual_connection_post_layernorm", false)) {
      r.fail("apply_residual_connection_post_layernorm", "true is not supported");
    }
  }

  std::string write_config(const ModelConfig& c) const override {
    nlohmann::json j = {
        {"architectures", {"BloomForCausalLM"}},
        {"model_type", "bloom"},
        {"hidden_size", c.hidden_size},
        {"n_layer", c.num_layers},
        {"n_head", c.num_heads},
        {"vocab_size", c.vocab_size},
        {"layer_norm_epsilon", c.norm_eps},
        {"seq_length", c.max_position_embeddings},
        {"apply_residual_connection_post_layernorm", false},
        {"attention_softmax_in_fp32", true},
        {"hidden_dropout", 0.0},
        {"attention_dropout", 0.0},
        {"pretraining_tp", 1},
        {"slow_but_exact", false},
        {"initializer_range", 0.02},
        {"use_cache", true},
        {"tie_word_embeddings", c.tie_word_embeddings},
        {"pad_token_id", 3},
        {"torch_dtype", c.torch_dtype},
    };
    if (c.bos_token_id) j["bos_token_id"] = *c.bos_token_id;
    if (c.eos_token_ids.size() == 1) j["eos_token_id"] = c.eos_token_ids[0];
    if (c.eos_token_ids.size() > 1) j["eos_token_id"] = c.eos_token_ids;
    return j.dump(2) + "\n";
  }

  // Init values for random tiny models. With a tied head, the residual's copy of the current
  // token's embedding makes greedy decoding repeat that token forever; a small embedding
  // LayerNorm scale and strong blocks (sharp attention, wide MLP output) let the blocks decide,
  // so greedy runs stay varied and the reference comparison sees many different steps.
  std::vector<TensorSpec> block_tensors(const ModelConfig& c, int64_t block) const override {
    const std::string p = layer_prefix(block);
    const int64_t h = c.hidden_size, i = c.intermediate_size;
    return {
        base_tensor(p + "input_layernorm.weight", {h}, 1.0, 0.1),
        base_tensor(p + "input_layernorm.bias", {h}, 0.0, 0.1),
        base_tensor(p + "self_attention.query_key_value.weight", {3 * h, h}, 0.0, 0.4),
        base_tensor(p + "self_attention.query_key_value.bias", {3 * h}, 0.0, 0.1),
        base_tensor(p + "self_attention.dense.weight", {h, h}, 0.0, 0.16),
        base_tensor(p + "self_attention.dense.bias", {h}, 0.0, 0.05),
        base_tensor(p + "post_attention_layernorm.weight", {h}, 1.0, 0.1),
        base_tensor(p + "post_attention_layernorm.bias", {h}, 0.0, 0.1),
        base_tensor(p + "mlp.dense_h_to_4h.weight", {i, h}, 0.0, 0.12),
        base_tensor(p + "mlp.dense_h_to_4h.bias", {i}, 0.0, 0.05),
        base_tensor(p + "mlp.dense_4h_to_h.weight", {h, i}, 0.0, 0.16),
        base_tensor(p + "mlp.dense_4h_to_h.bias", {h}, 0.0, 0.05),
    };
  }

  std::vector<TensorSpec> head_tensors(const ModelConfig& c) const override {
    const int64_t h = c.hidden_size;
    std::vector<TensorSpec> specs = {
        base_tensor("word_embeddings.weight", {c.vocab_size, h}, 0.0, 0.5),
        base_tensor("word_embeddings_layernorm.weight", {h}, 0.2, 0.1),
        base_tensor("word_embeddings_layernorm.bias", {h}, 0.0, 0.1),
        base_tensor("ln_f.weight", {h}, 1.0, 0.1),
        base_tensor("ln_f.bias", {h}, 0.0, 0.1),
    };
    // BloomForCausalLM's own tensor: never prefixed.
    if (!c.tie_word_embeddings) specs.push_back({"lm_head.weight", {c.vocab_size, h}, 0.0, 0.3});
    return specs;
  }

  std::unique_ptr<Block> make_block(const ModelConfig& c, int64_t block, TensorMap weights,
                                    const ComputeOptions& options) const override {
    return std::make_unique<BloomBlock>(c, block, std::move(weights), options);
  }

  std::unique_ptr<Head> make_head(const ModelConfig& c, TensorMap weights,
                                  const ComputeOptions& options) const override {
    return std::make_unique<BloomHead>(c, std::move(weights));
  }
};

}  // namespace

const Family& bloom_family() {
  static const BloomFamily family;
  return family;
}

}  // namespace bouquet::gpu
