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

  for (const auto& server : scenario.servers) {
    for (const auto& name : instance_names(server.name, server.count)) {
      context.transport.add_node(name);
      auto* node = new ServerNode(context, server, name);
      nodes.emplace_back(node);
      const double join_s = server.join_s;
      sg4::ActorPtr actor = sg4::Actor::create(name, platform.hosts.at(name), [node, join_s] {
        sg4::this_actor::sleep_until(join_s);
        node->run();
      });
      actor->daemonize();
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
  for (const auto& client : scenario.clients) {
    for (const auto& name : instance_names(client.name, client.count)) {
      context.transport.add_node(name);
      const size_t index = context.result.clients.size();
      ClientResult& result = context.result.clients.emplace_back();
      result.name = name;
      result.kind = (client.offload ? "offload-" : "") + client.work.kind;
      NodeLoop* node = client.offload
                           ? static_cast<NodeLoop*>(new OffloadNode(context, client, name, index))
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
  engine.run_until(scenario.duration_s);
  for (auto& node : nodes) node->close_books();
  // run_until() leaves the clock at the limit; the run really ended with its last event.
  context.result.end_s = 0;
  for (const auto& client : context.result.clients) {
    context.result.end_s = std::max(context.result.end_s, client.finished ? client.ended_s : scenario.duration_s);
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
