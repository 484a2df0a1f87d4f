// The client side of one generation: a state machine that opens a session on every hop of a
// chain, then runs each step through the hops in order. It never looks at token values: the
// generation loop sends the embedded new tokens (StepRequested), receives the last span's output
// (StepDone), and samples outside the core.
//
// Promises:
// - OpenRequested -> PlanRoute for all blocks; RoutePlanned -> OpenSession to every hop (in
//   parallel); all SessionOpened -> SessionReady{chain}.
// - StepRequested -> the step goes to hop 0, each StepResult is forwarded to the next hop,
//   the last one is reported as StepDone. One step at a time.
// - For every hop it keeps every input it sent, keyed by absolute start position (history());
//   a rewind (start_position below the current length) drops the entries from there on. This is
//   what a replacement server for that hop's span is replayed from.
// - Each hop's server session gets its own id (session_id, session_id + 1, ...). Replies are
//   matched on (peer, that id, step id): late or foreign replies are ignored.
// - A failure of a hop (ErrorReply, PeerUnreachable, no reply within the deadline, a reply whose
//   shape does not fit) goes through one decision point, fail_hop(); today it ends the session
//   with SessionFailed carrying a typed error naming the peer and span, and closes the other
//   hops. Recovery (ban, re-plan that hop's blocks, replay its history) plugs in there.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/effect.h"
#include "core/input.h"
#include "core/route.h"
#include "core/time.h"

namespace bouquet::core {

struct InferenceSessionConfig {
  uint64_t session_id = 0;  // drawn from the client's Rng; hop i's server session is session_id + i
  std::string model_id;
  uint32_t num_blocks = 0;  // the session runs blocks [0, num_blocks)
  uint32_t hidden_size = 0;
  uint32_t max_length = 0;  // positions per sequence, prompt included
  uint32_t batch = 1;
  Compression compression = Compression::none;  // for what it sends and what it asks back
  double cache_wait_timeout_s = 30;  // how long a server may queue the open for cache room
  double reply_timeout_s = 30;       // deadline for each reply (beyond the cache wait for opens)
  std::string adapter;               // "" for none
};

class InferenceSession {
 public:
  enum class Phase { idle, routing, opening, ready, stepping, closed, failed };

  explicit InferenceSession(InferenceSessionConfig config);

  void handle(Time now, const Input& in, std::vector<Effect>& out);

  Phase phase() const { return phase_; }
  const InferenceSessionConfig& config() const { return config_; }
  const Chain& chain() const { return chain_; }
  // Positions every hop has cached once the current step (if any) completes.
  uint32_t length() const { return length_; }
  // Inputs sent to hop `hop`, keyed by absolute start position.
  const std::map<uint32_t, Activation>& history(size_t hop) const;

 private:
  struct HopState {
    // Each hop's server session has its own id (config session_id + a serial), so a server that
    // appears twice in a chain, or again as a replacement, never confuses two sessions.
    uint64_t session_id = 0;
    bool open_sent = false;
    bool opened = false;
    std::map<uint32_t, Activation> history;
  };
  struct CurrentStep {
    uint64_t step_id = 0;
    uint32_t start_position = 0;
    uint32_t new_tokens = 0;
    size_t hop = 0;  // the hop whose reply is awaited
  };

  void on_open_requested(Time now, std::vector<Effect>& out);
  void on_route(Time now, const RoutePlanned& route, std::vector<Effect>& out);
  void on_step_requested(Time now, const StepRequested& step, std::vector<Effect>& out);
  void on_message(Time now, PeerId from, const Message& message, std::vector<Effect>& out);
  void on_session_opened(Time now, size_t hop, std::vector<Effect>& out);
  void on_step_result(Time now, size_t hop, const StepResult& result, std::vector<Effect>& out);
  void on_close_requested(std::vector<Effect>& out);
  void send_step(Time now, size_t hop, const Activation& inputs, std::vector<Effect>& out);
  void arm_deadline(Time at, std::vector<Effect>& out);
  // The one place a hop's failure is decided (see the header comment).
  void fail_hop(size_t hop, Error error, std::vector<Effect>& out);
  void fail(Error error, std::vector<Effect>& out);
  void close_hops(std::vector<Effect>& out);
  std::optional<size_t> hop_of(PeerId peer) const;
  std::optional<size_t> hop_of(PeerId peer, uint64_t session_id) const;

  InferenceSessionConfig config_;
  Phase phase_ = Phase::idle;
  Chain chain_;
  std::vector<HopState> hops_;
  uint32_t length_ = 0;
  uint64_t next_step_id_ = 1;
  uint64_t route_id_ = 0;
  uint64_t hop_sessions_opened_ = 0;
  std::optional<CurrentStep> step_;
  TimerId deadline_timer_ = 1;  // the session's single timer: the current deadline
  bool deadline_armed_ = false;
};

std::string_view to_string(InferenceSession::Phase phase);

}  // namespace bouquet::core
