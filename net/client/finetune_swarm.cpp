#include "net/client/finetune_swarm.h"

#include <ATen/Parallel.h>
#include <fmt/core.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <memory>
#include <optional>

#include "gpu/client_head.h"
#include "gpu/errors.h"
#include "gpu/fingerprint.h"
#include "gpu/gguf_tokenizer.h"
#include "gpu/progress.h"
#include "gpu/prompt_generation.h"
#include "net/client/generate_swarm.h"
#include "net/client/remote_chain.h"
#include "net/client/remote_generation.h"
#include "net/dht/dht_directory.h"
#include "net/rpc/address.h"

namespace bouquet::net {
namespace {

// A client of the servers named by --peers, or found through --initial-peers (the DHT lookup of
// generate, net/client/generate_swarm.h); `directory` keeps the DHT node alive as long as the client.
std::unique_ptr<SwarmClient> swarm_client(const std::string& peers, const std::vector<std::string>& initial_peers,
                                          const std::string& model_name, const std::string& model_dir,
                                          uint32_t num_blocks, const std::string& fingerprint,
                                          std::unique_ptr<DhtDirectory>& directory) {
  SwarmClientConfig client_config;
  if (!peers.empty()) {
    client_config.peers = split_list(peers);
  } else {
    SwarmGenerateOptions swarm;
    swarm.initial_peers = initial_peers;
    swarm.model_name = model_name;
    directory = join_swarm_directory(client_config, swarm, model_dir, num_blocks, fingerprint);
  }
  return std::make_unique<SwarmClient>(client_config);
}

// Liars found (as generate reports them) and a count of the checks, on stderr.
void print_spot_checks(const std::vector<SpotCheckReport>& checks) {
  if (checks.empty()) return;
  size_t liars = 0;
  for (const SpotCheckReport& c : checks) {
    if (c.liar.empty()) continue;
    ++liars;
    fmt::print(stderr, "spot check at forward {}: {} lied (blocks {}); avoided since\n", c.step, c.liar,
               c.span.to_string());
  }
  fmt::print(stderr, "spot checks: {} hop forwards re-run on another server, {} liar(s) found\n", checks.size(), liars);
}

}  // namespace

gpu::FinetuneReport finetune_command(const gpu::FinetuneConfig& config, const SwarmGenerateOptions& swarm) {
  gpu::check_finetune_config(config);
  const int sources = int{config.local} + int{!swarm.peers.empty()} + int{!swarm.initial_peers.empty()};
  if (sources != 1) throw gpu::InputError("give exactly one of --local, --peers and --initial-peers");
  if (config.threads > 0) at::set_num_threads(config.threads);
  const auto tokenizer = gpu::load_model_tokenizer(config.model);
  const gpu::ClientHead head({config.model, "f32", "cpu"});
  const std::string fingerprint = model_fingerprint(config.model);
  // Steps, loss and steps/s: redrawn on a terminal, a line per tenth of the steps in a log.
  std::optional<gpu::Progress> bar;
  const auto progress = [&](int64_t step, int64_t steps, double loss) {
    if (config.quiet) return;
    if (!bar) bar.emplace(gpu::ProgressConfig{"finetune", steps, "steps"});
    bar->update(step, 0, fmt::format("loss {:.4f}", loss));
  };
  gpu::FinetuneReport report;
  std::string route = "local";
  nlohmann::json retries = nlohmann::json::array();
  if (config.local) {
    const gpu::SpanRunner blocks({config.model, 0, -1, "f32", "cpu"});
    gpu::LocalPassChain chain(blocks);
    report = gpu::finetune(config, head, *tokenizer, chain, fingerprint, progress);
  } else {
    const auto num_blocks = static_cast<uint32_t>(head.model_config().num_layers);
    std::unique_ptr<DhtDirectory> directory;
    const auto client = swarm_client(swarm.peers, swarm.initial_peers, swarm.model_name, config.model, num_blocks,
                                     fingerprint, directory);
    RemoteChainConfig chain_config;
    chain_config.model_id = fingerprint;
    chain_config.num_blocks = num_blocks;
    chain_config.compression = parse_compression(swarm.compression);
    chain_config.seed = config.seed;
    chain_config.spot_check_rate = swarm.spot_check_rate;
    RemoteChain chain(*client, chain_config);
    report = gpu::finetune(config, head, *tokenizer, chain, fingerprint, progress);
    route = chain.describe_chain();
    for (const PassRetry& r : chain.retries()) {
      retries.push_back({{"blocks", r.span.to_string()},
                         {"failed_peer", r.failed_peer},
                         {"cause", r.cause},
                         {"replacement", r.replacement}});
      fmt::print(stderr, "blocks {} failed on {} ({}); retried on {}\n", r.span.to_string(), r.failed_peer, r.cause,
                 fmt::format("{}", fmt::join(r.replacement, ", ")));
    }
    print_spot_checks(chain.spot_checks());
  }
  if (config.json) {
    const nlohmann::json out = {{"mode", config.mode},
                                {"steps", config.steps},
                                {"pre_seq_len", config.pre_seq_len},
                                {"examples", report.examples},
                                {"loss_before", report.before.loss},
                                {"loss_after", report.after.loss},
                                {"exact_before", report.before.exact},
                                {"exact_after", report.after.exact},
                                {"losses", report.losses},
                                {"step_s", report.step_s},
                                {"step_batch", report.step_batch},
                                {"step_positions", report.step_positions},
                                {"route", route},
                                {"retries", retries},
                                {"out", config.out}};
    fmt::print("{}\n", out.dump());
  } else {
    fmt::print(
        "{}, {} steps, pre_seq_len {}, {} examples: loss {:.4f} -> {:.4f}, exact match {}/{} -> {}/{}; route: {}\n",
        config.mode, config.steps, config.pre_seq_len, report.examples, report.before.loss, report.after.loss,
        report.before.exact, report.before.total, report.after.exact, report.after.total, route);
  }
  if (!config.out.empty() && !config.json) fmt::print("prompts written to {}\n", config.out);
  std::fflush(stdout);
  return report;
}

int run_finetune(const gpu::FinetuneConfig& config, const SwarmGenerateOptions& swarm) {
  finetune_command(config, swarm);
  return 0;
}

gpu::GenerationResult generate_with_prompts_command(const gpu::GenerateConfig& config, const std::string& prompts,
                                                    const SwarmGenerateOptions& swarm,
                                                    const std::function<void(std::string_view)>& on_text) {
  if (int{config.local} + int{!swarm.peers.empty()} + int{!swarm.initial_peers.empty()} != 1) {
    throw gpu::InputError("generate --prompts needs exactly one of --local, --peers and --initial-peers");
  }
  if (config.prompt.empty() == config.prompt_ids.empty()) {
    throw gpu::InputError("give exactly one of --prompt and --prompt-ids");
  }
  if (config.threads < 0) throw gpu::InputError("--threads must be >= 0");
  if (config.threads > 0) at::set_num_threads(config.threads);
  const auto tokenizer = gpu::load_model_tokenizer(config.model);
  const gpu::ClientHead head({config.model, "f32", "cpu"});
  const std::string fingerprint = model_fingerprint(config.model);
  const gpu::TunedPrompts tuned = gpu::load_prompts(prompts, fingerprint, head.model_config(),
                                                    [&] { return legacy_model_fingerprint(config.model); });

  const gpu::GenerationRequest request = gpu::generation_request(config, tokenizer.get(), head.model_config());

  std::optional<gpu::StreamDecoder> stream;
  if (on_text) stream.emplace(*tokenizer);
  const auto emit = [&](gpu::TokenId id) {
    if (stream) on_text(stream->push(id));
  };
  gpu::GenerationResult result;
  if (config.local) {
    const gpu::SpanRunner blocks({config.model, 0, -1, "f32", "cpu"});
    gpu::LocalPassChain chain(blocks);
    result = gpu::generate_with_prompts(head, chain, tuned, request, emit);
  } else {
    const auto num_blocks = static_cast<uint32_t>(head.model_config().num_layers);
    std::unique_ptr<DhtDirectory> directory;
    const auto client = swarm_client(swarm.peers, swarm.initial_peers, swarm.model_name, config.model, num_blocks,
                                     fingerprint, directory);
    RemoteChainConfig chain_config;
    chain_config.model_id = fingerprint;
    chain_config.num_blocks = num_blocks;
    chain_config.compression = parse_compression(swarm.compression);
    chain_config.seed = config.seed;
    RemoteChain chain(*client, chain_config);
    result = gpu::generate_with_prompts(head, chain, tuned, request, emit);
  }
  if (stream) on_text(stream->finish());
  result.text = tokenizer->decode(result.ids);
  return result;
}

int run_generate_with_prompts(const gpu::GenerateConfig& config, const std::string& prompts,
                              const SwarmGenerateOptions& swarm) {
  if (config.json) {
    fmt::print("{}\n", gpu::generation_json(generate_with_prompts_command(config, prompts, swarm)));
    return 0;
  }
  const auto result = generate_with_prompts_command(config, prompts, swarm, [](std::string_view piece) {
    fmt::print("{}", piece);
    std::fflush(stdout);
  });
  fmt::print("\n");
  std::fflush(stdout);
  fmt::print(stderr, "[{} tokens, {:.1f} tokens/s, stop: {}; with prompts {}]\n", result.ids.size(),
             result.tokens_per_s, result.stop_reason, prompts);
  return 0;
}

}  // namespace bouquet::net
