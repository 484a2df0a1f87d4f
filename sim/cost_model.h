// How long compute takes, from datasheet figures and model shapes.
//
// A block step is a roofline with the implementation's share of each roof: the larger of its
// arithmetic time (FLOPs over the device's peak for the weight format's arithmetic type times
// compute_eff) and its memory time (weights, KV cache and activations it touches over the memory
// bandwidth times memory_eff), plus a fixed block_overhead_s (kernel launches, dispatch, work that
// does not scale with the GPU: the same seconds on every device). A request a server handles adds
// request_overhead_s once. Prefill (many new positions) then turns compute-bound while decode (one)
// stays memory-bound, as on hardware. These four figures are per weight format and come from an
// implementation profile (sim/profile.h); peaks and bandwidths are datasheet facts (devices.h).
//
// A measured device (a device file, devices.h) has no roofline and no efficiency: a block step is
// its measured figure for the weight format (f16 reads the bf16 figures, the CPU's half type),
// interpolated piecewise-linearly where the work falls between measured points:
// - decode (one new position): bilinear over the grid of batch x cache length;
// - prefill (several new positions): linear in batch x new positions over the prefill points and
//   the (batch 1, empty cache) decode point, plus, for a cache already holding positions, each new
//   position's decode cost of attending to them (decode at that cache length minus at 0);
// - beyond the largest measured point, the last segment extends linearly; below the smallest,
//   the smallest point's figure holds;
// - backward (a fine-tuning request: forward recomputed with autograd, then gradients to the
//   inputs): linear in batch x new positions over the file's backward points; a file without
//   them charges twice the forward, as the roofline does;
// - a block of another shape than the one profiled: scaled by the ratio of the two shapes'
//   rooflines on this device (1 for the same shape).
// The measured per-block overhead is added to each block, and the measured per-request overhead
// replaces request_overhead_s on that device's spans.
#pragma once

#include "sim/devices.h"
#include "sim/model_shapes.h"

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace bouquet::sim {

enum class WeightFormat { f32, f16, int8, nf4 };

// Storage per parameter, as the engine stores it: NF4 is bitsandbytes' double-quantized layout
// (core/nf4_layout.h): 4 bits plus an 8-bit absmax per block of 64 and an f32 per 256 blocks,
// ~4.127 bits.
double bytes_per_param(WeightFormat format);
std::string_view format_name(WeightFormat format);
std::optional<WeightFormat> parse_weight_format(std::string_view name);
// A measured device's figures for `format`; nullptr for a datasheet device or a format its file
// did not measure.
const MeasuredFormat* measured_figures(const DeviceSpec& device, WeightFormat format);

// What one implementation's kernels reach with one weight format.
struct FormatCost {
  double compute_eff = 1.0;       // share of the device's peak arithmetic rate, in (0, 1]
  double memory_eff = 1.0;        // share of its memory bandwidth, in (0, 1]
  double block_overhead_s = 0;    // per block and request: launches, dispatch; fixed across GPUs
  double request_overhead_s = 0;  // per request a server handles: decode, queue, reply
};

inline constexpr WeightFormat kWeightFormats[] = {WeightFormat::f32, WeightFormat::f16, WeightFormat::int8,
                                                  WeightFormat::nf4};

struct CostModelConfig {
  FormatCost formats[4];              // by WeightFormat
  double client_efficiency = 1.0;     // share of the roofline the client's processor reaches
  double client_bytes_per_param = 2;  // embeddings and LM head on the client (bf16)
  double kv_bytes_per_value = 2;      // attention caches are kept in f16
  double activation_bytes_per_value = 2;
  // The client re-copies each hop's input history (every position sent so far) once per step, at
  // this many bytes per second on a CPU (read and write counted; a GPU client copies at its share
  // of its bandwidth); 0: it never copies.
  double client_history_copy_bytes_per_s = 0;
  // Per hop of each generation step, what the processes spend beyond the span's compute and the
  // wire: thread wake-ups (client, server I/O and worker threads), framing and (de)serialising the
  // hidden states, a relay between them; charged to the client once the step is back. 0: none.
  double client_hop_overhead_s = 0;

  FormatCost& of(WeightFormat format) { return formats[static_cast<int>(format)]; }
  const FormatCost& of(WeightFormat format) const { return formats[static_cast<int>(format)]; }
};

// The shape of one request's work on one block.
struct BlockWork {
  int64_t batch = 1;
  int64_t new_tokens = 1;    // positions computed now, per sequence
  int64_t cache_tokens = 0;  // positions already cached, per sequence (0 for forward/backward)
  bool backward = false;     // gradients with respect to the inputs (frozen weights)
};

struct StepCost {
  double flops = 0;
  double bytes = 0;
  double seconds = 0;
};

class CostModel {
 public:
  explicit CostModel(const CostModelConfig& config) : config_(config) {}

  StepCost block_step(const DeviceSpec& device, const ModelShape& model, WeightFormat format,
                      const BlockWork& work) const;
  // Requests of different sessions batched through one block: the weights are read once for all
  // their rows; each request reads its own cache and attends over its own positions.
  StepCost batched_block_step(const DeviceSpec& device, const ModelShape& model, WeightFormat format,
                              std::span<const BlockWork> works) const;
  // One request through `blocks` consecutive blocks on one device.
  double span_step_s(const DeviceSpec& device, const ModelShape& model, WeightFormat format, int64_t blocks,
                     const BlockWork& work) const;
  // A batch of requests (the core's StartBatch) through `blocks` consecutive blocks at once.
  double batched_span_step_s(const DeviceSpec& device, const ModelShape& model, WeightFormat format, int64_t blocks,
                             std::span<const BlockWork> works) const;
  // The client's share of a step: embedding `input_tokens` positions and the final norm plus LM
  // head over `logit_rows` positions, on the client's processor.
  StepCost client_step(const DeviceSpec& device, const ModelShape& model, int64_t input_tokens,
                       int64_t logit_rows) const;

  double block_weight_bytes(const ModelShape& model, WeightFormat format) const;
  // Attention cache of one position in one block (keys and values).
  double cache_bytes_per_token(const ModelShape& model) const;
  // Time to load `blocks` blocks from a disk or network of `bandwidth_bps` bits per second.
  double load_s(const ModelShape& model, WeightFormat format, int64_t blocks, double bandwidth_bps) const;
  // Offloading: every step streams each block's weights over PCIe while the GPU computes the block
  // before it (double buffering), so a block costs the larger of the two and the first transfer
  // is never hidden.
  double offload_step_s(const DeviceSpec& gpu, const ModelShape& model, WeightFormat format, double pcie_bps,
                        const BlockWork& work) const;

  const CostModelConfig& config() const { return config_; }

 private:
  // The roofline of a block step over `works` (one request, or a batch) at the shares `eff` of
  // each roof: seconds, and FLOPs and bytes into `cost`.
  double roofline_s(const DeviceSpec& device, const ModelShape& model, WeightFormat format,
                    std::span<const BlockWork> works, const FormatCost& eff, StepCost& cost) const;
  double measured_step_s(const DeviceSpec& device, const ModelShape& model, WeightFormat format,
                         const BlockWork& work) const;

  CostModelConfig config_;
};

}  // namespace bouquet::sim
