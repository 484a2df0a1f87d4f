// `bouquet chat`: an interactive conversation in the terminal, one line a message, the answer
// streamed as it is generated; the session (and its caches, here or on the servers) stays open
// across turns. --local runs every block here; --peers / --initial-peers go through a swarm.
#include "cli/command.h"
#include "gpu/chat_local.h"
#include "gpu/errors.h"
#include "net/client/chat_swarm.h"
#include "net/client/swarm_client.h"

#include <fmt/core.h>

#include <unistd.h>
#include <cstdio>
#include <functional>
#include <iostream>
#include <memory>
#include <string>

namespace bouquet::cli {
namespace {

using Reply = std::function<std::string(std::string_view, const std::function<void(std::string_view)>&)>;

void report(const net::RecoveryReport& r) {
  std::string to;
  for (const auto& hop : r.replacement)
    to += fmt::format("{}{} {}", to.empty() ? "" : ", ", hop.address, hop.span.to_string());
  fmt::print(stderr, "[blocks {} of {} ({}): {}{}, {} positions replayed]\n", r.span.to_string(), r.failed_peer,
             r.cause, r.succeeded ? "recovered on " : "not recovered", to, r.positions_replayed);
}

// Reads a line a message until end of input or /exit; after_turn runs after each answer's line. A
// turn the swarm could not answer is reported and the conversation goes on (the next turn opens
// a fresh session).
int converse(const Reply& reply, const std::function<void()>& after_turn = {}) {
  const bool interactive = ::isatty(STDIN_FILENO) != 0;
  std::string line;
  while (true) {
    if (interactive) fmt::print(stderr, "you> ");
    if (!std::getline(std::cin, line) || line == "/exit") break;
    if (line.empty()) continue;
    try {
      reply(line, [](std::string_view piece) {
        fmt::print("{}", piece);
        std::fflush(stdout);
      });
    } catch (const net::RemoteError& e) {
      fmt::print("\n");
      std::fflush(stdout);
      fmt::print(stderr, "bouquet: the swarm could not answer: {}; the conversation is kept, try again\n", e.what());
      continue;
    }
    fmt::print("\n");
    std::fflush(stdout);
    if (after_turn) after_turn();
  }
  return 0;
}

const CommandRegistration chat_command{
    "chat", "Talk with an instruct model, one line a message (--local: every block here; --peers: through servers)",
    [](CLI::App& sub) {
      auto config = std::make_shared<gpu::GenerateConfig>();
      auto swarm = std::make_shared<net::SwarmGenerateOptions>();
      auto chat_template = std::make_shared<std::string>();
      auto max_length = std::make_shared<int64_t>(0);
      config->max_new_tokens = 256;
      sub.add_option("--model", config->model, "Hugging Face model folder, or a .gguf file")->required();
      auto* local = sub.add_flag("--local", config->local, "Run every block in this process");
      auto* peers = sub.add_option("--peers", swarm->peers, "HOST:PORT,... of servers that together hold every block")
                        ->excludes(local);
      sub.add_option("--initial-peers", swarm->initial_peers,
                     "HOST:PORT,... of DHT nodes: find the model's servers there")
          ->delimiter(',')
          ->excludes(local)
          ->excludes(peers);
      sub.add_option("--model-name", swarm->model_name,
                     "With --initial-peers, the model's name in the DHT (default: the folder's name)");
      sub.add_option("--compression", swarm->compression, "Through servers, on the wire: none, f16, int8")
          ->capture_default_str();
      sub.add_option("--recovery-deadline", swarm->recovery_deadline_s,
                     "Through servers, seconds to find a replacement for a failed span before giving up")
          ->capture_default_str()
          ->check(finite_in(0.001, 1e7));
      sub.add_option("--routing", swarm->routing,
                     "Through servers, the planner: min_latency or greedy (default: greedy with --peers, "
                     "min_latency with --initial-peers)");
      sub.add_option("--chat-template", *chat_template, "chatml, llama2 or llama3 instead of the model's own");
      sub.add_option("--max-new-tokens", config->max_new_tokens, "Most tokens of one answer")
          ->capture_default_str()
          ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
      sub.add_option("--max-length", *max_length,
                     "Most positions of the whole conversation (0: the model's, at most 8192 here, 2048 through "
                     "servers, which reserve cache for all of them)")
          ->capture_default_str()
          ->check(CLI::Range(int64_t{0}, int64_t{1} << 24));
      sub.add_option("--temperature", config->temperature, "0 = greedy")
          ->capture_default_str()
          ->check(finite_in(0, 1e6));
      sub.add_option("--top-p", config->top_p, "Keep the smallest set with this probability")
          ->check(finite_in(1e-9, 1));
      sub.add_option("--seed", config->seed, "Seed of the sampler")->capture_default_str();
      sub.add_option("--dtype", config->dtype, "Compute dtype: f32, f16, bf16")->capture_default_str();
      sub.add_option("--device", config->device, "auto, cpu, cuda, cuda:N")->capture_default_str();
      sub.add_option("--quant", config->quant,
                     "With --local, block weights: none, int8 (per-row scales), nf4, nf4-nodq (4-bit)")
          ->capture_default_str();
      sub.add_option("--threads", config->threads, "CPU threads (0 = libtorch's default)")->check(CLI::Range(0, 4096));
      return [config, swarm, chat_template, max_length] {
        if (config->local) {
          gpu::LocalChat chat(*config, *chat_template, *max_length);
          return converse([&](std::string_view line, const auto& on_text) { return chat.reply(line, on_text); });
        }
        if (config->quant != "none") throw gpu::InputError("--quant works with --local; servers choose their own");
        if (swarm->peers.empty() && swarm->initial_peers.empty()) {
          throw gpu::InputError("give one of --local, --peers HOST:PORT,... and --initial-peers HOST:PORT,...");
        }
        net::SwarmChat chat(*config, *swarm, *chat_template, *max_length);
        size_t reported = 0;
        return converse([&](std::string_view line, const auto& on_text) { return chat.reply(line, on_text); },
                        [&] {
                          // Which servers took a span over during or before this turn.
                          const auto recoveries = chat.recoveries();
                          for (; reported < recoveries.size(); ++reported) report(recoveries[reported]);
                        });
      };
    }};

}  // namespace
}  // namespace bouquet::cli
