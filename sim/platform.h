// The SimGrid platform of a scenario. Each region is a star zone in which every host has its own
// up link and down link (consumer links: the two differ) with the host's one-way latency; regions
// hang off a full root zone and are joined by the scenario's long-haul links between their
// gateways. A firewalled host's traffic also crosses its relay's link, which all hosts behind
// that relay share. Offloading clients get a disk whose read bandwidth is their PCIe link.
//
// Link bandwidths are given in bits per second and converted to SimGrid's bytes per second here.
#pragma once

#include "sim/scenario.h"

#include <simgrid/s4u/Engine.hpp>
#include <simgrid/s4u/Host.hpp>

#include <map>
#include <string>

namespace bouquet::sim {

// Host speed in "flops": executions are charged seconds x this, so that SimGrid's work-amount
// precision (1e-5) stays far below a nanosecond.
inline constexpr double kHostSpeed = 1e9;

// Creates this process's SimGrid engine (quiet: warnings and worse only) with the scenario's
// network model, which SimGrid fixes before the platform is built. Call once per process (see
// isolated_run.h).
simgrid::s4u::Engine& start_engine(const NetworkConfig& network);

// The link parameters a host ends up with (its own, else its region's).
struct ResolvedLink {
  double up_bps = 0;
  double down_bps = 0;
  double latency_s = 0;
};
ResolvedLink resolve_link(const Scenario& scenario, const HostLinkConfig& link);

struct Platform {
  std::map<std::string, simgrid::s4u::Host*> hosts;  // by instance name
  std::map<std::string, ResolvedLink> links;         // by instance name
  // A host with no links, for the simulation's own bookkeeping actors (churn): it never goes off
  // and never communicates.
  simgrid::s4u::Host* controller = nullptr;
};

Platform build_platform(const Scenario& scenario);

}  // namespace bouquet::sim
