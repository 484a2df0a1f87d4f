// The Llama family (Llama 2, Llama 3, and checkpoints that share their layout), computing exactly
// what Hugging Face's LlamaForCausalLM computes: RMSNorm with the variance in f32, rotary
// embeddings in the rotate-half convention (no q/k permutation) with rope_theta and Llama-3
// rope_scaling, grouped-query attention (attention head h reads key/value head h / (heads /
// kv_heads)), softmax in f32, SwiGLU MLP, tied or untied LM head.
#include "core/check.h"
#include "gpu/decode_ops.h"
#include "gpu/errors.h"
#include "gpu/family.h"
#include "gpu/linear.h"
#include "gpu/rope.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <limits>

namespace bouquet::gpu {
namespace {

// Reductions (norm variance, softmax) run in f32 at least, as Hugging Face does; f64 stays f64.
at::ScalarType accumulate_type(at::ScalarType dtype) { return dtype == at::kDouble ? at::kDouble : at::kFloat; }

// Hugging Face's LlamaRMSNorm: normalise in f32, cast back, then scale.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  if (fused_cpu_f32(x) && fused_cpu_f32(weight)) return rms_norm_f32(x, weight, eps);
  const at::Tensor x32 = x.to(accumulate_type(x.scalar_type()));
  const at::Tensor normed = x32 * at::rsqrt(x32.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * normed.to(x.scalar_type());
}

at::Tensor rotate_half(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

std::string layer_prefix(int64_t block) { return fmt::format("model.layers.{}.", block); }

void read_rope_scaling(const ConfigReader& reader, ModelConfig& config) {
  if (!reader.has("rope_scaling")) return;
  const ConfigReader scaling = reader.object("rope_scaling");
  // Newer configs say rope_type, older ones type.
  const std::string type = scaling.has("rope_type") ? scaling.string("rope_type") : scaling.string("type", "default");
  if (type == "default") return;
  if (type != "llama3") {
    reader.fail("rope_scaling", fmt::format("has type '{}'; Bouquet supports only llama3", type));
  }
  RopeScaling rs;
  rs.factor = scaling.number_in("factor", 0, 1e6);
  rs.low_freq_factor = scaling.number_in("low_freq_factor", 0, 1e6);
  rs.high_freq_factor = scaling.number_in("high_freq_factor", 0, 1e6);
  rs.original_max_position_embeddings = scaling.integer_in("original_max_position_embeddings", 1, kMaxConfigPositions);
  if (rs.factor <= 0 || rs.high_freq_factor <= rs.low_freq_factor || rs.low_freq_factor <= 0 ||
      rs.original_max_position_embeddings <= 0) {
    reader.fail("rope_scaling", "needs factor > 0 and 0 < low_freq_factor < high_freq_factor");
  }
  config.rope_scaling = rs;
}

class LlamaBlock final : public Block {
 public:
  LlamaBlock(const ModelConfig& config, int64_t block, TensorMap w, const ComputeOptions& options)
      : options_(options),
        heads_(config.num_heads),
        kv_heads_(config.num_kv_heads),
        head_dim_(config.head_dim),
        intermediate_(config.intermediate_size),
        eps_(config.norm_eps) {
    const std::string p = layer_prefix(block);
    input_norm_ = w.at(p + "input_layernorm.weight");
    post_norm_ = w.at(p + "post_attention_layernorm.weight");
    // One matrix product for q, k and v and one for gate and up: fewer passes over the input and
    // fewer kernel launches per decode step.
    qkv_ = Linear(at::cat({w.at(p + "self_attn.q_proj.weight"), w.at(p + "self_attn.k_proj.weight"),
                           w.at(p + "self_attn.v_proj.weight")},
                          0),
                  options);
    o_ = Linear(w.at(p + "self_attn.o_proj.weight"), options);
    gate_up_ = Linear(at::cat({w.at(p + "mlp.gate_proj.weight"), w.at(p + "mlp.up_proj.weight")}, 0), options);
    down_ = Linear(w.at(p + "mlp.down_proj.weight"), options);
    qkv_.set_lora_site(lora_site(config, block, {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}));
    o_.set_lora_site(lora_site(config, block, {"self_attn.o_proj"}));
    gate_up_.set_lora_site(lora_site(config, block, {"mlp.gate_proj", "mlp.up_proj"}));
    down_.set_lora_site(lora_site(config, block, {"mlp.down_proj"}));
    inv_freq_host_ = rope_inverse_frequencies(head_dim_, config.rope_theta, config.rope_scaling);
    inv_freq_ = at::tensor(inv_freq_host_, at::TensorOptions().dtype(at::kDouble)).to(options.device);
  }

  KvCache make_cache(int64_t batch, int64_t capacity) const override {
    const auto o = at::TensorOptions().device(options_.device).dtype(options_.dtype);
    return {at::zeros({batch, kv_heads_, capacity, head_dim_}, o),
            at::zeros({batch, kv_heads_, capacity, head_dim_}, o)};
  }

  uint64_t weight_bytes() const override {
    uint64_t total = 0;
    for (const auto* t : {&input_norm_, &post_norm_}) total += t->numel() * t->element_size();
    for (const auto* l : {&qkv_, &o_, &gate_up_, &down_}) total += l->weight_bytes();
    return total;
  }

 protected:
  at::Tensor project(const at::Tensor& hidden) const override { return qkv_(rms_norm(hidden, input_norm_, eps_)); }

  at::Tensor attend(const at::Tensor& qkv, int64_t start, KvCache* cache) const override {
    if (cache != nullptr && fused_cpu_f32(qkv) && fused_cpu_f32(cache->key) && fused_cpu_f32(cache->value) &&
        cache->key.is_contiguous() && cache->value.is_contiguous()) {
      return rope_attention_f32(qkv, {heads_, kv_heads_, head_dim_, &inv_freq_host_}, start, *cache);
    }
    const int64_t batch = qkv.size(0);
    const int64_t tokens = qkv.size(1);
    const int64_t q_width = heads_ * head_dim_;
    const int64_t kv_width = kv_heads_ * head_dim_;
    const auto split = [&](int64_t offset, int64_t width, int64_t heads) {
      return qkv.narrow(-1, offset, width).view({batch, tokens, heads, head_dim_}).transpose(1, 2);
    };
    at::Tensor q = split(0, q_width, heads_);
    at::Tensor k = split(q_width, kv_width, kv_heads_);
    at::Tensor v = split(q_width + kv_width, kv_width, kv_heads_);
    const auto [cos, sin] = rotary(start, tokens);
    q = q * cos + rotate_half(q) * sin;
    k = k * cos + rotate_half(k) * sin;

    at::Tensor keys = k;
    at::Tensor values = v;
    int64_t key_start = start;
    if (cache != nullptr) {
      cache->key.narrow(2, start, tokens).copy_(k);
      cache->value.narrow(2, start, tokens).copy_(v);
      keys = cache->key.narrow(2, 0, start + tokens);
      values = cache->value.narrow(2, 0, start + tokens);
      key_start = 0;
    }
    return attention(q, keys, values, start, key_start);
  }

  at::Tensor finish(const at::Tensor& hidden, const at::Tensor& attended) const override {
    const at::Tensor x = hidden + o_(attended);
    const at::Tensor gu = gate_up_(rms_norm(x, post_norm_, eps_));
    const at::Tensor mlp =
        fused_cpu_f32(gu) ? silu_mul_f32(gu, intermediate_)
                          : at::silu(gu.narrow(-1, 0, intermediate_)) * gu.narrow(-1, intermediate_, intermediate_);
    return x + down_(mlp);
  }

 private:
  // cos and sin of position * inverse frequency for positions [start, start + tokens), duplicated
  // over both halves of the head as rotate-half expects: [tokens, head_dim] each. Angles are
  // computed in double so long positions keep their precision.
  std::pair<at::Tensor, at::Tensor> rotary(int64_t start, int64_t tokens) const {
    const at::Tensor positions =
        at::arange(start, start + tokens, at::TensorOptions().dtype(at::kDouble).device(options_.device));
    const at::Tensor angles = at::outer(positions, inv_freq_);
    const at::Tensor full = at::cat({angles, angles}, -1);
    return {full.cos().to(options_.dtype), full.sin().to(options_.dtype)};
  }

  // q: [batch, heads, tokens, head_dim] at positions start...; keys/values: [batch, kv_heads,
  // length, head_dim] at positions key_start... Returns [batch, tokens, heads * head_dim].
  at::Tensor attention(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values, int64_t start,
                       int64_t key_start) const {
    const int64_t batch = q.size(0);
    const int64_t tokens = q.size(2);
    const int64_t length = keys.size(2);
    const int64_t group = heads_ / kv_heads_;
    // Heads sharing a key/value head are stacked along the token axis, so one batched product per
    // key/value head serves the whole group without repeating keys in memory.
    const at::Tensor grouped = q.reshape({batch, kv_heads_, group * tokens, head_dim_});
    at::Tensor scores = at::matmul(grouped, keys.transpose(2, 3)).to(accumulate_type(q.scalar_type())) /
                        std::sqrt(static_cast<double>(head_dim_));
    if (key_start + length - 1 > start) {  // some key lies after some query: mask the future
      const auto o = at::TensorOptions().dtype(at::kLong).device(q.device());
      const at::Tensor query_pos = at::arange(start, start + tokens, o).unsqueeze(1);
      const at::Tensor key_pos = at::arange(key_start, key_start + length, o).unsqueeze(0);
      const at::Tensor future = (key_pos > query_pos).repeat({group, 1});
      scores = scores.masked_fill(future, -std::numeric_limits<double>::infinity());
    }
    const at::Tensor probs = at::softmax(scores, -1).to(values.scalar_type());
    return at::matmul(probs, values)
        .view({batch, heads_, tokens, head_dim_})
        .transpose(1, 2)
        .reshape({batch, tokens, heads_ * head_dim_});
  }

  ComputeOptions options_;
  int64_t heads_, kv_heads_, head_dim_, intermediate_;
  double eps_;
  at::Tensor input_norm_, post_norm_, inv_freq_;
  std::vector<double> inv_freq_host_;  // inv_freq_'s values, for the fused CPU path
  Linear qkv_, o_, gate_up_, down_;
};

class LlamaHead final : public Head {
 public:
  // The LM head's matrix takes per-row int8 when options.quant asks for any quantization (the
  // client head's config says why; NF4 too, as llama.cpp gives its 4-bit files a wider head);
  // the embedding lookup reads embed_, which is never quantized, even when the head's matrix is
  // a quantized copy of it.
  LlamaHead(const ModelConfig& config, TensorMap w, ComputeOptions options) : eps_(config.norm_eps) {
    embed_ = w.at("model.embed_tokens.weight");
    norm_ = w.at("model.norm.weight");
    if (options.quant != WeightQuant::none) options.quant = WeightQuant::int8;
    lm_head_ = Linear(config.tie_word_embeddings ? embed_ : w.at("lm_head.weight"), options);
  }

  at::Tensor embed(const at::Tensor& ids) const override { return at::embedding(embed_, ids.to(embed_.device())); }

  at::Tensor logits(const at::Tensor& hidden) const override {
    const at::Tensor h = rms_norm(hidden.to(norm_.device(), norm_.scalar_type()), norm_, eps_);
    return lm_head_(h).to(at::kFloat);
  }

 private:
  double eps_;
  at::Tensor embed_, norm_;
  Linear lm_head_;
};

class LlamaFamily final : public Family {
 public:
  std::string_view model_type() const override { return "llama"; }

  void read_config(const ConfigReader& r, ModelConfig& c) const override {
    c.hidden_size = r.integer_in("hidden_size", 1, kMaxConfigWidth);
    c.intermediate_size = r.integer_in("intermediate_size", 1, kMaxConfigWidth);
    c.num_layers = r.integer_in("num_hidden_layers", 1, kMaxConfigLayers);
    c.num_heads = r.integer_in("num_attention_heads", 1, kMaxConfigWidth);
    c.num_kv_heads = r.integer_in("num_key_value_heads", c.num_heads, 1, kMaxConfigWidth);
    c.vocab_size = r.integer_in("vocab_size", 1, kMaxConfigVocab);
    c.norm_eps = r.number_in("rms_norm_eps", 1e-6, 0, 1);
    // Below 1 every frequency is >= 1 radian per position: no model is trained like that.
    c.rope_theta = r.number_in("rope_theta", 10000.0, 1, 1e12);
    c.tie_word_embeddings = r.boolean("tie_word_embeddings", false);
    if (r.has("bos_token_id")) c.bos_token_id = r.integer("bos_token_id");
    c.eos_token_ids = r.id_list("eos_token_id");
    c.max_position_embeddings = r.integer_in("max_position_embeddings", 2048, 1, kMaxConfigPositions);
    c.torch_dtype = r.string("torch_dtype", "");
    read_rope_scaling(r, c);

    if (!r.has("head_dim") && c.hidden_size % c.num_heads != 0) {
      r.fail("hidden_size",
             fmt::format("({}) is not a multiple of num_attention_heads ({})", c.hidden_size, c.num_heads));
    }
    c.head_dim = r.integer_in("head_dim", c.hidden_size / c.num_heads, 1, kMaxConfigWidth);
    if (c.head_dim <= 0 || c.head_dim % 2 != 0) r.fail("head_dim", "must be positive and even");
    if (c.num_heads % c.num_kv_heads != 0) {
      r.fail("num_key_value_heads",
             fmt::format("({}) does not divide num_attention_heads ({})", c.num_kv_heads, c.num_heads));
    }
    if (r.string("hidden_act", "silu") != "silu") r.fail("hidden_act", "must be silu for llama");
    if (r.boolean("attention_bias", false)) r.fail("attention_bias", "true is not supported");
    if (r.boolean("mlp_bias", false)) r.fail("mlp_bias", "true is not supported");
  }

  std::string write_config(const ModelConfig& c) const override {
    nlohmann::json j = {
        {"architectures", {"LlamaForCausalLM"}},
        {"model_type", "llama"},
        {"hidden_size", c.hidden_size},
        {"intermediate_size", c.intermediate_size},
        {"num_hidden_layers", c.num_layers},
        {"num_attention_heads", c.num_heads},
        {"num_key_value_heads", c.num_kv_heads},
        {"vocab_size", c.vocab_size},
        {"rms_norm_eps", c.norm_eps},
        {"rope_theta", c.rope_theta},
        {"rope_scaling", nullptr},
        {"tie_word_embeddings", c.tie_word_embeddings},
        {"max_position_embeddings", c.max_position_embeddings},
        {"hidden_act", "silu"},
        {"attention_bias", false},
        {"mlp_bias", false},
        {"initializer_range", 0.02},
        {"torch_dtype", c.torch_dtype},
    };
    if (c.head_dim != c.hidden_size / c.num_heads) j["head_dim"] = c.head_dim;
    if (c.bos_token_id) j["bos_token_id"] = *c.bos_token_id;
    if (c.eos_token_ids.size() == 1) j["eos_token_id"] = c.eos_token_ids[0];
    if (c.eos_token_ids.size() > 1) j["eos_token_id"] = c.eos_token_ids;
    if (c.rope_scaling) {
      j["rope_scaling"] = {
          {"rope_type", c.rope_scaling->type},
          {"factor", c.rope_scaling->factor},
          {"low_freq_factor", c.rope_scaling->low_freq_factor},
          {"high_freq_factor", c.rope_scaling->high_freq_factor},
          {"original_max_position_embeddings", c.rope_scaling->original_max_position_embeddings},
      };
    }
    return j.dump(2) + "\n";
  }

  // init_std values give a random tiny model peaked, varied next-token distributions: queries
  // and keys a bit larger so attention is not uniform, a wide embedding so tokens differ.
  std::vector<TensorSpec> block_tensors(const ModelConfig& c, int64_t block) const override {
    const std::string p = layer_prefix(block);
    const int64_t h = c.hidden_size, q = c.num_heads * c.head_dim, kv = c.num_kv_heads * c.head_dim;
    const int64_t i = c.intermediate_size;
    return {
        {p + "input_layernorm.weight", {h}, 1.0, 0.1},       {p + "self_attn.q_proj.weight", {q, h}, 0.0, 0.15},
        {p + "self_attn.k_proj.weight", {kv, h}, 0.0, 0.15}, {p + "self_attn.v_proj.weight", {kv, h}, 0.0, 0.08},
        {p + "self_attn.o_proj.weight", {h, q}, 0.0, 0.08},  {p + "post_attention_layernorm.weight", {h}, 1.0, 0.1},
        {p + "mlp.gate_proj.weight", {i, h}, 0.0, 0.08},     {p + "mlp.up_proj.weight", {i, h}, 0.0, 0.08},
        {p + "mlp.down_proj.weight", {h, i}, 0.0, 0.08},
    };
  }

  std::vector<TensorSpec> head_tensors(const ModelConfig& c) const override {
    std::vector<TensorSpec> specs = {
        {"model.embed_tokens.weight", {c.vocab_size, c.hidden_size}, 0.0, 0.5},
        {"model.norm.weight", {c.hidden_size}, 1.0, 0.1},
    };
    if (!c.tie_word_embeddings) {
      specs.push_back({"lm_head.weight", {c.vocab_size, c.hidden_size}, 0.0, 0.3});
    }
    return specs;
  }

  std::unique_ptr<Block> make_block(const ModelConfig& c, int64_t block, TensorMap weights,
                                    const ComputeOptions& options) const override {
    return std::make_unique<LlamaBlock>(c, block, std::move(weights), options);
  }

  std::unique_ptr<Head> make_head(const ModelConfig& c, TensorMap weights,
                                  const ComputeOptions& options) const override {
    return std::make_unique<LlamaHead>(c, std::move(weights), options);
  }
};

}  // namespace

const Family& llama_family() {
  static const LlamaFamily family;
  return family;
}

}  // namespace bouquet::gpu
