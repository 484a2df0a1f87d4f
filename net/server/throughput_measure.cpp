#include "net/server/throughput_measure.h"

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <unistd.h>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/activation.h"
#include "core/compute.h"
#include "gpu/span_compute.h"

namespace bouquet::net {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

core::Activation zeros(uint32_t tokens, uint32_t hidden) {
  // Small nonzero values: the blocks do the same work as on real activations.
  std::vector<float> values(static_cast<size_t>(tokens) * hidden);
  for (size_t i = 0; i < values.size(); ++i) values[i] = 0.01f * static_cast<float>(i % 7);
  return core::make_activation({1, tokens, hidden}, std::move(values));
}

void run_or_throw(SpanCompute& compute, const core::ComputeRequest& request) {
  auto result = compute.run(request);
  if (!result.ok()) {
    throw std::runtime_error(fmt::format("measuring throughput: {}", result.error().to_string()));
  }
}

}  // namespace

std::string ThroughputKey::to_string() const {
  return fmt::format("{}/{}/{}/{}/{}", fingerprint, device, dtype, quant, threads);
}

std::filesystem::path throughput_cache_file() {
  if (const char* dir = std::getenv("BOUQUET_CACHE_DIR"); dir && *dir) {
    return std::filesystem::path(dir) / "throughput.json";
  }
  if (const char* home = std::getenv("HOME"); home && *home) {
    return std::filesystem::path(home) / ".cache" / "bouquet" / "throughput.json";
  }
  return {};
}

MeasuredSpeed measure_block_speed(SpanCompute& compute, double budget_s, uint32_t forward_tokens) {
  const auto start = Clock::now();
  const uint32_t hidden = compute.hidden_size();
  const core::BlockSpan one{compute.span().begin, compute.span().begin + 1};
  // The measurement's own cache id, far from the BlockServer's (which count up from 1).
  const core::CacheId cache = ~uint64_t{0};
  const uint32_t max_steps = 512;

  // One-token cached steps: a short prompt first, as a session would have.
  core::ComputeRequest step;
  step.kind = core::ComputeKind::inference;
  step.span = one;
  step.batch = 1;
  step.cache_id = cache;
  step.max_length = max_steps + 16;
  step.new_tokens = 8;
  step.inputs = zeros(8, hidden);
  run_or_throw(compute, step);
  step.new_tokens = 1;
  step.inputs = zeros(1, hidden);
  step.cache_length = 8;
  run_or_throw(compute, step);  // warm-up
  ++step.cache_length;
  uint32_t steps = 0;
  const auto steps_start = Clock::now();
  while (steps < max_steps && (steps < 3 || seconds_since(steps_start) < budget_s / 2)) {
    run_or_throw(compute, step);
    ++step.cache_length;
    ++steps;
  }
  const double inference_rps = steps / seconds_since(steps_start);
  compute.drop_cache(cache);

  core::ComputeRequest forward;
  forward.kind = core::ComputeKind::forward;
  forward.span = one;
  forward.batch = 1;
  forward.new_tokens = forward_tokens;
  forward.inputs = zeros(forward_tokens, hidden);
  run_or_throw(compute, forward);  // warm-up
  uint32_t passes = 0;
  const auto forward_start = Clock::now();
  while (passes < 64 && (passes < 2 || seconds_since(forward_start) < budget_s / 2)) {
    run_or_throw(compute, forward);
    ++passes;
  }
  const double forward_rps = static_cast<double>(passes) * forward_tokens / seconds_since(forward_start);
  return MeasuredSpeed{inference_rps, forward_rps, fmt::format("measured in {:.2f} s", seconds_since(start))};
}

MeasuredSpeed cached_block_speed(const ThroughputKey& key, SpanCompute& compute,
                                 const std::function<void(const std::string&)>& log) {
  const std::filesystem::path file = throughput_cache_file();
  nlohmann::json cache = nlohmann::json::object();
  if (!file.empty() && std::filesystem::exists(file)) {
    std::ifstream in(file);
    std::stringstream text;
    text << in.rdbuf();
    cache = nlohmann::json::parse(text.str(), nullptr, false);
    if (cache.is_discarded() || !cache.is_object()) {
      log(fmt::format("ignoring the malformed throughput cache {}", file.string()));
      cache = nlohmann::json::object();
    }
  }
  const std::string name = key.to_string();
  if (cache.contains(name)) {
    const nlohmann::json& entry = cache[name];
    if (entry.is_object() && entry.value("inference_rps", 0.0) > 0 && entry.value("forward_rps", 0.0) > 0) {
      return MeasuredSpeed{entry["inference_rps"].get<double>(), entry["forward_rps"].get<double>(),
                           fmt::format("cached in {}", file.string())};
    }
    log(fmt::format("ignoring a malformed entry '{}' of {}", name, file.string()));
  }
  MeasuredSpeed speed = measure_block_speed(compute);
  if (file.empty()) return speed;
  cache[name] = {{"inference_rps", speed.inference_rps}, {"forward_rps", speed.forward_rps}};
  try {
    std::filesystem::create_directories(file.parent_path());
    // Write a private file, then rename over the cache: a reader never sees half a file.
    const std::filesystem::path tmp = file.string() + fmt::format(".{}.tmp", ::getpid());
    {
      std::ofstream out(tmp);
      out << cache.dump(2) << "\n";
      if (!out) throw std::runtime_error("write failed");
    }
    std::filesystem::rename(tmp, file);
    speed.source += fmt::format(", cached in {}", file.string());
  } catch (const std::exception& e) {
    log(fmt::format("could not write the throughput cache {}: {}", file.string(), e.what()));
  }
  return speed;
}

}  // namespace bouquet::net
