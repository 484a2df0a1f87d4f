#include "tests/core/support/churn_drill.h"

#include <gtest/gtest.h>

#include <fmt/core.h>
#include <algorithm>
#include <cstdlib>
#include <memory>

#include "tests/core/support/seed.h"
#include "tests/core/support/swarm.h"

namespace bouquet::test {
namespace {

using namespace core;

constexpr uint32_t kBlocks = 12;
constexpr uint32_t kHidden = 8;
const std::string kModel = "churn-12/c0ffee00";
constexpr double kFaultPhase_s = 60;
constexpr double kSettle_s = 40;  // after the last fault, before the liveness requests start
constexpr double kEnd_s = 400;    // every request has ended by then
constexpr double kIdleTimeout_s = 20;

struct Server {
  PeerId id;
  uint32_t blocks = 0;
  bool faulty = false;  // crashes or stops during the fault phase
};

struct Request {
  size_t index = 0;
  bool pass = false;
  bool liveness = false;  // started after the faults; must succeed
  GenerationSpec generation;
  PassSpec pass_spec;
};

struct Drill {
  VirtualSwarm swarm;
  std::vector<Server> servers;
  std::vector<Request> requests;
  std::vector<std::string> log;  // the faults injected, for the report
  uint64_t crashes = 0, stops = 0, joins = 0;
  explicit Drill(uint64_t seed) : swarm(seed) {}
};

BlockServerConfig server_template(double rps) {
  BlockServerConfig c;
  c.model_id = kModel;
  c.hidden_size = kHidden;
  c.cache_tokens = 1 << 16;
  c.throughput_rps = rps;
  c.inference_rps = rps;
  c.forward_rps = rps;
  c.session_idle_timeout_s = kIdleTimeout_s;
  return c;
}

PeerId add_server(Drill& d, Rng& rng, uint32_t blocks, Time join_at) {
  const double rps = rng.uniform(5, 20);
  BalancerNodeConfig b;
  b.model_id = kModel;
  b.model_blocks = kBlocks;
  b.num_blocks = blocks;
  b.throughput_rps = rps;
  b.inference_rps = rps;
  b.join_delay_s = 1;
  b.update_period_s = 2;
  b.balance_period_s = rng.uniform(3, 8);
  b.seed = rng.next_u64();
  const PeerId id =
      d.swarm.add_balanced_server(b, server_template(rps), join_at, rng.uniform(1e-4, 1e-3), rng.uniform(0.02, 0.2));
  d.servers.push_back(Server{id, blocks, false});
  return id;
}

GenerationSpec generation_spec(Rng& rng, uint64_t session_id, Time start_at) {
  GenerationSpec g;
  g.session.session_id = session_id;
  g.session.model_id = kModel;
  g.session.num_blocks = kBlocks;
  g.session.hidden_size = kHidden;
  g.prompt_tokens = 1 + static_cast<uint32_t>(rng.below(8));
  g.new_tokens = 10 + static_cast<uint32_t>(rng.below(150));
  g.session.max_length = g.prompt_tokens + g.new_tokens + 1;
  g.session.reply_timeout_s = 2;
  g.session.recovery = RecoveryPolicy::replay;
  g.session.recovery_deadline_s = 30;
  g.session.route_retry_s = 1;
  g.prompt_seed = rng.next_u64();
  g.start_at = start_at;
  return g;
}

PassSpec pass_spec(Rng& rng, uint64_t request_id_base, Time start_at) {
  PassSpec p;
  p.pass.model_id = kModel;
  p.pass.num_blocks = kBlocks;
  p.pass.hidden_size = kHidden;
  p.pass.reply_timeout_s = 2;
  p.pass.request_id_base = request_id_base;
  p.batch = 1 + static_cast<uint32_t>(rng.below(3));
  p.tokens = 2 + static_cast<uint32_t>(rng.below(6));
  // Sub-batches of one sequence sometimes, so one pass takes several chains.
  p.pass.max_tokens_per_request = rng.bernoulli(0.5) ? p.tokens : 0;
  p.input_seed = rng.next_u64();
  p.start_at = start_at;
  return p;
}

void add_request(Drill& d, Rng& rng, PeerId client, bool pass, bool liveness, Time at) {
  Request r;
  r.pass = pass;
  r.liveness = liveness;
  const uint64_t id = 1000 * (d.requests.size() + 1);
  if (pass) {
    r.pass_spec = pass_spec(rng, id << 20, at);
    r.index = d.swarm.train(client, r.pass_spec);
  } else {
    r.generation = generation_spec(rng, id, at);
    r.index = d.swarm.generate(client, r.generation);
  }
  d.requests.push_back(r);
}

// The swarm, its faults and the fault phase's requests.
void build(Drill& d, Rng& rng) {
  d.swarm.use_directory(DirectoryModel{rng.uniform(0.02, 0.5), rng.uniform(0.02, 0.3)});
  const size_t initial = 4 + rng.below(3);
  for (size_t i = 0; i < initial; ++i) add_server(d, rng, 3 + static_cast<uint32_t>(rng.below(4)), rng.uniform(0, 5));
  // Newcomers during the faults: the others may move to make room.
  const size_t joiners = rng.below(3);
  for (size_t i = 0; i < joiners; ++i) {
    const Time at = rng.uniform(10, kFaultPhase_s);
    add_server(d, rng, 3 + static_cast<uint32_t>(rng.below(4)), at);
    d.log.push_back(fmt::format("a server of {} blocks joins at {:.1f} s", d.servers.back().blocks, at));
    ++d.joins;
  }
  // Faults hit servers while those left hold every block twice over.
  uint32_t capacity = 0;
  for (const Server& s : d.servers) capacity += s.blocks;
  std::vector<size_t> order(d.servers.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
  const size_t faults = 1 + rng.below(3);
  size_t injected = 0;
  for (size_t i : order) {
    if (injected == faults) break;
    Server& s = d.servers[i];
    if (capacity - s.blocks < 2 * kBlocks) continue;
    capacity -= s.blocks;
    s.faulty = true;
    ++injected;
    const Time at = rng.uniform(10, kFaultPhase_s);
    switch (rng.below(3)) {
      case 0:
        d.swarm.crash_at(s.id, at);
        d.log.push_back(fmt::format("{} crashes at {:.1f} s", s.id.to_string(), at));
        ++d.crashes;
        break;
      case 1:
        d.swarm.stop_at(s.id, at);
        d.log.push_back(fmt::format("{} stops at {:.1f} s", s.id.to_string(), at));
        ++d.stops;
        break;
      default: {
        const uint64_t k = 1 + rng.below(200);
        const CrashPoint point = rng.bernoulli(0.5) ? CrashPoint::before_reply : CrashPoint::after_reply;
        d.swarm.crash_at_step(s.id, k, point);
        d.swarm.crash_at(s.id, kFaultPhase_s);  // if it had not taken k steps by the end of the faults
        ++d.crashes;
        d.log.push_back(fmt::format("{} crashes at its step {} ({})", s.id.to_string(), k,
                                    point == CrashPoint::before_reply ? "before replying" : "after replying"));
      }
    }
  }
  if (rng.bernoulli(0.5)) {
    const double p = rng.uniform(1e-3, 1e-2);
    auto draws = std::make_shared<Rng>(rng.next_u64());
    d.swarm.drop_if(
        [p, draws](PeerId, PeerId, const Message&, Time now) { return now < kFaultPhase_s && draws->bernoulli(p); });
    d.log.push_back(fmt::format("messages lost with probability {:.4f} until {} s", p, kFaultPhase_s));
  }
  d.swarm.notify_peers_on_crash = rng.bernoulli(0.7);
  const PeerId a = d.swarm.add_client();
  const PeerId b = d.swarm.add_client();
  const size_t generations = 2 + rng.below(4);
  const size_t passes = 2 + rng.below(5);
  for (size_t i = 0; i < generations + passes; ++i) {
    add_request(d, rng, rng.bernoulli(0.5) ? a : b, i >= generations, false, rng.uniform(8, kFaultPhase_s));
  }
  // Liveness: the faults are over and the swarm has had time to settle.
  const Time settled = kFaultPhase_s + kSettle_s;
  add_request(d, rng, a, false, true, settled);
  add_request(d, rng, b, false, true, settled + rng.uniform(0, 5));
  add_request(d, rng, b, true, true, settled + rng.uniform(0, 5));
}

std::string check_request(const Drill& d, const Request& r, ChurnStats& stats) {
  const std::string what =
      fmt::format("{} {}{}", r.pass ? "pass" : "generation", r.index, r.liveness ? " (after the faults)" : "");
  if (r.pass) {
    const PassResult& p = d.swarm.pass_result(r.index);
    if (!r.liveness) {
      ++stats.passes;
      stats.passes_failed += p.error.has_value();
    }
    stats.pass_recoveries += d.swarm.pass_session(r.index).recoveries().size();
    if (!p.finished()) return what + " never ended";
    if (p.error) return r.liveness ? what + " failed: " + p.error->to_string() : "";
    const PassResult ref = reference_pass(r.pass_spec);
    if (p.outputs != ref.outputs) return what + ": forward outputs differ from the fault-free run";
    if (p.grad_inputs != ref.grad_inputs) return what + ": input gradients differ from the fault-free run";
    return "";
  }
  const GenerationResult& g = d.swarm.result(r.index);
  if (!r.liveness) {
    ++stats.generations;
    stats.generations_failed += g.error.has_value();
  }
  stats.generation_recoveries += d.swarm.session(r.index).recoveries().size();
  if (!g.finished()) return what + " never ended";
  const auto ref = reference_outputs(r.generation);
  if (g.outputs.size() > ref.size()) return what + ": more steps than asked for";
  for (size_t i = 0; i < g.outputs.size(); ++i) {
    if (g.outputs[i] != ref[i]) return fmt::format("{}: step {} differs from the fault-free run", what, i);
  }
  if (g.error) return r.liveness ? what + " failed: " + g.error->to_string() : "";
  if (g.outputs.size() != ref.size()) return what + " closed early";
  return "";
}

std::string describe(const Drill& d) {
  std::string out = "  faults:";
  for (const std::string& line : d.log) out += "\n    " + line;
  out += "\n  servers (spans served in order):";
  for (const Server& s : d.servers) {
    out += fmt::format("\n    {} ({} blocks{}):", s.id.to_string(), s.blocks, s.faulty ? ", faulty" : "");
    for (BlockSpan span : d.swarm.spans_served(s.id)) out += " " + span.to_string();
  }
  for (const Request& r : d.requests) {
    if (r.pass) {
      const PassResult& p = d.swarm.pass_result(r.index);
      out += fmt::format("\n  pass {}: {}", r.index, p.error ? p.error->to_string() : p.done ? "done" : "running");
      continue;
    }
    const GenerationResult& g = d.swarm.result(r.index);
    out += fmt::format("\n  generation {}: {} steps, {}", r.index, g.outputs.size(),
                       g.error    ? g.error->to_string()
                       : g.closed ? "closed"
                                  : "running");
  }
  return out;
}

}  // namespace

std::string run_churn_drill(uint64_t seed, ChurnStats& stats) {
  Rng rng(seed);
  Drill d(rng.next_u64());
  build(d, rng);

  d.swarm.run_until(kFaultPhase_s + kSettle_s);
  std::string problem;
  std::vector<int> covered(kBlocks, 0);
  for (const ServerRecord& r : d.swarm.directory_records(kModel)) {
    if (r.state != ServerState::online) continue;
    for (uint32_t b = r.span.begin; b < r.span.end; ++b) ++covered[b];
  }
  if (auto hole = std::find(covered.begin(), covered.end(), 0); hole != covered.end()) {
    problem = fmt::format("block {} has no online server {} s after the last fault", hole - covered.begin(), kSettle_s);
  }
  d.swarm.run_until(kEnd_s);

  ++stats.drills;
  for (const Server& s : d.servers) {
    if (s.faulty) continue;
    stats.moves += d.swarm.balancer(s.id).moves();
  }
  stats.crashes += d.crashes;
  stats.stops += d.stops;
  stats.joins += d.joins;
  for (const Request& r : d.requests) {
    if (std::string p = check_request(d, r, stats); problem.empty() && !p.empty()) problem = p;
  }
  // Every session has ended: the survivors hold no cache any more.
  for (const Server& s : d.servers) {
    if (!d.swarm.alive(s.id) || d.swarm.spans_served(s.id).empty() || !problem.empty()) continue;
    const BlockServer& server = d.swarm.server(s.id);
    if (server.open_sessions() != 0 || server.cache_tokens_free() != server.config().cache_tokens) {
      problem = fmt::format("{} still holds {} sessions ({} cache tokens) at the end", s.id.to_string(),
                            server.open_sessions(), server.config().cache_tokens - server.cache_tokens_free());
    }
  }
  return problem.empty() ? problem : problem + "\n" + describe(d);
}

void run_churn_drills(uint64_t first_seed, uint64_t count, ChurnStats& stats) {
  if (const char* env = std::getenv("BOUQUET_DRILLS"); env && *env) count = std::strtoull(env, nullptr, 0);
  int broken = 0;
  for (uint64_t i = 0; i < count && broken < 10; ++i) {
    const uint64_t seed = first_seed + i;
    const std::string problem = run_churn_drill(seed, stats);
    if (problem.empty()) continue;
    ++broken;
    ADD_FAILURE() << "churn drill " << seed << ": " << problem << "\n  reproduce: BOUQUET_DRILLS=1 "
                  << reproduce_command(seed);
  }
}

}  // namespace bouquet::test
