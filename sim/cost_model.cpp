#include "sim/cost_model.h"

#include "core/check.h"
#include "core/nf4_layout.h"

#include <algorithm>

namespace bouquet::sim {

double bytes_per_param(WeightFormat format) {
  switch (format) {
    case WeightFormat::f32:
      return 4.0;
    case WeightFormat::f16:
      return 2.0;
    case WeightFormat::int8:
      return 1.0;
    case WeightFormat::nf4:
      return core::nf4_bits_per_weight(/*double_quant=*/true) / 8.0;
  }
  BOUQUET_CHECK(false, "unknown weight format");
}

std::string_view format_name(WeightFormat format) {
  switch (format) {
    case WeightFormat::f32:
      return "f32";
    case WeightFormat::f16:
      return "f16";
    case WeightFormat::int8:
      return "int8";
    case WeightFormat::nf4:
      return "nf4";
  }
  BOUQUET_CHECK(false, "unknown weight format");
}

std::optional<WeightFormat> parse_weight_format(std::string_view name) {
  for (auto format : {WeightFormat::f32, WeightFormat::f16, WeightFormat::int8, WeightFormat::nf4}) {
    if (format_name(format) == name) return format;
  }
  return std::nullopt;
}

double Efficiency::of(WeightFormat format) const {
  switch (format) {
    case WeightFormat::f32:
      return f32;
    case WeightFormat::f16:
      return f16;
    case WeightFormat::int8:
      return int8;
    case WeightFormat::nf4:
      return nf4;
  }
  BOUQUET_CHECK(false, "unknown weight format");
}

double& Efficiency::of(WeightFormat format) {
  switch (format) {
    case WeightFormat::f32:
      return f32;
    case WeightFormat::f16:
      return f16;
    case WeightFormat::int8:
      return int8;
    case WeightFormat::nf4:
      return nf4;
  }
  BOUQUET_CHECK(false, "unknown weight format");
}

namespace {

// The arithmetic a weight format runs on: LLM.int8() multiplies in int8 tensor cores, NF4 weights
// are dequantized to f16 before each matmul.
double peak_ops(const DeviceSpec& device, WeightFormat format) {
  switch (format) {
    case WeightFormat::f32:
      return device.f32_flops;
    case WeightFormat::f16:
      return device.f16_flops;
    case WeightFormat::int8:
      return device.int8_ops;
    case WeightFormat::nf4:
      return device.f16_flops;
  }
  BOUQUET_CHECK(false, "unknown weight format");
}

}  // namespace

double CostModel::block_weight_bytes(const ModelShape& model, WeightFormat format) const {
  return static_cast<double>(model.params_per_block()) * bytes_per_param(format);
}

double CostModel::cache_bytes_per_token(const ModelShape& model) const {
  return 2.0 * static_cast<double>(model.kv_dim()) * config_.kv_bytes_per_value;
}

StepCost CostModel::block_step(const DeviceSpec& device, const ModelShape& model, WeightFormat format,
                               const BlockWork& work) const {
  BOUQUET_CHECK(work.batch > 0 && work.new_tokens > 0 && work.cache_tokens >= 0,
                "a block step needs at least one new position");
  const double batch = static_cast<double>(work.batch);
  const double fresh = static_cast<double>(work.new_tokens);
  const double cached = static_cast<double>(work.cache_tokens);
  const double tokens = batch * fresh;
  const double hidden = static_cast<double>(model.hidden);

  // Matmuls: 2 FLOPs per active parameter per token. Attention: each new position scores and
  // mixes every earlier one (cached, then causally the new ones): 4 x hidden FLOPs per pair.
  const double active_params = static_cast<double>(model.active_params_per_block(work.batch * work.new_tokens));
  const double pairs = batch * fresh * (cached + (fresh + 1.0) / 2.0);
  double flops = 2.0 * active_params * tokens + 4.0 * hidden * pairs;

  double bytes = active_params * bytes_per_param(format);
  bytes += batch * (cached + fresh) * cache_bytes_per_token(model);  // read the cache, write new
  bytes += tokens * static_cast<double>(model.linear_io_values_per_token()) * config_.activation_bytes_per_value;

  if (work.backward) {
    // Frozen weights: the server recomputes the forward, then propagates gradients to its inputs
    // only (no weight gradients), one more pass of the same matmuls and weight reads.
    flops *= 2.0;
    bytes *= 2.0;
  }
  const double roofline_s = std::max(flops / peak_ops(device, format), bytes / device.memory_bandwidth_bytes_per_s);
  const double seconds = roofline_s / config_.efficiency.of(format) + config_.block_overhead_s;
  return {flops, bytes, seconds};
}

double CostModel::span_step_s(const DeviceSpec& device, const ModelShape& model, WeightFormat format, int64_t blocks,
                              const BlockWork& work) const {
  BOUQUET_CHECK(blocks > 0, "a span has at least one block");
  return static_cast<double>(blocks) * block_step(device, model, format, work).seconds + config_.request_overhead_s;
}

StepCost CostModel::client_step(const DeviceSpec& device, const ModelShape& model, int64_t input_tokens,
                                int64_t logit_rows) const {
  const double hidden = static_cast<double>(model.hidden);
  const double vocab = static_cast<double>(model.vocab);
  const double rows = static_cast<double>(logit_rows);
  const double inputs = static_cast<double>(input_tokens);
  double flops = 2.0 * vocab * hidden * rows;
  // The LM head is read whole once per step; embedding rows, hidden states and logits are small.
  double bytes = rows > 0 ? vocab * hidden * config_.client_bytes_per_param : 0.0;
  bytes += (inputs + rows) * hidden * config_.client_bytes_per_param + rows * vocab * 4.0;
  const double peak = device.is_gpu ? device.f16_flops : device.f32_flops;
  const double roofline_s = std::max(flops / peak, bytes / device.memory_bandwidth_bytes_per_s);
  return {flops, bytes, roofline_s / config_.client_efficiency};
}

double CostModel::load_s(const ModelShape& model, WeightFormat format, int64_t blocks, double bandwidth_bps) const {
  BOUQUET_CHECK(bandwidth_bps > 0, "load bandwidth must be positive");
  return static_cast<double>(blocks) * block_weight_bytes(model, format) * 8.0 / bandwidth_bps;
}

double CostModel::offload_step_s(const DeviceSpec& gpu, const ModelShape& model, WeightFormat format, double pcie_bps,
                                 const BlockWork& work) const {
  const double transfer_s = block_weight_bytes(model, format) * 8.0 / pcie_bps;
  const double compute_s = block_step(gpu, model, format, work).seconds;
  const double blocks = static_cast<double>(model.num_blocks);
  return transfer_s + (blocks - 1.0) * std::max(transfer_s, compute_s) + compute_s;
}

}  // namespace bouquet::sim
