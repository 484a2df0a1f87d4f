// The client side of one generation: a state machine that opens a session on every hop of a
// chain, runs each step through the hops in order, and survives hops that fail (recovery.h). It
// never looks at token values: the generation loop sends the embedded new tokens
// (StepRequested), receives the last span's output (StepDone), and samples outside the core.
//
// Promises:
// - OpenRequested -> PlanRoute for all blocks; RoutePlanned -> OpenSession to every hop (in
//   parallel); all SessionOpened -> SessionReady{chain}. A failed initial route fails at once.
// - StepRequested -> the step goes to hop 0, each StepResult is forwarded to the next hop, the
//   last one is reported as StepDone. One step at a time. A step longer than max_step_tokens
//   goes out in several messages, in position order.
// - For every hop it keeps every input it sent, keyed by absolute start position (history());
//   a rewind (start_position below the current length) drops the entries from there on.
// - Each hop's server session gets its own id (session_id, session_id + 1, ...; replacements
//   continue the count) and each message its own step id. Replies are matched on (peer, that
//   session id, the step id awaited): late replies, foreign ones and those of replaced servers
//   are ignored.
// - Every hop failure (ErrorReply, PeerUnreachable, no reply within the deadline, a reply whose
//   shape or position does not fit) goes through fail_hop(). Under `replay` the server is banned
//   (ban_list.h; not when it closed the session for idling: session_closed, which it may then
//   take again), the hop's span re-planned (PlanRoute for exactly those blocks, avoiding banned
//   servers), the replacement hops opened and fed the hop's history from position 0 (merged into
//   as few messages as max_step_tokens allows), and the step goes on; other hops keep their
//   caches and never see a position twice. A hop that fails between steps is replaced when the
//   next step reaches it. No route: re-plan every route_retry_s or when a ban ends, until
//   recovery_deadline_s after the failure, then SessionFailed{no_route} naming the blocks, the
//   server and why it failed. Each recovery is recorded (recoveries()). `restart`, `cacheless`,
//   `none` and `restart_from_scratch` (SessionRestarted, then SessionReady again) behave as
//   recovery.h says.
// - Each one-token message a hop answers is timed (sent to answered) into config.speeds.
// - Spot checks (spot_check.h): with spot_check_rate > 0, a drawn hop reply is held until another
//   server agrees with it; a liar found is avoided for the rest of the session (liars()) and its
//   hop replaced; every check is recorded (spot_checks()).
// - IdentityRefused (identity_proof.h) fails every hop and check run on that server, as a lost
//   peer does (the failure, code identity_refused with the driver's reason, is the recovery's
//   cause), and no route of this session uses the server again (impostors()).
// - The session arms one timer (id 1) at its earliest deadline.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/ban_list.h"
#include "core/effect.h"
#include "core/input.h"
#include "core/position_log.h"
#include "core/recovery.h"
#include "core/rng.h"
#include "core/route.h"
#include "core/server_speeds.h"
#include "core/spot_check.h"
#include "core/time.h"

namespace bouquet::core {

// A session id drawn from the client's Rng, the one way every driver draws them: the top bit is
// clear (a real client's request ids set it, so an error reply names one or the other) and there
// is room for 2^16 hop serials above it (hop i's server session is session_id + i).
inline uint64_t draw_session_id(Rng& rng) { return rng.next_u64() >> 16; }

struct InferenceSessionConfig {
  uint64_t session_id = 0;  // drawn from the client's Rng; hop i's server session is session_id + i
  std::string model_id;
  uint32_t num_blocks = 0;  // the session runs blocks [0, num_blocks)
  uint32_t hidden_size = 0;
  uint32_t max_length = 0;  // positions per sequence, prompt included
  uint32_t batch = 1;
  Compression compression = Compression::none;  // for what it sends and what it asks back
  double cache_wait_timeout_s = 30;             // how long a server may queue the open for cache room
  double reply_timeout_s = 30;                  // deadline for each reply (beyond the cache wait for opens)
  std::string adapter;                          // "" for none
  RecoveryPolicy recovery = RecoveryPolicy::replay;
  double recovery_deadline_s = 60;  // give up when no replacement is found for this long
  double route_retry_s = 5;         // re-plan this often while no route exists
  BanListConfig bans;               // base 15 s, x2
  // Most positions one message carries (0: as many as WireLimits' element cap allows); a driver
  // with a smaller frame limit sets it (net's max_step_tokens()).
  uint32_t max_step_tokens = 0;
  // Where the session reports how long each one-token step took on each hop (server_speeds.h),
  // for routing to hold announced speeds to account; owned by the driver, outlives the session.
  // Null: nothing is measured.
  ServerSpeeds* speeds = nullptr;
  // Fraction of hop replies re-run on another server and compared (spot_check.h); 0 = off. Draws
  // come from an Rng seeded by session_id.
  double spot_check_rate = 0;
  double spot_check_rtol = kDefaultSpotCheckRtol;  // honest servers' relative difference, before compression
};

class InferenceSession {
 public:
  enum class Phase { idle, routing, opening, ready, stepping, closed, failed };
  static constexpr TimerId kDeadlineTimer = 1;

  explicit InferenceSession(InferenceSessionConfig config);

  void handle(Time now, const Input& in, std::vector<Effect>& out);

  Phase phase() const { return phase_; }
  const InferenceSessionConfig& config() const { return config_; }
  // The current chain, replacements spliced in (a failed hop stays until it is replaced).
  const Chain& chain() const { return chain_; }
  // Positions every hop has cached once the current step (if any) completes.
  uint32_t length() const { return length_; }
  // Inputs sent to hop `hop` of chain(), keyed by absolute start position.
  const std::map<uint32_t, Activation>& history(size_t hop) const;
  const std::vector<Recovery>& recoveries() const { return recoveries_; }
  const BanList& bans() const { return bans_; }
  const std::vector<SpotCheck>& spot_checks() const { return spot_checks_; }
  // Servers a spot check found lying: no route of this session uses them again.
  const std::set<PeerId>& liars() const { return liars_; }
  // Servers that failed the identity challenge: no route of this session uses them again.
  const std::set<PeerId>& impostors() const { return impostors_; }

 private:
  struct HopState {
    uint64_t session_id = 0;
    bool open_sent = false;
    bool opened = false;
    bool closed = false;
    bool dead = false;  // failed: waits for a replacement
    Time open_deadline = kNever;
    uint32_t acked = 0;            // positions its server holds, as far as replies told
    PositionLog history;           // its inputs by absolute position
    std::optional<Error> failure;  // why it died (none when dropped by `restart`)
    Time failed_at = 0;
    std::optional<size_t> recovery;  // the recovery that brought it in
    // The first position whose output went on to the next hop (or the loop) without a passing
    // spot check: where the hops after it must rewind to if this server turns out to lie.
    std::optional<uint32_t> unverified_from;
  };
  struct CurrentStep {
    uint64_t step_id = 0;  // the generation loop's step counter, reported in StepDone
    uint32_t start_position = 0;
    uint32_t new_tokens = 0;
    uint32_t end() const { return start_position + new_tokens; }
  };
  struct Pending {  // the one StepRequest awaited
    size_t hop = 0;
    uint64_t step_id = 0;
    uint32_t begin = 0, end = 0;
    Time sent_at = 0;
    Time deadline = kNever;
  };
  struct Replacement {  // hops [first, last) being replaced
    size_t first = 0, last = 0;
    BlockSpan blocks;
    size_t recovery = 0;
    Time deadline = kNever;  // give up planning after this
    Time retry_at = kNever;  // re-plan then (kNever while a PlanRoute is out)
  };

  struct CheckRun {  // one opinion: the hop's inputs [0, end) through a chain of other servers
    Chain chain;
    std::vector<uint64_t> session_ids;
    std::vector<bool> opened;
    size_t hop = 0;           // the checker hop being fed
    PositionLog inputs;       // its inputs
    PositionLog outputs;      // its outputs so far
    uint32_t acked = 0;       // positions it has answered
    uint32_t sent_end = 0;    // the awaited message's end
    uint64_t message_id = 0;  // the awaited StepRequest (0: none)
    uint64_t route_id = 0;    // the awaited PlanRoute (0: planned)
    Time open_deadline = kNever;
    Time deadline = kNever;
  };
  struct Check {  // a hop reply held back until other servers agree
    size_t hop = 0;
    uint32_t begin = 0, end = 0;
    Activation claimed;                // the hop's reply for [begin, end)
    PositionLog inputs;                // the hop's inputs [0, end)
    size_t record = 0;                 // in spot_checks_
    std::optional<Activation> second;  // the second opinion, once it disagreed
    CheckRun run;
  };

  // inference_session.cpp: the normal path.
  void on_open_requested(Time now, std::vector<Effect>& out);
  void on_route(Time now, const RoutePlanned& route, std::vector<Effect>& out);
  void on_step_requested(Time now, const StepRequested& step, std::vector<Effect>& out);
  void on_message(Time now, PeerId from, const Message& message, std::vector<Effect>& out);
  void on_session_opened(Time now, size_t hop, std::vector<Effect>& out);
  void on_step_result(Time now, size_t hop, const StepResult& result, std::vector<Effect>& out);
  void on_timer(Time now, std::vector<Effect>& out);
  void on_close_requested(std::vector<Effect>& out);
  void fail_peer(Time now, PeerId peer, const Error& error, std::vector<Effect>& out);
  void open_hop(Time now, size_t hop, std::vector<Effect>& out);
  void advance(Time now, std::vector<Effect>& out);
  void pump(Time now, std::vector<Effect>& out);
  void record_output(size_t hop, uint32_t begin, uint32_t end, const Activation& outputs);
  void rearm(std::vector<Effect>& out);
  void fail(Error error, std::vector<Effect>& out);
  void close_hops(std::vector<Effect>& out);
  std::optional<size_t> live_hop(PeerId peer, uint64_t session_id) const;
  uint32_t step_tokens_max() const;

  // inference_session_recovery.cpp: failures and replacements.
  void fail_hop(Time now, size_t hop, Error error, std::vector<Effect>& out);
  void start_replacement(Time now, size_t first, size_t last, std::vector<Effect>& out);
  void plan_replacement(Time now, std::vector<Effect>& out);
  void on_replacement_route(Time now, const RoutePlanned& route, std::vector<Effect>& out);
  void splice(Time now, const Chain& replacement, std::vector<Effect>& out);
  void update_recoveries(Time now);
  void restart_from_scratch(Time now, std::vector<Effect>& out);
  // restart and restart_from_scratch replace every hop when one fails.
  std::vector<PeerId> avoided(Time now) const;  // banned or liars, in peer order

  // inference_session_spot.cpp: spot checks.
  bool start_check(Time now, size_t hop, uint32_t begin, uint32_t end, const Activation& outputs,
                   std::vector<Effect>& out);
  void plan_check_run(Time now, std::vector<PeerId> avoid, std::vector<Effect>& out);
  void on_check_route(Time now, const RoutePlanned& route, std::vector<Effect>& out);
  bool on_check_message(Time now, PeerId from, const Message& message, std::vector<Effect>& out);
  void pump_check(Time now, std::vector<Effect>& out);
  void on_check_run_done(Time now, const Activation& result, std::vector<Effect>& out);
  void check_run_failed(Time now, PeerId peer, const Error& error, std::vector<Effect>& out);
  void accept_checked(Time now, SpotCheckOutcome outcome, std::vector<Effect>& out);
  void reject_checked(Time now, SpotCheckOutcome outcome, std::string why, std::vector<Effect>& out);
  void abandon_check(std::vector<Effect>& out);
  void close_check_run(std::vector<Effect>& out);
  bool starts_over() const {
    return config_.recovery == RecoveryPolicy::restart || config_.recovery == RecoveryPolicy::restart_from_scratch;
  }

  InferenceSessionConfig config_;
  Phase phase_ = Phase::idle;
  Chain chain_;
  std::vector<HopState> hops_;
  PositionLog final_outputs_;  // the last hop's outputs for the current step
  uint32_t length_ = 0;
  uint64_t next_step_id_ = 1;     // the loop's steps
  uint64_t next_message_id_ = 1;  // StepRequest.step_id
  uint64_t route_id_ = 0;
  uint64_t hop_sessions_opened_ = 0;
  std::optional<CurrentStep> step_;
  std::optional<Pending> pending_;
  std::optional<Replacement> replacement_;
  BanList bans_;
  std::vector<Recovery> recoveries_;
  Time armed_at_ = kNever;
  Rng rng_;  // spot check draws only
  std::optional<Check> check_;
  std::vector<SpotCheck> spot_checks_;
  std::set<PeerId> liars_;
  std::set<PeerId> impostors_;
};

std::string_view to_string(InferenceSession::Phase phase);

}  // namespace bouquet::core
