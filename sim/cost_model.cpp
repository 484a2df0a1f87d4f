#include "sim/cost_model.h"

#include "core/check.h"
#include "core/nf4_layout.h"

#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <vector>

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

// y at x over points sorted by x: linear between them, the last segment extended beyond the
// largest, the first value held below the smallest.
double interpolate(const std::vector<std::pair<double, double>>& points, double x) {
  BOUQUET_CHECK(!points.empty(), "interpolation needs a point");
  if (points.size() == 1 || x <= points.front().first) return points.front().second;
  size_t i = 1;
  while (i + 1 < points.size() && x > points[i].first) ++i;
  const auto& [x0, y0] = points[i - 1];
  const auto& [x1, y1] = points[i];
  return y0 + (y1 - y0) * (x - x0) / (x1 - x0);
}

// Decode step at (batch, cache): over cache lengths for each measured batch, then over batches.
double decode_s(const MeasuredFormat& figures, double batch, double cached) {
  std::map<int64_t, std::vector<std::pair<double, double>>> by_batch;
  for (const auto& d : figures.decode) by_batch[d.batch].emplace_back(static_cast<double>(d.cache_tokens), d.step_s);
  std::vector<std::pair<double, double>> over_batches;
  for (auto& [b, points] : by_batch) {
    std::sort(points.begin(), points.end());
    over_batches.emplace_back(static_cast<double>(b), interpolate(points, cached));
  }
  return interpolate(over_batches, batch);
}

// Prefill step of `tokens` positions from an empty cache, the decode point at one position.
double prefill_s(const MeasuredFormat& figures, double tokens) {
  std::map<double, double> line{{1.0, decode_s(figures, 1, 0)}};
  for (const auto& p : figures.prefill) line.emplace(static_cast<double>(p.batch * p.new_tokens), p.step_s);
  return interpolate({line.begin(), line.end()}, tokens);
}

// A backward request of `tokens` positions, over the measured backward points.
double backward_s(const MeasuredFormat& figures, double tokens) {
  std::map<double, double> line;
  for (const auto& p : figures.backward) line.emplace(static_cast<double>(p.batch * p.new_tokens), p.step_s);
  return interpolate({line.begin(), line.end()}, tokens);
}

std::string_view measured_key(WeightFormat format) {
  switch (format) {
    case WeightFormat::f32:
      return "f32";
    case WeightFormat::f16:
      return "bf16";
    case WeightFormat::int8:
      return "int8";
    case WeightFormat::nf4:
      return "nf4";
  }
  BOUQUET_CHECK(false, "unknown weight format");
}

bool same_shape(const ModelShape& a, const ModelShape& b) {
  return a.hidden == b.hidden && a.heads == b.heads && a.kv_heads == b.kv_heads && a.intermediate == b.intermediate &&
         a.experts == b.experts && a.gated_mlp == b.gated_mlp && a.linear_bias == b.linear_bias &&
         a.layer_norm == b.layer_norm;
}

}  // namespace

const MeasuredFormat* measured_figures(const DeviceSpec& device, WeightFormat format) {
  if (!device.measured) return nullptr;
  const auto it = device.measured->formats.find(std::string(measured_key(format)));
  return it == device.measured->formats.end() ? nullptr : &it->second;
}

double CostModel::measured_step_s(const DeviceSpec& device, const ModelShape& model, WeightFormat format,
                                  const BlockWork& work) const {
  const MeasuredDevice& measured = *device.measured;
  const MeasuredFormat* figures = measured_figures(device, format);
  BOUQUET_CHECK(figures != nullptr, "the scenario loader checks that a device file measured the weight format");
  const double batch = static_cast<double>(work.batch);
  const double cached = static_cast<double>(work.cache_tokens);
  double seconds = 0;
  if (work.new_tokens == 1) {
    seconds = decode_s(*figures, batch, cached);
  } else {
    const double fresh = static_cast<double>(work.new_tokens);
    seconds = prefill_s(*figures, batch * fresh);
    if (work.cache_tokens > 0) seconds += fresh * (decode_s(*figures, batch, cached) - decode_s(*figures, batch, 0));
  }
  if (work.backward) {
    seconds =
        figures->backward.empty() ? 2.0 * seconds : backward_s(*figures, batch * static_cast<double>(work.new_tokens));
  }
  if (!same_shape(model, measured.shape)) {
    StepCost ignored;
    const std::span<const BlockWork> one(&work, 1);
    const FormatCost ideal;
    seconds *= roofline_s(device, model, format, one, ideal, ignored) /
               roofline_s(device, measured.shape, format, one, ideal, ignored);
  }
  return seconds + measured.block_overhead_s;
}

double CostModel::block_weight_bytes(const ModelShape& model, WeightFormat format) const {
  return static_cast<double>(model.params_per_block()) * bytes_per_param(format);
}

double CostModel::cache_bytes_per_token(const ModelShape& model) const {
  return 2.0 * static_cast<double>(model.kv_dim()) * config_.kv_bytes_per_value;
}

double CostModel::roofline_s(const DeviceSpec& device, const ModelShape& model, WeightFormat format,
                             std::span<const BlockWork> works, const FormatCost& eff, StepCost& cost) const {
  BOUQUET_CHECK(!works.empty(), "a block step computes at least one request");
  const double hidden = static_cast<double>(model.hidden);
  int64_t rows = 0;
  double pairs = 0;
  double cache_values = 0;  // positions of cache read and written, over every request
  for (const BlockWork& work : works) {
    BOUQUET_CHECK(work.batch > 0 && work.new_tokens > 0 && work.cache_tokens >= 0,
                  "a block step needs at least one new position");
    BOUQUET_CHECK(work.backward == works.front().backward, "a batch is all forward or all backward");
    const double batch = static_cast<double>(work.batch);
    const double fresh = static_cast<double>(work.new_tokens);
    const double cached = static_cast<double>(work.cache_tokens);
    rows += work.batch * work.new_tokens;
    // Attention: each new position scores and mixes every earlier one of its own sequence
    // (cached, then causally the new ones).
    pairs += batch * fresh * (cached + (fresh + 1.0) / 2.0);
    cache_values += batch * (cached + fresh);
  }
  const double tokens = static_cast<double>(rows);

  // Matmuls: 2 FLOPs per active parameter per token, the weights read once for every row of
  // every request. Attention: 4 x hidden FLOPs per (query, key) pair.
  const double active_params = static_cast<double>(model.active_params_per_block(rows));
  double flops = 2.0 * active_params * tokens + 4.0 * hidden * pairs;

  double bytes = active_params * bytes_per_param(format);
  bytes += cache_values * cache_bytes_per_token(model);  // read the cache, write new
  bytes += tokens * static_cast<double>(model.linear_io_values_per_token()) * config_.activation_bytes_per_value;

  if (works.front().backward) {
    // Frozen weights: the server recomputes the forward, then propagates gradients to its inputs
    // only (no weight gradients), one more pass of the same matmuls and weight reads.
    flops *= 2.0;
    bytes *= 2.0;
  }
  cost.flops = flops;
  cost.bytes = bytes;
  return std::max(flops / (peak_ops(device, format) * eff.compute_eff),
                  bytes / (device.memory_bandwidth_bytes_per_s * eff.memory_eff));
}

StepCost CostModel::block_step(const DeviceSpec& device, const ModelShape& model, WeightFormat format,
                               const BlockWork& work) const {
  return batched_block_step(device, model, format, std::span<const BlockWork>(&work, 1));
}

namespace {

// A batch of requests as one request for a measured device's grid: its rows as the batch of a
// decode step, at their mean cache length (a lone request stays as it is).
BlockWork as_one_request(std::span<const BlockWork> works) {
  if (works.size() == 1) return works.front();
  BlockWork merged;
  merged.batch = 0;
  merged.new_tokens = 1;
  merged.backward = works.front().backward;
  double cached = 0;
  for (const BlockWork& work : works) {
    merged.batch += work.batch * work.new_tokens;
    cached += static_cast<double>(work.batch * work.new_tokens) * static_cast<double>(work.cache_tokens);
  }
  merged.cache_tokens = static_cast<int64_t>(cached / static_cast<double>(merged.batch) + 0.5);
  return merged;
}

}  // namespace

StepCost CostModel::batched_block_step(const DeviceSpec& device, const ModelShape& model, WeightFormat format,
                                       std::span<const BlockWork> works) const {
  StepCost cost;
  const FormatCost& eff = config_.of(format);
  const double roofline = roofline_s(device, model, format, works, eff, cost);
  cost.seconds =
      device.measured ? measured_step_s(device, model, format, as_one_request(works)) : roofline + eff.block_overhead_s;
  return cost;
}

double CostModel::span_step_s(const DeviceSpec& device, const ModelShape& model, WeightFormat format, int64_t blocks,
                              const BlockWork& work) const {
  BOUQUET_CHECK(blocks > 0, "a span has at least one block");
  const double request_s =
      device.measured ? device.measured->request_overhead_s : config_.of(format).request_overhead_s;
  return static_cast<double>(blocks) * block_step(device, model, format, work).seconds + request_s;
}

double CostModel::batched_span_step_s(const DeviceSpec& device, const ModelShape& model, WeightFormat format,
                                      int64_t blocks, std::span<const BlockWork> works) const {
  BOUQUET_CHECK(blocks > 0, "a span has at least one block");
  // One pass over the span for the whole batch; each request still costs its own overhead
  // (receiving, unpacking and replying happen per request).
  const double request_s =
      device.measured ? device.measured->request_overhead_s : config_.of(format).request_overhead_s;
  return static_cast<double>(blocks) * batched_block_step(device, model, format, works).seconds +
         static_cast<double>(works.size()) * request_s;
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
