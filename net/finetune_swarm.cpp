#include "net/finetune_swarm.h"

#include <ATen/Parallel.h>
#include <fmt/core.h>
#include <fmt/format.h>

#include <cstdio>
#include <memory>

#include "gpu/client_head.h"
#include "gpu/errors.h"
#include "net/fingerprint.h"
#include "net/remote_chain.h"
#include "net/remote_generation.h"

namespace bouquet::net {
namespace {

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at <= text.size()) {
    const size_t end = std::min(text.find(',', at), text.size());
    if (end > at) out.push_back(text.substr(at, end - at));
    at = end + 1;
  }
  return out;
}

}  // namespace

gpu::FinetuneReport finetune_command(const gpu::FinetuneConfig& config) {
  gpu::check_finetune_config(config);
  const int sources = int{config.local} + int{!config.peers.empty()} + int{!config.initial_peers.empty()};
  if (sources != 1) throw gpu::InputError("give exactly one of --local, --peers and --initial-peers");
  if (!config.initial_peers.empty()) {
    throw gpu::InputError("finetune --initial-peers (DHT discovery) is not wired in this build yet; give --peers");
  }
  if (config.threads > 0) at::set_num_threads(config.threads);
  const auto tokenizer = gpu::load_tokenizer(config.model);
  const gpu::ClientHead head({config.model, "f32", "cpu"});
  const std::string fingerprint = model_fingerprint(config.model);
  const auto progress = [&](int64_t step, int64_t steps, double loss) {
    if (!config.quiet) fmt::print(stderr, "{}\n", gpu::progress_line(step, steps, loss));
  };
  gpu::FinetuneReport report;
  std::string route = "local";
  if (config.local) {
    const gpu::SpanRunner blocks({config.model, 0, -1, "f32", "cpu"});
    gpu::LocalPassChain chain(blocks);
    report = gpu::finetune(config, head, *tokenizer, chain, fingerprint, progress);
  } else {
    SwarmClientConfig client_config;
    client_config.peers = split_list(config.peers);
    SwarmClient client(client_config);
    RemoteChainConfig chain_config;
    chain_config.model_id = fingerprint;
    chain_config.num_blocks = static_cast<uint32_t>(head.model_config().num_layers);
    chain_config.compression = parse_compression(config.compression);
    chain_config.seed = config.seed;
    RemoteChain chain(client, chain_config);
    report = gpu::finetune(config, head, *tokenizer, chain, fingerprint, progress);
    route = chain.describe_chain();
    for (const PassRetry& r : chain.retries()) {
      fmt::print(stderr, "blocks {} failed on {} ({}); retried on {}\n", r.span.to_string(), r.failed_peer, r.cause,
                 fmt::format("{}", fmt::join(r.replacement, ", ")));
    }
  }
  fmt::print("{}, {} steps, pre_seq_len {}, {} examples: loss {:.4f} -> {:.4f}, exact match {}/{} -> {}/{}; route: {}\n",
             config.mode, config.steps, config.pre_seq_len, report.examples, report.before.loss, report.after.loss,
             report.before.exact, report.before.total, report.after.exact, report.after.total, route);
  if (!config.out.empty()) fmt::print("prompts written to {}\n", config.out);
  std::fflush(stdout);
  return report;
}

int run_finetune(const gpu::FinetuneConfig& config) {
  finetune_command(config);
  return 0;
}

}  // namespace bouquet::net
