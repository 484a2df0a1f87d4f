// What a server announces about itself in the directory (DHT for real, modelled in SimGrid) and
// what routing and load balancing read: min-latency routing prices inference_rps and
// cache_tokens_free, throughput routing and block selection add up throughput_rps; readers ignore
// records expired at their `now`.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/block_span.h"
#include "core/peer_id.h"
#include "core/time.h"

namespace bouquet::core {

enum class ServerState : uint8_t { joining = 0, online = 1, offline = 2 };

// How busy a server is: announced so that clients route around busy servers (min-latency
// routing adds queue_delay_s() to a hop on it). Zero: idle, or an announcement without load.
struct ServerLoad {
  uint32_t active_sessions = 0;  // sessions that took a step recently
  double step_s = 0;             // recent duration of one inference computation of its span (0 = unknown)
  uint32_t max_batch = 1;        // rows it merges into one computation (continuous batching)
  // Rows of inference steps (batch x new tokens) queued or running when a step arrives, a
  // moving average over recent arrivals: what a newcomer finds ahead of it.
  double rows_ahead = 0;
};
// What a new session's step should expect to wait on a server of `load` before its own turn:
// computations of step_s for the rows found ahead of it beyond what the next computation (of
// max_batch rows) takes along with it.
double queue_delay_s(const ServerLoad& load);
std::string_view to_string(ServerState state);

struct ServerRecord {
  PeerId peer;
  std::string address;  // opaque to the core: the driver's way to reach the peer
  BlockSpan span;
  ServerState state = ServerState::online;
  double throughput_rps = 0;  // tokens/s per block it can sustain (min of compute and network)
  double inference_rps = 0;   // one-token cached steps per second per block
  uint64_t cache_tokens_free = 0;
  std::string model_id;
  std::string version;
  std::vector<std::string> adapters;
  Time expires_at = kNever;
  ServerLoad load;
};

// When a record was announced. A server holds one span at a time, so of several records of one
// peer the latest announcement is the truth and the others are stale (a span it has left): the
// one rule for the real DHT directory and the simulated one.
struct Announcement {
  double at_s = 0;   // the announcer's clock (wall clock for real, simulated time in sim)
  uint64_t seq = 0;  // orders announcements of one process within one tick of that clock
};
// True when `a` was announced after `b`: later time, then larger sequence number.
bool announced_later(const Announcement& a, const Announcement& b);

struct AnnouncedRecord {
  ServerRecord record;
  Announcement announced;
};
// The newest record of each peer (announced_later), in peer id order.
std::vector<ServerRecord> newest_per_peer(std::span<const AnnouncedRecord> records);

}  // namespace bouquet::core
