// Everything that can happen to a core component: the one vocabulary a driver feeds through
// handle(now, input, effects). Each component reacts to the inputs it understands and ignores the
// rest, so a driver can hand every event of a node to each of its components.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/activation.h"
#include "core/compute.h"
#include "core/error.h"
#include "core/messages.h"
#include "core/peer_id.h"
#include "core/route.h"
#include "core/server_record.h"

namespace bouquet::core {

using TimerId = uint64_t;

// A message decoded from `from`. (Undecodable bytes never reach the core: the driver answers
// them with an ErrorReply built from the DecodeError, see wire.h.)
struct MessageReceived {
  PeerId from;
  Message message;
};

// The transport lost `peer`: a connection reset, a send that failed, a SimGrid host turned off.
// Servers treat it as "client gone"; clients as a failure of every hop on that peer.
struct PeerUnreachable {
  PeerId peer;
  std::string reason;
};

// The server at `peer` failed the identity challenge (identity_proof.h): it answered without a
// proof, with a key no record for its address names, or with a signature that does not verify.
// It stands in for the reply that carried (or lacked) the proof, which the driver drops. Sessions
// treat the server as failed and avoid it for their rest; `reason` names it and says what failed.
struct IdentityRefused {
  PeerId peer;
  std::string reason;
};

// A timer set with SetTimer reached its time (and was not cancelled).
struct TimerFired {
  TimerId timer = 0;
};

// The compute started by StartCompute(task_id) finished, or failed.
struct ComputeFinished {
  TaskId task_id = 0;
  Result<ComputeOutput> result = Error{ErrorCode::compute_failed, "no result"};
};

// Answer to a PlanRoute effect with the same route_id.
struct RoutePlanned {
  uint64_t route_id = 0;
  Result<Chain> chain = Error{ErrorCode::no_route, "no answer"};
};

// Answer to a DirectoryLookup effect (the records, possibly empty; expired ones are the
// reader's to ignore).
struct DirectoryAnswer {
  uint64_t lookup_id = 0;
  std::vector<ServerRecord> records;
};

// The driver now serves `span` (answer to MoveToSpan): blocks loaded, BlockServer running.
struct SpanLoaded {
  BlockSpan span;
};

// User requests to a client session (the generation loop outside the core sends these).
struct OpenRequested {};  // plan a route and open the session on every hop
struct StepRequested {
  Activation hidden_states;  // [batch, new tokens, hidden]: the embedded new tokens
  // Absolute position of the first new token; unset = right after the last step. A smaller
  // value rewinds: the servers drop everything from there on.
  std::optional<uint32_t> start_position;
};
struct CloseRequested {};

// From the training loop to its pass client (pass_session.h): run a forward pass over every block
// of the model ([batch, tokens, hidden]; deep prompts [blocks, batch or 1, prefix, hidden]), then,
// optionally, the backward of the same pass with the gradient of the loss wrt its outputs.
struct ForwardRequested {
  Activation hidden_states;
  std::optional<Activation> prompts;
};
struct BackwardRequested {
  Activation grad_outputs;
};

using Input = std::variant<MessageReceived, PeerUnreachable, TimerFired, ComputeFinished, RoutePlanned, DirectoryAnswer,
                           OpenRequested, StepRequested, CloseRequested, SpanLoaded, ForwardRequested,
                           BackwardRequested, IdentityRefused>;

}  // namespace bouquet::core
