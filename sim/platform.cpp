#include "sim/platform.h"

#include "core/check.h"

#include <simgrid/s4u/Disk.hpp>
#include <simgrid/s4u/Link.hpp>
#include <simgrid/s4u/NetZone.hpp>

#include <fmt/core.h>

namespace bouquet::sim {
namespace sg4 = simgrid::s4u;

namespace {

// What a host's local traffic (a client and server on one host, never in our scenarios) costs:
// nothing measurable, but SimGrid needs a route.
constexpr double kLoopbackBytesPerS = 1e15;

struct Region {
  sg4::NetZone* zone = nullptr;
  simgrid::kernel::routing::NetPoint* gateway = nullptr;
  std::map<std::string, const sg4::Link*> relays;
};

const sg4::Link* make_link(sg4::NetZone* zone, const std::string& name, double bps, double latency_s) {
  return zone->create_link(name, bps / 8.0)->set_latency(latency_s)->seal();
}

void add_host(const Scenario& scenario, Region& region, const std::string& name, const HostLinkConfig& link,
              double pcie_bps, Platform& platform) {
  ResolvedLink resolved = resolve_link(scenario, link);
  sg4::Host* host = region.zone->create_host(name, kHostSpeed);
  if (pcie_bps > 0) {
    // Host RAM to GPU over PCIe: every weight read of an offloading client shares this bandwidth.
    host->create_disk(name + "-pcie", pcie_bps / 8.0, pcie_bps / 8.0)->seal();
  }
  host->seal();
  const sg4::Link* up = make_link(region.zone, name + "-up", resolved.up_bps, resolved.latency_s);
  const sg4::Link* down = make_link(region.zone, name + "-down", resolved.down_bps, resolved.latency_s);
  const sg4::Link* loopback = make_link(region.zone, name + "-loopback", kLoopbackBytesPerS * 8, 0);
  std::vector<sg4::LinkInRoute> up_route{sg4::LinkInRoute(up)};
  std::vector<sg4::LinkInRoute> down_route;
  if (!link.relay.empty()) {
    const sg4::Link* relay = region.relays.at(link.relay);
    up_route.emplace_back(relay);
    down_route.emplace_back(relay);
  }
  down_route.emplace_back(down);
  auto* point = host->get_netpoint();
  region.zone->add_route(point, nullptr, nullptr, nullptr, up_route, false);
  region.zone->add_route(nullptr, point, nullptr, nullptr, down_route, false);
  region.zone->add_route(point, point, nullptr, nullptr, {sg4::LinkInRoute(loopback)}, false);
  platform.hosts[name] = host;
  platform.links[name] = resolved;
}

}  // namespace

ResolvedLink resolve_link(const Scenario& scenario, const HostLinkConfig& link) {
  for (const auto& region : scenario.regions) {
    if (region.name != link.region) continue;
    return {link.up_bps.value_or(region.up_bps), link.down_bps.value_or(region.down_bps),
            link.latency_s.value_or(region.latency_s)};
  }
  BOUQUET_CHECK(false, "host regions are checked by the scenario loader");
}

sg4::Engine& start_engine(const NetworkConfig& network) {
  static std::string program = "bouquet-sim";
  static std::string quiet = "--log=root.thres:warning";
  static char* argv[] = {program.data(), quiet.data(), nullptr};
  static int argc = 2;
  static sg4::Engine engine(&argc, argv);
  engine.set_config("network/model:" + network.model);
  engine.set_config("network/crosstraffic", network.crosstraffic);
  engine.set_config("network/TCP-gamma", network.tcp_window_bytes);
  return engine;
}

Platform build_platform(const Scenario& scenario) {
  Platform platform;
  sg4::NetZone* root = sg4::create_full_zone("world");
  std::map<std::string, Region> regions;
  for (const auto& config : scenario.regions) {
    Region region;
    region.zone = sg4::create_star_zone("region-" + config.name);
    region.zone->set_parent(root);
    region.gateway = region.zone->create_router(config.name + "-gateway");
    region.zone->add_route(region.gateway, nullptr, nullptr, nullptr, {}, true);
    for (const auto& relay : scenario.relays) {
      if (relay.region != config.name) continue;
      region.relays[relay.name] = make_link(region.zone, "relay-" + relay.name, relay.bandwidth_bps, relay.latency_s);
    }
    regions[config.name] = region;
  }
  for (const auto& server : scenario.servers) {
    for (const auto& name : instance_names(server.name, server.count)) {
      add_host(scenario, regions.at(server.link.region), name, server.link, 0, platform);
    }
  }
  for (const auto& client : scenario.clients) {
    for (const auto& name : instance_names(client.name, client.count)) {
      add_host(scenario, regions.at(client.link.region), name, client.link,
               client.offload ? client.offload->pcie_bps : 0, platform);
    }
  }
  for (auto& [name, region] : regions) region.zone->seal();
  for (const auto& haul : scenario.long_haul) {
    const Region& a = regions.at(haul.from);
    const Region& b = regions.at(haul.to);
    const sg4::Link* link =
        make_link(root, fmt::format("long-haul-{}-{}", haul.from, haul.to), haul.bandwidth_bps, haul.latency_s);
    root->add_route(a.zone->get_netpoint(), b.zone->get_netpoint(), a.gateway, b.gateway, {sg4::LinkInRoute(link)},
                    true);
  }
  platform.controller = root->create_host("sim-controller", kHostSpeed)->seal();
  root->seal();
  return platform;
}

}  // namespace bouquet::sim
