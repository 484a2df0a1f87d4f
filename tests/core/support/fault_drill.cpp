#include "tests/core/support/fault_drill.h"

#include <gtest/gtest.h>

#include <fmt/core.h>
#include <algorithm>
#include <cstdlib>
#include <memory>

#include "core/min_latency_route.h"
#include "core/positions.h"
#include "tests/core/support/seed.h"
#include "tests/core/support/swarm.h"

namespace bouquet::test {
namespace {

using namespace core;

constexpr uint32_t kBlocks = 12;
constexpr uint32_t kHidden = 8;
const std::string kModel = "drill-12/feedbeef";
constexpr double kReplyTimeout_s = 2;

BlockServerConfig server_config(BlockSpan span, double inference_rps) {
  BlockServerConfig c;
  c.model_id = kModel;
  c.span = span;
  c.hidden_size = kHidden;
  c.cache_tokens = 1 << 20;
  c.inference_rps = inference_rps;
  return c;
}

struct Span {
  BlockSpan blocks;
  PeerId primary;
  std::vector<PeerId> fragile;  // spares that faults may hit
};

// What one server session received, as the client sent it.
struct Observed {
  BlockSpan span;
  std::vector<std::pair<uint32_t, uint32_t>> steps;  // (start position, tokens)
};

// Counts the matching messages and answers true for the n-th only.
VirtualSwarm::MessagePredicate nth(std::function<bool(PeerId, PeerId, const Message&)> match, uint64_t n) {
  auto seen = std::make_shared<uint64_t>(0);
  return [match = std::move(match), n, seen](PeerId from, PeerId to, const Message& m, Time) {
    return match(from, to, m) && ++*seen == n;
  };
}

struct Drill {
  VirtualSwarm swarm;
  std::vector<Span> spans;
  GenerationSpec spec;
  uint64_t faults = 0;

  explicit Drill(uint64_t seed) : swarm(seed) {}
};

// The swarm and the generation of drill `rng`, without faults.
void build(Drill& d, Rng& rng, RecoveryPolicy policy) {
  // Lossy compression rounds activations wherever they cross the wire, so the output depends on
  // where the chain is cut: compressed drills replace spans only by servers with the same span.
  const Compression compression = rng.bernoulli(0.25) ? Compression::float16 : Compression::none;
  std::vector<uint32_t> cuts{0, kBlocks};
  const size_t span_count = 2 + rng.below(3);
  while (cuts.size() < span_count + 1) {
    const auto c = 1 + static_cast<uint32_t>(rng.below(kBlocks - 1));
    if (std::find(cuts.begin(), cuts.end(), c) == cuts.end()) cuts.push_back(c);
  }
  std::sort(cuts.begin(), cuts.end());
  const double compute_s = rng.uniform(1e-4, 2e-3);
  for (size_t i = 0; i + 1 < cuts.size(); ++i) {
    Span s;
    s.blocks = BlockSpan{cuts[i], cuts[i + 1]};
    // Speeds steer the min-latency planner: primaries first, then the fragile spares, the safe
    // spare (whole span, never faulted) last.
    s.primary = d.swarm.add_server(server_config(s.blocks, 1000), compute_s);
    d.swarm.add_server(server_config(s.blocks, 10), compute_s);
    if (s.blocks.size() >= 2 && rng.bernoulli(0.5) && compression == Compression::none) {
      const uint32_t cut = s.blocks.begin + 1 + static_cast<uint32_t>(rng.below(s.blocks.size() - 1));
      s.fragile.push_back(d.swarm.add_server(server_config({s.blocks.begin, cut}, 100), compute_s));
      s.fragile.push_back(d.swarm.add_server(server_config({cut, s.blocks.end}, 100), compute_s));
    } else {
      s.fragile.push_back(d.swarm.add_server(server_config(s.blocks, 100), compute_s));
    }
    d.spans.push_back(s);
  }
  d.swarm.set_routing(Routing::min_latency);
  d.swarm.set_default_link(Link{rng.uniform(0.001, 0.05), rng.uniform(1e6, 1e9)});
  d.swarm.notify_peers_on_crash = rng.bernoulli(0.5);

  auto& s = d.spec;
  s.session.session_id = draw_session_id(rng);
  s.session.model_id = kModel;
  s.session.num_blocks = kBlocks;
  s.session.hidden_size = kHidden;
  s.prompt_tokens = 1 + static_cast<uint32_t>(rng.below(8));
  s.new_tokens = 4 + static_cast<uint32_t>(rng.below(13));
  s.session.max_length = s.prompt_tokens + s.new_tokens + 1;
  s.session.batch = 1 + static_cast<uint32_t>(rng.below(2));
  s.session.compression = compression;
  s.session.max_step_tokens = rng.bernoulli(0.3) ? 2 + static_cast<uint32_t>(rng.below(4)) : 0;
  s.session.reply_timeout_s = kReplyTimeout_s;
  s.session.cache_wait_timeout_s = 1;
  s.session.recovery = policy;
  s.prompt_seed = rng.next_u64();
}

void inject_faults(Drill& d, Rng& rng) {
  const uint64_t steps = d.spec.new_tokens + 1;
  using Match = std::function<bool(PeerId, PeerId, const Message&)>;
  auto replies_from = [](PeerId server) -> Match {
    return [server](PeerId from, PeerId, const Message& m) {
      return from == server && std::holds_alternative<StepResult>(m);
    };
  };
  auto steps_to = [](PeerId server) -> Match {
    return [server](PeerId, PeerId to, const Message& m) {
      return to == server && std::holds_alternative<StepRequest>(m);
    };
  };
  d.faults = 1 + rng.below(3);
  for (uint64_t f = 0; f < d.faults; ++f) {
    const Span& span = d.spans[rng.below(d.spans.size())];
    const auto point = rng.bernoulli(0.5) ? CrashPoint::after_reply : CrashPoint::before_reply;
    const uint64_t k = 1 + rng.below(steps);
    switch (rng.below(5)) {
      case 0:  // a primary crashes at its k-th step
        d.swarm.crash_at_step(span.primary, k, point);
        break;
      case 1:  // a reply so slow that the client gives up on it
        d.swarm.delay_if(nth(replies_from(span.primary), k), kReplyTimeout_s * rng.uniform(1.2, 3));
        break;
      case 2:  // a slow reply that is still in time
        d.swarm.delay_if(nth(replies_from(span.primary), k), kReplyTimeout_s * rng.uniform(0.1, 0.6));
        break;
      case 3:  // a lost step or reply
        d.swarm.drop_if(nth(rng.bernoulli(0.5) ? steps_to(span.primary) : replies_from(span.primary), k));
        break;
      default:  // the primary crashes and its replacement fails too, early in its replay or later
        d.swarm.crash_at_step(span.primary, k, point);
        d.swarm.crash_at_step(span.fragile[rng.below(span.fragile.size())], 1 + rng.below(3),
                              rng.bernoulli(0.5) ? CrashPoint::after_reply : CrashPoint::before_reply);
        break;
    }
  }
}

std::vector<std::vector<float>> expected_outputs(uint64_t seed, RecoveryPolicy policy) {
  Rng rng(seed);
  Drill clean(rng.next_u64());
  build(clean, rng, policy);
  if (clean.spec.session.compression == Compression::none) return reference_outputs(clean.spec);
  // Compressed activations round on the wire: the fault-free run over the same swarm is the truth.
  const size_t g = clean.swarm.generate(clean.swarm.add_client(), clean.spec);
  clean.swarm.run();
  return clean.swarm.result(g).outputs;
}

std::string check_sessions(const std::map<std::pair<PeerId, uint64_t>, Observed>& observed,
                           const InferenceSession& session, uint32_t total, RecoveryPolicy policy) {
  for (const Hop& hop : session.chain()) {
    // The hop's current session: the newest one to that server for that span.
    const Observed* current = nullptr;
    for (const auto& [key, o] : observed) {
      if (key.first == hop.peer && o.span == hop.span) current = &o;  // keys ascend by session id
    }
    if (!current) return fmt::format("no session seen for hop {} {}", hop.peer.to_string(), hop.span.to_string());
    uint32_t at = 0;
    for (const auto& [start, tokens] : current->steps) {
      if (policy == RecoveryPolicy::cacheless) {
        // Every step starts over at 0; a step split into several messages continues in order.
        if (start != 0 && start != at) {
          return fmt::format("cacheless sent position {} to {} after {}", start, hop.span.to_string(), at);
        }
        at = start + tokens;
      } else {
        if (start != at) {
          return fmt::format("hop {} on {} got position {} after {}: a position sent twice or skipped",
                             hop.span.to_string(), hop.peer.to_string(), start, at);
        }
        at += tokens;
      }
    }
    if (at != total) return fmt::format("hop {} ended at position {} of {}", hop.span.to_string(), at, total);
  }
  for (const Recovery& r : session.recoveries()) {
    const bool all = policy == RecoveryPolicy::restart || policy == RecoveryPolicy::restart_from_scratch;
    const BlockSpan expected = all ? BlockSpan{0, kBlocks} : r.span;
    bool found = all && r.span == expected;
    for (const auto& [key, o] : observed) found |= key.first == r.failed_peer && o.span == r.span;
    if (!found) return fmt::format("recovery re-planned {}, not the span of the failed hop", r.span.to_string());
    if (!r.replacement.empty() && !chain_covers(r.replacement, r.span)) return "a replacement does not cover its span";
    if (r.positions_replayed > total) return "more positions replayed than the sequence has";
  }
  return "";
}

// "" when the generation ended as the fault-free run did and the sessions saw what they should.
std::string check_outcome(const Drill& d, size_t g, uint64_t seed, RecoveryPolicy policy,
                          const std::map<std::pair<PeerId, uint64_t>, Observed>& observed) {
  const auto& result = d.swarm.result(g);
  if (!result.closed || result.error) {
    return fmt::format("the generation did not finish: {}", result.error ? result.error->to_string() : "still running");
  }
  const auto expected = expected_outputs(seed, policy);
  if (result.outputs.size() != expected.size())
    return fmt::format("{} outputs, not {}", result.outputs.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    if (result.outputs[i] != expected[i]) return fmt::format("step {} differs from the fault-free run", i);
  }
  return check_sessions(observed, d.swarm.session(g), d.spec.prompt_tokens + d.spec.new_tokens, policy);
}

// The drill as it ran, for the failure message.
std::string describe(const Drill& d, const InferenceSession& session,
                     const std::map<std::pair<PeerId, uint64_t>, Observed>& observed) {
  const auto& s = d.spec;
  std::string out = fmt::format(
      "  compression {}, max_step_tokens {}, prompt {}, new tokens {}, batch {}, peers told of crashes: {}\n",
      to_string(s.session.compression), s.session.max_step_tokens, s.prompt_tokens, s.new_tokens, s.session.batch,
      d.swarm.notify_peers_on_crash);
  for (const auto& span : d.spans)
    out += fmt::format("  span {}: primary {}\n", span.blocks.to_string(), span.primary.to_string());
  for (const auto& r : session.recoveries()) {
    out += fmt::format("  recovery of {} at {:.3f} s ({}), {} positions replayed, {}:", r.span.to_string(), r.failed_at,
                       r.cause.to_string(), r.positions_replayed, r.succeeded ? "succeeded" : "did not succeed");
    for (const auto& hop : r.replacement) out += fmt::format(" {} {}", hop.peer.to_string(), hop.span.to_string());
    out += "\n";
  }
  for (const auto& [key, o] : observed) {
    out += fmt::format("  session {} on {} {}, steps (start+tokens):", key.second, key.first.to_string(),
                       o.span.to_string());
    for (const auto& [start, tokens] : o.steps) out += fmt::format(" {}+{}", start, tokens);
    out += "\n";
  }
  return out;
}

}  // namespace

std::string run_fault_drill(uint64_t seed, RecoveryPolicy policy, DrillStats& stats) {
  Rng rng(seed);
  Drill d(rng.next_u64());
  build(d, rng, policy);
  inject_faults(d, rng);
  const PeerId client = d.swarm.add_client();
  std::map<std::pair<PeerId, uint64_t>, Observed> observed;
  d.swarm.drop_if([&](PeerId from, PeerId to, const Message& m, Time) {
    if (from != client) return false;
    if (auto* open = std::get_if<OpenSession>(&m)) observed[{to, open->session_id}].span = open->span;
    if (auto* step = std::get_if<StepRequest>(&m)) {
      observed[{to, step->session_id}].steps.emplace_back(step->start_position, token_count(step->hidden_states));
    }
    return false;  // only watching
  });
  const size_t g = d.swarm.generate(client, d.spec);
  d.swarm.run();

  ++stats.drills;
  stats.faults += d.faults;
  const auto& session = d.swarm.session(g);
  stats.recoveries += session.recoveries().size();
  stats.drills_recovered_twice += session.recoveries().size() >= 2;
  for (const auto& r : session.recoveries()) {
    stats.replacements_failed += !r.succeeded;
    stats.multi_server_replacements += r.replacement.size() > 1;
    stats.positions_replayed += r.positions_replayed;
  }
  std::string problem = check_outcome(d, g, seed, policy, observed);
  return problem.empty() ? problem : problem + "\n" + describe(d, session, observed);
}

void run_fault_drills(uint64_t first_seed, uint64_t count, RecoveryPolicy policy, DrillStats& stats) {
  if (const char* env = std::getenv("BOUQUET_DRILLS"); env && *env) count = std::strtoull(env, nullptr, 0);
  int broken = 0;
  for (uint64_t i = 0; i < count && broken < 10; ++i) {
    const uint64_t seed = first_seed + i;
    const std::string problem = run_fault_drill(seed, policy, stats);
    if (problem.empty()) continue;
    ++broken;
    ADD_FAILURE() << "drill " << seed << " (" << to_string(policy) << "): " << problem
                  << "\n  reproduce: BOUQUET_DRILLS=1 " << reproduce_command(seed);
  }
}

}  // namespace bouquet::test
