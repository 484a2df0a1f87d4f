// Which planner answers a session's PlanRoute, by the name users write: `policies.routing` in a
// scenario and `--routing` on `bouquet generate`. Every driver (the simulator, real clients, the
// virtual test swarm) looks the planner up here, so a name means the same chain in both worlds.
//
//   min_latency  the chain that makes one step fastest (min_latency_route.h): round trips the
//                client measured, announced or measured block speeds, free cache.
//   greedy       from the first uncovered block, the server whose span reaches furthest
//                (route.h): a baseline that ignores speed and distance.
//   throughput   each hop drawn in proportion to announced throughput (throughput_route.h):
//                what forward/backward passes use, so many clients spread over the swarm.
//
// A PlanRoute that names its planner (passes: throughput) gets that one; one that does not gets
// the driver's configured routing (generation: `policies.routing`, `--routing`).
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "core/effect.h"
#include "core/rng.h"
#include "core/route.h"
#include "core/rtt_estimator.h"
#include "core/server_record.h"
#include "core/server_speeds.h"
#include "core/time.h"

namespace bouquet::core {

// What the client knows besides the records.
struct PlannerContext {
  Time now = 0;
  const RttEstimator* rtt = nullptr;       // round trips the client measured; null: none yet
  const ServerSpeeds* measured = nullptr;  // step times the client measured; null: believe claims
  Rng* rng = nullptr;                      // throughput's draws (required for it)
  bool load_aware = true;                  // min_latency adds servers' announced queueing delay
};

std::string_view to_string(Routing routing);
std::optional<Routing> parse_routing(std::string_view name);
// "min_latency, greedy, throughput": for error messages that list the choices.
std::string routing_names();

Result<Chain> plan_route(Routing routing, std::span<const ServerRecord> records, const PlanRoute& plan,
                         const PlannerContext& context);
// What a generation routes by unless the user names a planner: min_latency over a swarm found
// through the directory, greedy over servers given by hand (it keeps to the order people list
// them in, which tests and small setups rely on).
inline Routing default_routing(bool found_through_directory) {
  return found_through_directory ? Routing::min_latency : Routing::greedy;
}

// The planner `plan` asks for, or `configured` when it names none.
inline Routing routing_for(const PlanRoute& plan, Routing configured) { return plan.routing.value_or(configured); }

// A plan that reads the directory (PlanRoute::read_directory) is made at once on the records the
// driver knows; the driver then waits for its fresh read, and plans again on it, only when that
// first plan found no chain. (Plans that do not read the directory never wait.)
inline bool waits_for_directory(const PlanRoute& plan, const Result<Chain>& planned_on_known) {
  return plan.read_directory && !planned_on_known.ok();
}

}  // namespace bouquet::core
