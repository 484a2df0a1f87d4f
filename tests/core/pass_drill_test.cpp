// Fault drills for fine-tuning passes: one seeded forward and backward through a virtual swarm
// with spare servers, faults injected at random, and the checks a user of `finetune` cares
// about. Safety: the pass ends with exactly the outputs and input gradients of the fault-free
// reference. Liveness: once the faults are spent, the pass completes (a safe spare of every span
// never fails, and the retry budget is larger than the faults can use).
//
// A drill: 12 blocks cut into 2-4 spans, each held by a primary server (drawn most often: high
// throughput), by a spare holding the span whole that no fault touches, and by one or two
// fragile spares splitting it (so a replacement may take several servers, and a backward then
// recomputes their inputs). Faults, 1 to 4 per drill: a primary or fragile spare crashing at a
// random time (peers told or not), a reply delayed past the timeout or within it, a request or
// reply lost. Batch, positions, sub-batch size and speeds vary.
#include <gtest/gtest.h>

#include <fmt/core.h>

#include <cstdlib>
#include <functional>
#include <memory>

#include "core/pass_session.h"
#include "tests/core/support/seed.h"
#include "tests/core/support/swarm.h"

namespace bouquet::test {
namespace {

using namespace core;

constexpr uint32_t kBlocks = 12;
constexpr uint32_t kHidden = 8;
const std::string kModel = "drill-12/feedbeef";
constexpr double kReplyTimeout_s = 2;

struct Stats {
  uint64_t drills = 0, faults = 0, recoveries = 0, multi_server_replacements = 0, backward_recoveries = 0;
};

BlockServerConfig server_config(BlockSpan span, double throughput_rps) {
  BlockServerConfig c;
  c.model_id = kModel;
  c.span = span;
  c.hidden_size = kHidden;
  c.cache_tokens = 1 << 20;
  c.throughput_rps = throughput_rps;
  return c;
}

std::string run_pass_drill(uint64_t seed, Stats& stats) {
  Rng rng(seed);
  VirtualSwarm swarm(rng.next_u64());
  swarm.notify_peers_on_crash = rng.bernoulli(0.5);
  swarm.set_default_link(Link{rng.uniform(0.001, 0.05), rng.uniform(1e6, 1e9)});
  const double compute_s = rng.uniform(1e-5, 2e-4);
  std::vector<uint32_t> cuts{0, kBlocks};
  const size_t span_count = 2 + rng.below(3);
  while (cuts.size() < span_count + 1) {
    const auto c = 1 + static_cast<uint32_t>(rng.below(kBlocks - 1));
    if (std::find(cuts.begin(), cuts.end(), c) == cuts.end()) cuts.push_back(c);
  }
  std::sort(cuts.begin(), cuts.end());
  std::vector<PeerId> faultable;
  for (size_t i = 0; i + 1 < cuts.size(); ++i) {
    const BlockSpan span{cuts[i], cuts[i + 1]};
    faultable.push_back(swarm.add_server(server_config(span, 1000), compute_s));
    swarm.add_server(server_config(span, 10), compute_s);  // the safe spare
    if (span.size() >= 2) {
      const uint32_t cut = span.begin + 1 + static_cast<uint32_t>(rng.below(span.size() - 1));
      faultable.push_back(swarm.add_server(server_config({span.begin, cut}, 100), compute_s));
      faultable.push_back(swarm.add_server(server_config({cut, span.end}, 100), compute_s));
    }
  }

  PassSpec spec;
  spec.pass.model_id = kModel;
  spec.pass.num_blocks = kBlocks;
  spec.pass.hidden_size = kHidden;
  spec.pass.reply_timeout_s = kReplyTimeout_s;
  spec.pass.max_retries = 64;
  spec.pass.request_id_base = rng.next_u64() >> 8;
  spec.batch = 1 + static_cast<uint32_t>(rng.below(4));
  spec.tokens = 1 + static_cast<uint32_t>(rng.below(6));
  spec.pass.max_tokens_per_request = rng.bernoulli(0.5) ? 0 : spec.tokens * (1 + static_cast<uint32_t>(rng.below(2)));
  spec.input_seed = rng.next_u64();
  spec.backward = rng.bernoulli(0.8);

  using Match = std::function<bool(PeerId, PeerId, const Message&)>;
  auto nth = [](Match match, uint64_t n) {
    auto seen = std::make_shared<uint64_t>(0);
    return [match = std::move(match), n, seen](PeerId from, PeerId to, const Message& m, Time) {
      return match(from, to, m) && ++*seen == n;
    };
  };
  const uint64_t faults = 1 + rng.below(4);
  for (uint64_t f = 0; f < faults; ++f) {
    const PeerId server = faultable[rng.below(faultable.size())];
    const uint64_t k = 1 + rng.below(4);
    const Match replies = [server](PeerId from, PeerId, const Message& m) {
      return from == server && (std::holds_alternative<ForwardResult>(m) || std::holds_alternative<BackwardResult>(m));
    };
    const Match requests = [server](PeerId, PeerId to, const Message& m) {
      return to == server && (std::holds_alternative<ForwardRequest>(m) || std::holds_alternative<BackwardRequest>(m));
    };
    switch (rng.below(4)) {
      case 0:
        swarm.crash_at(server, rng.uniform(0, 0.2));
        break;
      case 1:
        swarm.delay_if(nth(replies, k), kReplyTimeout_s * rng.uniform(1.2, 3));
        break;
      case 2:
        swarm.delay_if(nth(replies, k), kReplyTimeout_s * rng.uniform(0.1, 0.6));
        break;
      default:
        swarm.drop_if(nth(rng.bernoulli(0.5) ? requests : replies, k));
        break;
    }
  }

  const size_t pass = swarm.train(swarm.add_client(), spec);
  swarm.run();
  ++stats.drills;
  stats.faults += faults;
  const PassSession& session = swarm.pass_session(pass);
  for (const PassRecovery& r : session.recoveries()) {
    ++stats.recoveries;
    stats.multi_server_replacements += r.replacement.size() > 1;
  }
  const PassResult& got = swarm.pass_result(pass);
  if (!got.done)
    return fmt::format("the pass did not finish: {}", got.error ? got.error->to_string() : "still running");
  const PassResult want = reference_pass(spec);
  if (got.outputs != want.outputs) return "the forward's outputs differ from the fault-free reference";
  if (got.grad_inputs != want.grad_inputs) return "the backward's input gradients differ from the fault-free reference";
  for (const Chain& chain : session.chains()) {
    if (!chain_covers(chain, BlockSpan{0, kBlocks})) return "a sub-batch's chain does not cover the model";
  }
  return "";
}

void run_pass_drills(uint64_t first_seed, uint64_t count, Stats& stats) {
  if (const char* env = std::getenv("BOUQUET_DRILLS"); env && *env) count = std::strtoull(env, nullptr, 0);
  int broken = 0;
  for (uint64_t i = 0; i < count && broken < 10; ++i) {
    const uint64_t seed = first_seed + i;
    const std::string problem = run_pass_drill(seed, stats);
    if (problem.empty()) continue;
    ++broken;
    ADD_FAILURE() << "pass drill " << seed << ": " << problem << "\n  reproduce: BOUQUET_DRILLS=1 "
                  << reproduce_command(seed);
  }
  fmt::print("{} pass drills, {} faults, {} recoveries ({} by several servers)\n", stats.drills, stats.faults,
             stats.recoveries, stats.multi_server_replacements);
}

TEST(PassDrills, FiveHundredFaultyPassesEndWithTheFaultFreeOutputsAndGradients) {
  Stats stats;
  run_pass_drills(test_seed(11000), 500, stats);
  if (stats.drills < 500) return;  // BOUQUET_DRILLS asked for a few
  // The drills must really exercise recovery, including replacements by several servers.
  EXPECT_GT(stats.recoveries, 150u);
  EXPECT_GT(stats.multi_server_replacements, 20u);
}

}  // namespace
}  // namespace bouquet::test
