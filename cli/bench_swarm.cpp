// `bouquet bench-swarm`: parse flags into net::BenchSwarmConfig and run the benchmark.
#include "net/client/bench_swarm.h"
#include "cli/command.h"
#include "net/client/bench_clients.h"
#include "net/rpc/address.h"

#include <fmt/core.h>

#include <memory>
#include <stdexcept>

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
      sub.add_option("--spot-check-rate", config->spot_check_rate,
                     "Comma-separated spot check rates to generate at too, e.g. 0,0.05,0.2 (a spare server per span)")
          ->delimiter(',');
      // Many clients at once (net/client/bench_clients.h): a different benchmark of the same command.
      auto clients = std::make_shared<net::BenchClientsConfig>();
      auto clients_list = std::make_shared<std::string>();
      sub.add_option("--clients", *clients_list,
                     "Comma-separated numbers of concurrent clients: measure batching on and off instead");
      sub.add_option("--max-batch", clients->max_batch,
                     "--clients: the servers' --max-batch when batching (0 = default)")
          ->capture_default_str();
      sub.add_option("--batch-wait-ms", clients->batch_wait_ms, "--clients: the servers' --batch-wait-ms when batching")
          ->capture_default_str()
          ->check(CLI::Range(0.0, 10000.0));
      sub.add_option("--long-prompt", clients->long_prompt_tokens,
                     "--clients: one more client sends a prompt of this many tokens while the others decode; "
                     "compare the servers chunking it (--prefill-chunk) with computing it at once")
          ->capture_default_str();
      sub.add_option("--prefill-chunk", clients->prefill_chunk,
                     "--long-prompt: the servers' --prefill-chunk when chunking (default: theirs)");
      sub.add_option("--servers", clients->servers, "--clients: servers sharing the blocks")->capture_default_str();
      sub.add_option("--blocks", clients->blocks, "--clients: blocks of the model")->capture_default_str();
      sub.add_option("--hidden", clients->hidden, "--clients: hidden size of the model")->capture_default_str();
      return [config, clients, clients_list] {
        if (!clients_list->empty()) {
          clients->clients.clear();
          for (const auto& n : net::split_list(*clients_list)) {
            try {
              clients->clients.push_back(std::stoll(n));
            } catch (const std::exception&) {
              throw std::invalid_argument(fmt::format("--clients: '{}' is not a number", n));
            }
          }
          clients->new_tokens = config->new_tokens;
          clients->prompt_tokens = config->prompt_tokens;
          clients->threads = config->threads;
          clients->dir = config->dir;
          clients->seed = config->seed;
          const auto result = net::bench_clients(*clients);
          fmt::print("{}", config->json ? net::bench_clients_json(result) + "\n" : net::format_bench_clients(result));
          return 0;
        }
        const auto result = net::bench_swarm(*config);
        fmt::print("{}", config->json ? net::bench_swarm_json(result) + "\n" : net::format_bench_swarm(result));
        return 0;
      };
    }};

}  // namespace
}  // namespace bouquet::cli
