// `bouquet bench-swarm`: parse flags into net::BenchSwarmConfig and run the benchmark.
#include "net/client/bench_swarm.h"
#include "cli/command.h"

#include <fmt/core.h>

#include <memory>

namespace bouquet::cli {
namespace {

const CommandRegistration bench_swarm_command{
    "bench-swarm", "Per-token latency through 3 local servers over loopback vs generate --local", [](CLI::App& sub) {
      auto config = std::make_shared<net::BenchSwarmConfig>();
      sub.add_option("--models", config->models, "Comma-separated: tiny, llama-2-7b")->capture_default_str();
      sub.add_option("--prompt-tokens", config->prompt_tokens, "Prompt length")->capture_default_str();
      sub.add_option("--new-tokens", config->new_tokens, "Tokens generated per round")->capture_default_str();
      sub.add_option("--rounds", config->rounds, "Alternating local/swarm rounds (median)")->capture_default_str();
      sub.add_option("--threads", config->threads, "Compute threads per process")->capture_default_str();
      sub.add_option("--compression", config->compression, "Wire compression: none, f16, int8")->capture_default_str();
      sub.add_option("--dir", config->dir, "Where to write the models (default: a temporary folder)");
      sub.add_option("--seed", config->seed, "Seed of the weights and prompt")->capture_default_str();
      sub.add_flag("--json", config->json, "Print one JSON object");
      return [config] {
        const auto result = net::bench_swarm(*config);
        fmt::print("{}", config->json ? net::bench_swarm_json(result) + "\n" : net::format_bench_swarm(result));
        return 0;
      };
    }};

}  // namespace
}  // namespace bouquet::cli
