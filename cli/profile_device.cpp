// `bouquet profile-device`: parse flags into DeviceProfileConfig, measure, write the JSON file.
#include "cli/command.h"
#include "gpu/device_profile.h"

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <memory>

namespace bouquet::cli {
namespace {

void print_summary(const nlohmann::json& p) {
  const auto& m = p["machine"];
  fmt::print("{} ({} cores, {} thread(s)), {}\n", m["cpu_model"].get<std::string>(), m["cores"].get<int>(),
             m["threads"].get<int>(), m["date"].get<std::string>());
  fmt::print("read bandwidth {:.2f} GB/s; overhead per request {:.3f} ms, per block {:.3f} ms\n",
             p["read_bandwidth_bytes_per_s"].get<double>() / 1e9, p["request_overhead_s"].get<double>() * 1e3,
             p["block_overhead_s"].get<double>() * 1e3);
  for (const auto& [format, figures] : p["formats"].items()) {
    for (const auto& d : figures["decode"]) {
      fmt::print("{:5} decode  batch {:4} cache {:6}: {:8.3f} ms/block\n", format, d["batch"].get<int64_t>(),
                 d["cache_tokens"].get<int64_t>(), d["step_s"].get<double>() * 1e3);
    }
    for (const auto& d : figures["prefill"]) {
      fmt::print("{:5} prefill batch {:4} new   {:6}: {:8.3f} ms/block\n", format, d["batch"].get<int64_t>(),
                 d["new_tokens"].get<int64_t>(), d["step_s"].get<double>() * 1e3);
    }
  }
}

const CommandRegistration profile_device_command{
    "profile-device", "Measure this machine as a server (block steps, bandwidth, overhead) into a device file",
    [](CLI::App& sub) {
      auto config = std::make_shared<gpu::DeviceProfileConfig>();
      sub.add_option("--model", config->model, "Model folder whose block 0 is timed")->required();
      sub.add_option("--out", config->out, "JSON file to write")->required();
      sub.add_option("--formats", config->formats, "Weight formats: f32, bf16, int8")
          ->delimiter(',')
          ->capture_default_str();
      sub.add_option("--batches", config->batches, "Decode batch sizes")->delimiter(',')->capture_default_str();
      sub.add_option("--cache-tokens", config->cache_tokens, "Decode cache lengths")
          ->delimiter(',')
          ->capture_default_str();
      sub.add_option("--prefill-tokens", config->prefill_tokens, "Prefill lengths (batch 1)")
          ->delimiter(',')
          ->capture_default_str();
      sub.add_option("--seconds-per-point", config->seconds_per_point, "Measurement time of each figure")
          ->check(finite_in(0, 600))
          ->capture_default_str();
      sub.add_option("--threads", config->threads, "CPU threads (0 = libtorch's default)")->check(CLI::Range(0, 1024));
      return [config] {
        const std::string text = gpu::profile_device(*config);
        print_summary(nlohmann::json::parse(text));
        fmt::print("wrote {}\n", config->out.string());
        return 0;
      };
    }};

}  // namespace
}  // namespace bouquet::cli
