#include "sim/bench_sim.h"

#include "core/check.h"
#include "sim/calibration.h"
#include "sim/isolated_run.h"
#include "sim/platform.h"
#include "sim/scenario.h"
#include "sim/simulation.h"

#include <fmt/core.h>
#include <nlohmann/json.hpp>
#include <simgrid/s4u/Actor.hpp>
#include <simgrid/s4u/Engine.hpp>
#include <simgrid/s4u/Host.hpp>
#include <simgrid/s4u/Link.hpp>
#include <simgrid/s4u/Mailbox.hpp>
#include <simgrid/s4u/NetZone.hpp>

#include <sys/resource.h>

#include <chrono>
#include <ctime>
#include <string>
#include <vector>

namespace bouquet::sim {
namespace sg4 = simgrid::s4u;

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Processor time of this process: unlike wall time, it does not grow when the machine is shared.
double cpu_seconds() { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; }

// The process's resident high-water mark so far.
double peak_rss_mb() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // Linux counts in KiB
}

// The simulation alone, timed inside the child process that runs it.
std::string time_scenario(const Scenario& scenario) {
  const double rss_start_mb = peak_rss_mb();
  const auto start = std::chrono::steady_clock::now();
  const double cpu_start = cpu_seconds();
  RunResult result = simulate(scenario);
  const double wall_s = seconds_since(start);
  return nlohmann::json{{"messages", result.messages},
                        {"bytes", result.bytes},
                        {"end_s", result.end_s},
                        {"wall_s", wall_s},
                        {"cpu_s", cpu_seconds() - cpu_start},
                        {"rss_start_mb", rss_start_mb},
                        {"rss_peak_mb", peak_rss_mb()}}
      .dump();
}

// The overrides that multiply every server and client group's count by `scale`.
std::vector<std::string> scale_overrides(const Scenario& scenario, int64_t scale) {
  std::vector<std::string> out;
  if (scale == 1) return out;
  for (size_t i = 0; i < scenario.servers.size(); ++i) {
    out.push_back(fmt::format("servers.{}.count={}", i, scenario.servers[i].count * scale));
  }
  for (size_t i = 0; i < scenario.clients.size(); ++i) {
    out.push_back(fmt::format("clients.{}.count={}", i, scenario.clients[i].count * scale));
  }
  return out;
}

// `pairs` pingers each send `round_trips` messages of `bytes` to their ponger and wait for each
// answer; the payload is a pointer to one static value, so SimGrid is all that allocates.
std::string time_pingpong(int64_t pairs, uint64_t messages, double bytes) {
  start_engine(NetworkConfig{});
  sg4::NetZone* zone = sg4::create_star_zone("pingpong");
  std::vector<sg4::Host*> hosts;
  for (int64_t i = 0; i < 2 * pairs; ++i) {
    const std::string name = fmt::format("h{}", i);
    sg4::Host* host = zone->create_host(name, kHostSpeed)->seal();
    const sg4::Link* up = zone->create_link(name + "-up", 1e9 / 8)->set_latency(0.001)->seal();
    const sg4::Link* down = zone->create_link(name + "-down", 1e9 / 8)->set_latency(0.001)->seal();
    zone->add_route(host->get_netpoint(), nullptr, nullptr, nullptr, {sg4::LinkInRoute(up)}, false);
    zone->add_route(nullptr, host->get_netpoint(), nullptr, nullptr, {sg4::LinkInRoute(down)}, false);
    hosts.push_back(host);
  }
  zone->seal();
  static int payload = 0;
  const auto size = static_cast<uint64_t>(bytes);
  for (int64_t p = 0; p < pairs; ++p) {
    // Spread the messages over the pairs; each round trip is two of them.
    const uint64_t trips = (messages / 2) / static_cast<uint64_t>(pairs) +
                           (static_cast<uint64_t>(p) < (messages / 2) % static_cast<uint64_t>(pairs) ? 1 : 0);
    sg4::Mailbox* ping = sg4::Mailbox::by_name(fmt::format("ping-{}", p));
    sg4::Mailbox* pong = sg4::Mailbox::by_name(fmt::format("pong-{}", p));
    sg4::Actor::create("pinger", hosts[static_cast<size_t>(2 * p)], [ping, pong, trips, size] {
      for (uint64_t i = 0; i < trips; ++i) {
        ping->put(&payload, size);
        pong->get<int>();
      }
    });
    sg4::Actor::create("ponger", hosts[static_cast<size_t>(2 * p + 1)], [ping, pong, trips, size] {
      for (uint64_t i = 0; i < trips; ++i) {
        ping->get<int>();
        pong->put(&payload, size);
      }
    });
  }
  const auto start = std::chrono::steady_clock::now();
  const double cpu_start = cpu_seconds();
  sg4::Engine::get_instance()->run();
  const double wall_s = seconds_since(start);
  return nlohmann::json{{"end_s", sg4::Engine::get_clock()}, {"wall_s", wall_s}, {"cpu_s", cpu_seconds() - cpu_start}}
      .dump();
}

}  // namespace

BenchSimResult bench_sim(const BenchSimConfig& config) {
  BOUQUET_CHECK(config.pairs > 0, "bench-sim needs at least one ping-pong pair");
  BOUQUET_CHECK(config.scale > 0, "bench-sim needs a scale of at least 1");
  std::vector<std::string> overrides = config.set;
  if (config.seed) overrides.push_back(fmt::format("seed={}", *config.seed));
  ScenarioFile file = load_scenario_file(config.scenario, overrides);
  if (config.scale != 1) {
    // Read again with the counts multiplied, so the scaled swarm is checked like any scenario.
    for (auto& o : scale_overrides(file.base, config.scale)) overrides.push_back(std::move(o));
    file = load_scenario_file(config.scenario, overrides);
  }
  calibrate(file);
  BenchSimResult out;
  auto run = nlohmann::json::parse(run_isolated([&] { return time_scenario(file.base); }));
  out.messages = run.at("messages").get<uint64_t>();
  out.bytes = run.at("bytes").get<uint64_t>();
  out.scenario_end_s = run.at("end_s").get<double>();
  out.scenario_wall_s = run.at("wall_s").get<double>();
  out.scenario_cpu_s = run.at("cpu_s").get<double>();
  out.rss_start_mb = run.at("rss_start_mb").get<double>();
  out.rss_peak_mb = run.at("rss_peak_mb").get<double>();
  for (const auto& server : file.base.servers) out.servers += server.count;
  for (const auto& client : file.base.clients) out.clients += client.count;
  const double mean_bytes = out.messages > 0 ? static_cast<double>(out.bytes) / static_cast<double>(out.messages) : 0;
  auto pingpong =
      nlohmann::json::parse(run_isolated([&] { return time_pingpong(config.pairs, out.messages, mean_bytes); }));
  out.pingpong_end_s = pingpong.at("end_s").get<double>();
  out.pingpong_wall_s = pingpong.at("wall_s").get<double>();
  out.pingpong_cpu_s = pingpong.at("cpu_s").get<double>();
  return out;
}

std::string format_bench_sim(const BenchSimConfig& config, const BenchSimResult& r) {
  auto rate = [](uint64_t messages, double s) { return s > 0 ? static_cast<double>(messages) / s : 0.0; };
  std::string out =
      fmt::format("bench-sim: {}{}{}: {} servers, {} clients\n", config.scenario,
                  config.seed ? fmt::format(" --seed {}", *config.seed) : "",
                  config.scale != 1 ? fmt::format(" --scale {}", config.scale) : "", r.servers, r.clients);
  out += fmt::format("{:<10} {:>9} {:>12} {:>8} {:>8} {:>14} {:>14}\n", "", "messages", "simulated s", "wall s",
                     "CPU s", "msgs/wall s", "msgs/CPU s");
  auto line = [&](const std::string& what, double end_s, double wall_s, double cpu_s) {
    return fmt::format("{:<10} {:>9} {:>12.1f} {:>8.2f} {:>8.2f} {:>14.0f} {:>14.0f}\n", what, r.messages, end_s,
                       wall_s, cpu_s, rate(r.messages, wall_s), rate(r.messages, cpu_s));
  };
  out += line("scenario", r.scenario_end_s, r.scenario_wall_s, r.scenario_cpu_s);
  out += line(fmt::format("ping-pong"), r.pingpong_end_s, r.pingpong_wall_s, r.pingpong_cpu_s);
  out += fmt::format(
      "(the scenario's {:.1f} MB in {} messages; the ping-pong sends as many of their mean size "
      "between {} pairs of hosts)\n",
      static_cast<double>(r.bytes) / 1e6, r.messages, config.pairs);
  out += fmt::format(
      "the scenario's process: {:.0f} MB resident at its peak ({:.0f} MB before the run); {:.1f} us of CPU per "
      "message\n",
      r.rss_peak_mb, r.rss_start_mb, r.messages > 0 ? 1e6 * r.scenario_cpu_s / static_cast<double>(r.messages) : 0.0);
  if (r.pingpong_cpu_s > 0 && r.scenario_cpu_s > 0) {
    out += fmt::format("the scenario moves messages at {:.1f}% of bare SimGrid's rate (by CPU time)\n",
                       100 * rate(r.messages, r.scenario_cpu_s) / rate(r.messages, r.pingpong_cpu_s));
  }
  return out;
}

}  // namespace bouquet::sim
