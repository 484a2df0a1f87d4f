#include "sim/simulation.h"

#include "sim/client_node.h"
#include "sim/isolated_run.h"
#include "sim/offload_node.h"
#include "sim/platform.h"
#include "sim/server_node.h"

#include <simgrid/s4u/Actor.hpp>
#include <simgrid/s4u/Engine.hpp>
#include <simgrid/s4u/Host.hpp>

#include <algorithm>
#include <map>
#include <memory>

namespace bouquet::sim {
namespace sg4 = simgrid::s4u;

namespace {

core::DType parse_dtype(const std::string& name) {
  if (name == "float32") return core::DType::float32;
  if (name == "bfloat16") return core::DType::bfloat16;
  return core::DType::float16;
}

core::Compression parse_compression(const std::string& name) {
  if (name == "float16") return core::Compression::float16;
  if (name == "int8_blockwise") return core::Compression::int8_blockwise;
  return core::Compression::none;
}

// One server instance going off or coming back (ChurnConfig).
struct ChurnEvent {
  double at_s = 0;
  const ServerConfig* server = nullptr;
  std::string name;
  bool up = false;
};

// Every server's leave and return times, drawn before the run from the scenario's seed (one
// stream per server, so adding a server does not move the others' churn).
std::vector<ChurnEvent> churn_events(const Scenario& scenario, const core::Rng& rng) {
  std::vector<ChurnEvent> events;
  const ChurnConfig& churn = scenario.churn;
  if (churn.mean_lifetime_s == kForever) return events;
  for (const auto& server : scenario.servers) {
    const double end_s = std::min(scenario.duration_s, server.join_s + server.lifetime_s);
    for (const auto& name : instance_names(server.name, server.count)) {
      core::Rng draws = rng.derive(Transport::peer_of(name).value ^ 0xc4a2c4a2ULL);
      double t = server.join_s;
      for (;;) {
        t += draws.exponential(churn.mean_lifetime_s);
        if (t >= end_s) break;
        events.push_back({t, &server, name, false});
        t += draws.exponential(churn.mean_downtime_s);
        if (t >= end_s) break;
        events.push_back({t, &server, name, true});
      }
    }
  }
  std::stable_sort(events.begin(), events.end(), [](const auto& a, const auto& b) { return a.at_s < b.at_s; });
  return events;
}

// Probes, every kCoverageProbe_s from the first client's start, which blocks the servers really
// serve (their hosts on, their spans loaded; not what the directory says) and adds up the time
// some block had none (RunResult::uncovered_s); the first probe also gives the weakest block's
// throughput as the clients find the swarm (RunResult::swarm_rps). Created last, so no other
// actor's order changes.
constexpr double kCoverageProbe_s = 1.0;

void watch_coverage(const Scenario& scenario, const Platform& platform,
                    const std::map<std::string, ServerNode*>& servers, RunResult& result) {
  if (servers.empty() || scenario.clients.empty()) return;
  double from_s = scenario.duration_s;
  for (const auto& client : scenario.clients) from_s = std::min(from_s, client.start_s);
  result.uncovered_s = 0;
  result.coverage_watched_s = 0;
  const auto blocks = static_cast<size_t>(scenario.shape().num_blocks);
  sg4::Actor::create("coverage", platform.controller, [&scenario, &platform, &servers, &result, from_s, blocks] {
    std::vector<int> holders(blocks);
    std::vector<double> rps(blocks);
    // Each host once, in the map's order, with where the map keeps its current process (a
    // restart replaces it there): no look-up by name per server and probe.
    std::vector<std::pair<const sg4::Host*, ServerNode* const*>> hosts;
    for (const auto& [name, node] : servers) hosts.emplace_back(platform.hosts.at(name), &node);
    for (double t = from_s; t + kCoverageProbe_s <= scenario.duration_s; t += kCoverageProbe_s) {
      sg4::this_actor::sleep_until(t);
      std::fill(holders.begin(), holders.end(), 0);
      std::fill(rps.begin(), rps.end(), 0.0);
      for (const auto& [host, latest] : hosts) {
        if (!host->is_on()) continue;
        const ServerNode* node = *latest;
        if (auto span = node->serving()) {
          for (uint32_t b = span->begin; b < span->end; ++b) {
            ++holders[b];
            rps[b] += node->balancer().config().throughput_rps;
          }
        }
      }
      if (t == from_s) {
        const bool covered = std::find(holders.begin(), holders.end(), 0) == holders.end();
        result.swarm_rps = covered ? *std::min_element(rps.begin(), rps.end()) : 0.0;
      }
      result.coverage_watched_s += kCoverageProbe_s;
      if (std::find(holders.begin(), holders.end(), 0) != holders.end()) result.uncovered_s += kCoverageProbe_s;
    }
  })->daemonize();
}

// placement "best": every unpinned server's span from the core's best placement of them all,
// decided before the run from what each would announce.
void place_best(const Scenario& scenario, SimContext& context) {
  std::vector<std::string> hosts;
  std::vector<core::ServerCapacity> capacities;
  for (const auto& server : scenario.servers) {
    if (server.blocks) continue;
    for (const auto& name : instance_names(server.name, server.count)) {
      hosts.push_back(name);
      capacities.push_back(ServerNode::capacity(context, server, name));
    }
  }
  const auto blocks = static_cast<uint32_t>(scenario.shape().num_blocks);
  // 10 million search nodes take about 20 s: enough to be exact up to ~32 servers of 4 kinds.
  const core::BestPlacement best = core::best_placement(capacities, blocks, 10'000'000);
  for (size_t i = 0; i < hosts.size(); ++i) context.best_spans[hosts[i]] = best.spans[i];
  context.result.swarm_rps_bound = best.upper_bound_rps;
}

}  // namespace

SimContext::SimContext(const Scenario& s)
    : scenario(s),
      shape(s.shape()),
      format(s.weight_format()),
      cost(s.cost),
      activation_dtype(parse_dtype(s.model.activations)),
      compression(parse_compression(s.model.wire_compression)),
      model_id(s.model.name),
      directory(s.directory),
      rng(s.seed) {
  result.seed = s.seed;
}

RunResult simulate(const Scenario& scenario) {
  sg4::Engine& engine = start_engine(scenario.network);
  Platform platform = build_platform(scenario);
  SimContext context(scenario);
  std::vector<std::unique_ptr<NodeLoop>> nodes;
  int clients_running = 0;

  if (scenario.policies.placement == "best") place_best(scenario, context);
  std::map<std::string, ServerNode*> latest_server;  // per host, its current process
  // A server process: a fresh ServerNode (balancer and block server) from `join_s` on.
  auto start_server = [&](const ServerConfig& server, const std::string& name, double join_s) {
    auto* node = new ServerNode(context, server, name);
    nodes.emplace_back(node);
    latest_server[name] = node;
    sg4::Actor::create(name, platform.hosts.at(name), [node, join_s] {
      sg4::this_actor::sleep_until(join_s);
      node->run();
    })->daemonize();
  };
  for (const auto& server : scenario.servers) {
    for (const auto& name : instance_names(server.name, server.count)) {
      context.transport.add_node(name);
      start_server(server, name, server.join_s);
      if (server.lifetime_s != kForever) {
        // Leaving without warning: the host goes off, its actors die, its messages are lost.
        const double leave_s = server.join_s + server.lifetime_s;
        sg4::Actor::create(name + "-lifetime", platform.hosts.at(name), [leave_s] {
          sg4::this_actor::sleep_until(leave_s);
          sg4::this_actor::get_host()->turn_off();
        })->daemonize();
      }
    }
  }
  std::vector<ChurnEvent> churn = churn_events(scenario, context.rng);
  if (!churn.empty()) {
    sg4::Actor::create("churn", platform.controller, [&] {
      for (const ChurnEvent& event : churn) {
        sg4::this_actor::sleep_until(event.at_s);
        sg4::Host* host = platform.hosts.at(event.name);
        if (!event.up) {
          // Without warning: its actors die, its caches and in-flight messages are lost.
          host->turn_off();
        } else {
          host->turn_on();
          start_server(*event.server, event.name, event.at_s);
        }
      }
    })->daemonize();
  }
  for (const auto& client : scenario.clients) {
    for (const auto& name : instance_names(client.name, client.count)) {
      context.transport.add_node(name);
      const size_t index = context.result.clients.size();
      ClientResult& result = context.result.clients.emplace_back();
      result.name = name;
      result.kind = (client.offload ? "offload-" : "") + client.work.kind;
      NodeLoop* node = client.offload ? static_cast<NodeLoop*>(new OffloadNode(context, client, name, index))
                                      : static_cast<NodeLoop*>(new ClientNode(context, client, name, index));
      nodes.emplace_back(node);
      ++clients_running;
      sg4::Actor::create(name, platform.hosts.at(name), [node, &clients_running] {
        node->run();
        // Servers run forever; the simulation ends with the last client's work.
        if (--clients_running == 0) sg4::Actor::kill_all();
      });
    }
  }
  watch_coverage(scenario, platform, latest_server, context.result);
  engine.run_until(scenario.duration_s);
  for (auto& node : nodes) node->close_books();
  // run_until() leaves the clock at the limit; the run really ended with its last event.
  context.result.end_s = 0;
  for (const auto& client : context.result.clients) {
    context.result.end_s = std::max(context.result.end_s, client.finished ? client.ended_s : scenario.duration_s);
  }
  context.result.summarize_step_latencies();
  for (const auto& node : nodes) {
    if (const auto* server = dynamic_cast<const ServerNode*>(node.get())) {
      context.result.moves += server->balancer().moves();
      RunResult::ServerSpans spans{server->host(), {}};
      for (core::BlockSpan s : server->spans_served()) spans.spans.emplace_back(s.begin, s.end);
      context.result.placement.push_back(std::move(spans));
    }
  }
  context.result.messages = context.transport.messages_sent();
  context.result.bytes = context.transport.bytes_sent();
  for (auto& client : context.result.clients) {
    if (client.finished) continue;
    if (client.error.empty()) client.error = "did not finish";
    if (client.ended_s < 0) client.ended_s = sg4::Engine::get_clock();
  }
  return context.result;
}

RunResult simulate_isolated(const Scenario& scenario) {
  return run_result_from_json(run_isolated([&] { return to_json(simulate(scenario)); }));
}

}  // namespace bouquet::sim
