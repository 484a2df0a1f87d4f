// Everything a core component may ask its driver to do, appended to the `effects` vector of
// handle(now, input, effects). Drivers carry effects out in order. Results come back as Inputs
// (input.h): a reply as MessageReceived, a timer as TimerFired, a computation as ComputeFinished,
// a route as RoutePlanned, a lookup as DirectoryAnswer.
#pragma once

#include <cstdint>
#include <optional>
#include <variant>
#include <vector>

#include "core/activation.h"
#include "core/compute.h"
#include "core/error.h"
#include "core/input.h"
#include "core/messages.h"
#include "core/route.h"
#include "core/server_record.h"
#include "core/time.h"

namespace bouquet::core {

// Send `message` to `to`. Delivery is not guaranteed; a loss the transport notices comes back
// as PeerUnreachable, a silent one as the sender's own timeout.
struct SendMessage {
  PeerId to;
  Message message;
};

// Fire TimerFired{timer} at time `at` (absolute, the driver's clock). Setting an id again moves it.
struct SetTimer {
  TimerId timer = 0;
  Time at = kNever;
};
struct CancelTimer {
  TimerId timer = 0;
};

// Run blocks (compute.h). At most the server's compute_slots run at once.
struct StartCompute {
  ComputeRequest request;
};
// Run several inference steps of different sessions in one pass over the weights (task_queue.h
// says which merge), using one compute slot. The driver answers each request with its own
// ComputeFinished, so one session's bad step fails that session only.
struct StartBatch {
  std::vector<ComputeRequest> requests;  // two or more, in arrival order
};
// The session owning this cache is gone; free its memory. No compute on it is running.
struct DropCache {
  CacheId cache_id = 0;
};

// Plan a chain covering `blocks` for `model_id`, avoiding `avoid` (banned peers);
// answer with RoutePlanned. Any planner will do (route.h, min_latency_route.h).
struct PlanRoute {
  uint64_t route_id = 0;
  std::string model_id;
  BlockSpan blocks;
  std::vector<PeerId> avoid;
  // Cache tokens per block the session will reserve on each hop (batch x max_length): a server
  // announcing less free cache would make the open wait, which min-latency routing prices in.
  uint64_t cache_tokens_needed = 0;
  // The LoRA adapter the session applies ("" = none): only servers announcing it are usable.
  std::string adapter = {};
  // The planner this plan needs (planners.h; passes: throughput), or none: the driver's
  // configured routing.
  std::optional<Routing> routing = std::nullopt;
  // A spot check's second or third opinion (spot_check.h): the servers already known will do.
  bool spot_check = false;
  // A re-plan (a recovery, or a later pass of a fine-tuning run) should see who is in the swarm
  // now: the driver starts a fresh read of its directory, if it has one, but plans at once on the
  // records it knows (the failed server is avoided anyway) and waits for that read only when those
  // give no chain (planners.h: waits_for_directory). A directory read can take seconds (a DHT
  // lookup that meets a dead node waits for it to time out) where a recovery takes milliseconds.
  bool read_directory = false;
};

// Directory seam: publish a record; look up servers of a model (balancer_node.h uses both).
struct Announce {
  ServerRecord record;
};
struct DirectoryLookup {
  uint64_t lookup_id = 0;
  std::string model_id;
  BlockSpan blocks;
};

// Load balancing (balancer_node.h): serve `span` from now on. The driver stops serving the old
// span (its sessions end; clients recover elsewhere), loads the new blocks (it may keep those
// both spans share), starts serving `span` and feeds SpanLoaded{span}.
struct MoveToSpan {
  BlockSpan span;
};

// Reports of a client inference session to the generation loop.
struct SessionReady {
  uint64_t session_id = 0;
  Chain chain;  // the hops it opened, in block order
};
struct StepDone {
  uint64_t session_id = 0;
  uint64_t step_id = 0;
  uint32_t start_position = 0;
  Activation outputs;  // the last span's output for the new positions
};
struct SessionFailed {
  uint64_t session_id = 0;
  Error error;
};
struct SessionClosed {
  uint64_t session_id = 0;
};
// Under restart_from_scratch (recovery.h): a hop failed, every output so far is lost, and the
// session is re-opening on a fresh chain. The loop discards what it generated and, on the next
// SessionReady, starts again from its first step (position 0).
struct SessionRestarted {
  uint64_t session_id = 0;
  uint32_t positions_lost = 0;  // positions the servers had processed before the failure
};

// Reports of a pass client (pass_session.h) to the training loop.
struct ForwardDone {
  Activation outputs;  // [batch, tokens, hidden]: the last block's outputs
};
struct BackwardDone {
  Activation grad_inputs;                  // wrt the first block's inputs
  std::optional<Activation> grad_prompts;  // wrt every block's deep prompts, when the pass had them
};
struct PassFailed {
  Error error;
};

using Effect = std::variant<SendMessage, SetTimer, CancelTimer, StartCompute, StartBatch, DropCache, PlanRoute,
                            Announce, DirectoryLookup, SessionReady, StepDone, SessionFailed, SessionClosed,
                            SessionRestarted, MoveToSpan, ForwardDone, BackwardDone, PassFailed>;

using Effects = std::vector<Effect>;

}  // namespace bouquet::core
