#include "gpu/device_profile.h"

#include "gpu/checkpoint.h"
#include "gpu/compute_options.h"
#include "gpu/errors.h"
#include "gpu/family.h"
#include "gpu/model_config.h"
#include "gpu/span_compute.h"
#include "gpu/span_runner.h"
#include "gpu/tensor_bridge.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <ctime>
#include <fstream>
#include <functional>
#include <thread>

namespace bouquet::gpu {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

// The median of repeated runs of `step`, after one unmeasured run (first touch, kernel choice).
double median_s(const std::function<void()>& step, double min_seconds) {
  step();
  std::vector<double> times;
  const auto start = Clock::now();
  while (times.size() < 3 ||
         (std::chrono::duration<double>(Clock::now() - start).count() < min_seconds && times.size() < 10000)) {
    const auto t0 = Clock::now();
    step();
    times.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// f32 and bf16 are compute dtypes; int8 is f32 compute over int8 weights (per-row scales).
struct FormatSettings {
  std::string dtype;
  std::string quant;
};

FormatSettings settings_of(const std::string& format) {
  if (format == "f32") return {"f32", "none"};
  if (format == "bf16") return {"bf16", "none"};
  if (format == "int8") return {"f32", "int8"};
  throw InputError(fmt::format("--formats: '{}' is not one of f32, bf16, int8", format));
}

ComputeOptions options_of(const std::string& format) {
  const FormatSettings settings = settings_of(format);
  return resolve_compute(settings.dtype, "cpu", settings.quant);
}

// Blocks 0, 1, ... of the model, enough that their weights (up to 256 MB) outgrow the processor's
// caches as a server's span does: a block timed alone, again and again, runs from the cache and
// reads faster than a server streaming its span ever does.
std::vector<std::unique_ptr<Block>> load_rotation(const ModelConfig& model, const Checkpoint& checkpoint,
                                                  const ComputeOptions& options, int64_t most) {
  std::vector<std::unique_ptr<Block>> blocks;
  blocks.push_back(load_block(model, checkpoint, 0, options));
  const uint64_t bytes = std::max<uint64_t>(blocks.front()->weight_bytes(), 1);
  const int64_t wanted = std::min<int64_t>({model.num_layers, most, static_cast<int64_t>((256u << 20) / bytes) + 1});
  for (int64_t i = 1; i < wanted; ++i) blocks.push_back(load_block(model, checkpoint, i, options));
  return blocks;
}

// A fine-tuning server's backward request on one block, as SpanCompute runs it: the forward
// recomputed with autograd, then the gradients flowed back to the inputs (frozen weights), at the
// prefill lengths (batch 1). What a backward costs against a forward of the same positions is
// the implementation's: autograd's bookkeeping, and products that take libtorch's path where the
// no-grad forward takes the kernels.
json backward_points(const DeviceProfileConfig& config, const std::string& format) {
  const FormatSettings settings = settings_of(format);
  const SpanRunner runner({config.model, 0, 1, settings.dtype, "cpu", settings.quant});
  json points = json::array();
  for (const int64_t tokens : config.prefill_tokens) {
    const auto tensor_options = at::TensorOptions().dtype(runner.compute().dtype);
    const at::Tensor x = at::randn({1, tokens, runner.hidden_size()}, tensor_options);
    const at::Tensor grad = at::randn({1, tokens, runner.hidden_size()}, tensor_options);
    const double step_s = median_s([&] { runner.backward(x, grad); }, config.seconds_per_point);
    points.push_back({{"batch", 1}, {"new_tokens", tokens}, {"step_s", step_s}});
  }
  return points;
}

json measure_format(const ModelConfig& model, const Checkpoint& checkpoint, const std::string& format,
                    const DeviceProfileConfig& config) {
  const ComputeOptions options = options_of(format);
  const auto blocks = load_rotation(model, checkpoint, options, 16);
  const Block& block = *blocks.front();
  at::NoGradGuard no_grad;
  const auto tensor_options = at::TensorOptions().device(options.device).dtype(options.dtype);
  json decode = json::array(), prefill = json::array();
  // Decode reads every weight for little arithmetic: timed as one step of each block in turn.
  for (const int64_t batch : config.batches) {
    for (const int64_t cached : config.cache_tokens) {
      std::vector<KvCache> caches;
      for (const auto& b : blocks) {
        // Cached positions as random keys and values: a step's work depends on their number, not
        // their values, and computing them (a batch x cache prefill per block) would take minutes.
        caches.push_back(b->make_cache(batch, cached + 1));
        caches.back().key.uniform_(-1, 1);
        caches.back().value.uniform_(-1, 1);
      }
      const at::Tensor x = at::randn({batch, 1, model.hidden_size}, tensor_options);
      const double round_s = median_s(
          [&] {
            for (size_t i = 0; i < blocks.size(); ++i) blocks[i]->forward(x, cached, &caches[i]);
          },
          config.seconds_per_point);
      decode.push_back(
          {{"batch", batch}, {"cache_tokens", cached}, {"step_s", round_s / static_cast<double>(blocks.size())}});
    }
  }
  // Prefill does many multiply-adds per weight read: one block, where the caches matter little.
  for (const int64_t tokens : config.prefill_tokens) {
    KvCache cache = block.make_cache(1, tokens);
    const at::Tensor x = at::randn({1, tokens, model.hidden_size}, tensor_options);
    const double step_s = median_s([&] { block.forward(x, 0, &cache); }, config.seconds_per_point);
    prefill.push_back({{"batch", 1}, {"new_tokens", tokens}, {"step_s", step_s}});
  }
  return {{"weight_bytes_per_block", block.weight_bytes()},
          {"decode_blocks_rotated", blocks.size()},
          {"decode", decode},
          {"prefill", prefill},
          {"backward", backward_points(config, format)}};
}

double read_bandwidth_bytes_per_s(double min_seconds) {
  const int64_t values = int64_t{64} << 20;  // 256 MB of f32: well past the caches
  const at::Tensor buffer = at::ones({values});
  const double s = median_s([&] { at::sum(buffer).item<float>(); }, min_seconds);
  return static_cast<double>(values * 4) / s;
}

// Fits t = a + b x blocks over spans [0, n) of the server's compute path; returns the fit's
// {a, b} and the points.
json request_overhead(const DeviceProfileConfig& config, const ModelConfig& model, const Checkpoint& checkpoint) {
  // Spans of 2 to 4 blocks: one block run again and again may stay in the processor's caches
  // (a 50 MB block did here) and bend the line; 1 only where the model has fewer blocks.
  std::vector<int64_t> spans;
  for (const int64_t n : {2, 3, 4}) {
    if (n <= model.num_layers) spans.push_back(n);
  }
  if (spans.size() < 2) spans.insert(spans.begin(), 1);
  json points = json::array();
  std::vector<double> xs, ys;
  for (const int64_t n : spans) {
    net::SpanCompute compute({config.model, core::BlockSpan{0, static_cast<uint32_t>(n)}, "f32", "cpu", "none"});
    core::ComputeRequest request;
    request.kind = core::ComputeKind::inference;
    request.span = compute.span();
    request.batch = 1;
    request.new_tokens = 1;
    request.cache_length = 0;  // every step rewinds to the start: the same work each time
    request.cache_id = 1;
    request.max_length = 8;
    request.inputs = net::activation_from_tensor(at::randn({1, 1, model.hidden_size}));
    const double step_s = median_s(
        [&] {
          auto result = compute.run(request);
          if (!result) throw InputError(fmt::format("profile-device: a span of {} blocks failed", n));
        },
        config.seconds_per_point);
    points.push_back({{"blocks", n}, {"step_s", step_s}});
    xs.push_back(static_cast<double>(n));
    ys.push_back(step_s);
  }
  double a = ys.front(), b = 0;
  if (xs.size() >= 2) {
    double mx = 0, my = 0;
    for (size_t i = 0; i < xs.size(); ++i) mx += xs[i] / xs.size(), my += ys[i] / ys.size();
    double sxy = 0, sxx = 0;
    for (size_t i = 0; i < xs.size(); ++i) sxy += (xs[i] - mx) * (ys[i] - my), sxx += (xs[i] - mx) * (xs[i] - mx);
    b = sxy / sxx;
    a = my - b * mx;
  }
  // The same step on the largest span's blocks alone, in turn: what the server's path adds per
  // block beyond the blocks' own work, from the same weights in the same state of the caches.
  const auto blocks = load_rotation(model, checkpoint, options_of("f32"), spans.back());
  at::NoGradGuard no_grad;
  std::vector<KvCache> caches;
  for (const auto& block : blocks) caches.push_back(block->make_cache(1, 1));
  const at::Tensor x = at::randn({1, 1, model.hidden_size});
  const double bare_s = median_s(
                            [&] {
                              for (size_t i = 0; i < blocks.size(); ++i) blocks[i]->forward(x, 0, &caches[i]);
                            },
                            config.seconds_per_point) /
                        static_cast<double>(blocks.size());
  return {{"request_overhead_s", std::max(a, 0.0)},
          {"block_overhead_s", std::max(b - bare_s, 0.0)},
          {"fit", {{"fixed_s", a}, {"per_block_s", b}, {"bare_block_s", bare_s}, {"points", points}}},
          {"method",
           "fixed part of a least-squares fit t = a + b x blocks over spans of 2, 3, 4 blocks (1, 2 for a shorter "
           "model) run through "
           "SpanCompute (f32, decode, batch 1, empty cache); a below 0 is noise and counts as 0. "
           "block_overhead_s: b minus the same step of those blocks alone, in turn"}};
}

json machine(int threads) {
  std::string cpu = "unknown";
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  }
  const std::time_t now = std::time(nullptr);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  const double memory = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGESIZE));
  return {{"cpu_model", cpu},
          {"cores", std::thread::hardware_concurrency()},
          {"threads", threads},
          {"memory_bytes", memory},
          {"date", date}};
}

void check(const DeviceProfileConfig& c, const ModelConfig& model) {
  const auto positive = [](const std::vector<int64_t>& v, int64_t lo) {
    return !v.empty() && std::all_of(v.begin(), v.end(), [lo](int64_t x) { return x >= lo; });
  };
  if (c.formats.empty()) throw InputError("--formats: give one or more of f32, bf16, int8");
  for (const std::string& format : c.formats) options_of(format);  // refuses an unknown name
  if (!positive(c.batches, 1)) throw InputError("--batches: give one or more batch sizes >= 1");
  if (!positive(c.cache_tokens, 0)) throw InputError("--cache-tokens: give one or more lengths >= 0");
  if (!positive(c.prefill_tokens, 2)) throw InputError("--prefill-tokens: give one or more lengths >= 2");
  const int64_t longest = std::max(*std::max_element(c.cache_tokens.begin(), c.cache_tokens.end()) + 1,
                                   *std::max_element(c.prefill_tokens.begin(), c.prefill_tokens.end()));
  if (longest > model.max_position_embeddings) {
    throw InputError(
        fmt::format("--cache-tokens/--prefill-tokens: {} positions exceed the {} the model holds "
                    "(max_position_embeddings); give shorter lengths",
                    longest, model.max_position_embeddings));
  }
  if (!(c.seconds_per_point >= 0 && c.seconds_per_point <= 600)) {
    throw InputError("--seconds-per-point: give a number of seconds in [0, 600]");
  }
}

}  // namespace

std::string profile_device(const DeviceProfileConfig& config) {
  const ModelConfig model = load_model_config(config.model);
  check(config, model);
  if (config.threads > 0) at::set_num_threads(config.threads);
  const Checkpoint checkpoint(config.model);
  json formats = json::object();
  for (const std::string& format : config.formats) formats[format] = measure_format(model, checkpoint, format, config);
  json overhead = request_overhead(config, model, checkpoint);
  json profile = {
      {"version", kDeviceProfileVersion},
      {"machine", machine(at::get_num_threads())},
      {"model",
       {{"dir", config.model.string()},
        {"family", model.family},
        {"hidden", model.hidden_size},
        {"intermediate", model.intermediate_size},
        {"heads", model.num_heads},
        {"kv_heads", model.num_kv_heads},
        {"vocab", model.vocab_size},
        {"blocks", model.num_layers}}},
      {"read_bandwidth_bytes_per_s", read_bandwidth_bytes_per_s(config.seconds_per_point)},
      {"request_overhead_s", overhead["request_overhead_s"]},
      {"block_overhead_s", overhead["block_overhead_s"]},
      {"request_overhead", overhead},
      {"formats", formats},
  };
  const std::string text = profile.dump(2) + "\n";
  std::ofstream out(config.out);
  out << text;
  out.close();
  if (!out) throw InputError(fmt::format("--out {}: cannot write the profile", config.out.string()));
  return text;
}

}  // namespace bouquet::gpu
