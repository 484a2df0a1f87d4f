// The client side of a fine-tuning pass through the swarm: a forward over every block of the
// model, then (when the loop asks) the backward of the same pass. Real clients (`bouquet
// finetune`) and the simulator drive this one state machine, so both recover alike.
//
// Promises:
// - ForwardRequested splits the batch into sub-batches of whole sequences (sub_batches.h, at
//   most max_tokens_per_request positions each). Each sub-batch gets its own chain over all
//   blocks (PlanRoute naming the throughput planner, so sub-batches and clients spread over the
//   swarm) and goes through it hop by hop, all sub-batches at once. Each hop's inputs are kept.
//   When every sub-batch is through: ForwardDone with the outputs in batch order.
// - BackwardRequested (after a ForwardDone) walks each sub-batch's chain in reverse: each hop gets
//   its forward inputs again, the gradient of its outputs and its slice of the deep prompts
//   (servers keep nothing between the two), and answers the gradient of its inputs (and of its
//   prompts). When every sub-batch is through: BackwardDone, the prompts' gradient assembled per
//   block (summed over sub-batches when all sequences share the prompts).
// - A hop fails on an ErrorReply (other than bad_request or over_limit, which fail the pass: the
//   request itself is wrong and another server would refuse it too), PeerUnreachable of its
//   server, no reply within reply_timeout_s, or a reply of the wrong shape. Its server is banned
//   (ban_list.h), exactly its span re-planned (PlanRoute for those blocks, avoiding the banned),
//   the replacement spliced into that sub-batch's chain, and the sub-batch goes on from there. A
//   replacement of several hops in the backward first recomputes the inner hops' inputs forward
//   from the span's saved inputs. Each failure is recorded (recoveries()). After max_retries
//   failed hops in one forward or one backward, or when no chain exists: PassFailed naming the
//   blocks, the server and the cause. Late and foreign replies are ignored.
// - Spot checks (spot_check.h): with spot_check_rate > 0, a drawn forward reply of a hop is held
//   until another server, sent the same request, agrees (a mismatch asks a third). A liar found is
//   avoided for the rest of the session (liars()), and every sub-batch whose chain went through it
//   starts its forward again on a chain without it, so ForwardDone never carries a checked liar's
//   outputs. Checks are recorded (spot_checks(); step_id counts the session's forwards).
// - IdentityRefused (identity_proof.h) fails every hop awaiting that server, as a lost peer does
//   (recorded with code identity_refused and the driver's reason), and no route of the session
//   uses the server again (impostors()).
// - The session arms one timer (id 1) at its earliest reply deadline. Request ids are
//   request_id_base + 1, + 2, ... so a driver can keep them apart from its other requests.
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
#include "core/rng.h"
#include "core/route.h"
#include "core/spot_check.h"
#include "core/sub_batches.h"
#include "core/time.h"

namespace bouquet::core {

struct PassSessionConfig {
  std::string model_id;
  uint32_t num_blocks = 0;  // the pass runs blocks [0, num_blocks)
  uint32_t hidden_size = 0;
  std::string adapter;                          // "" for none
  Compression compression = Compression::none;  // for what it sends and asks back
  double reply_timeout_s = 60;
  // Positions per request (whole sequences); 0 = the whole batch in one. A driver that knows
  // servers' announced caps (InfoReply::request_tokens_max) passes the smallest.
  uint32_t max_tokens_per_request = kSubBatchTokensMax;
  uint32_t max_retries = 4;  // failed hops per forward or backward before PassFailed
  BanListConfig bans;
  uint64_t request_id_base = 0;
  // Fraction of hop forwards re-run on another server and compared (spot_check.h); 0 = off.
  double spot_check_rate = 0;
  double spot_check_rtol = kDefaultSpotCheckRtol;
  uint64_t spot_check_seed = 0;  // seeds the draws
};

// One hop that failed and what took its span over.
struct PassRecovery {
  BlockSpan span;
  PeerId failed_peer;
  Error cause;
  Chain replacement;  // empty when none was found
};

class PassSession {
 public:
  enum class Phase { idle, forward, forward_done, backward, failed };
  static constexpr TimerId kDeadlineTimer = 1;

  explicit PassSession(PassSessionConfig config);

  void handle(Time now, const Input& in, std::vector<Effect>& out);
  // From the next ForwardRequested on (a driver that learned of a server's smaller cap).
  void set_max_tokens_per_request(uint32_t tokens) { config_.max_tokens_per_request = tokens; }

  Phase phase() const { return phase_; }
  const PassSessionConfig& config() const { return config_; }
  const std::vector<PassRecovery>& recoveries() const { return recoveries_; }
  uint64_t requests_sent() const { return requests_sent_; }
  // The chain of each sub-batch of the current pass.
  std::vector<Chain> chains() const;
  const BanList& bans() const { return bans_; }
  const std::vector<SpotCheck>& spot_checks() const { return spot_checks_; }
  const std::set<PeerId>& liars() const { return liars_; }
  // Servers that failed the identity challenge: no route of this session uses them again.
  const std::set<PeerId>& impostors() const { return impostors_; }

 private:
  enum class Stage { routing, forward, refill, backward, replanning, checking, done };
  struct Check {                       // a forward reply held back until other servers agree
    size_t hop = 0;                    // the hop checked
    Activation claimed;                // its reply
    std::optional<Activation> second;  // the second opinion, once it disagreed
    Chain run;                         // the servers giving the current opinion
    size_t run_hop = 0;                // the one awaited
    Activation run_x;                  // its input
    size_t record = 0;                 // in spot_checks_
  };
  struct Sub {
    uint32_t row_begin = 0, rows = 0;
    Chain chain;
    Stage stage = Stage::routing;
    Stage resume = Stage::forward;          // while replanning: the stage to go back to
    size_t hop = 0;                         // forward: the hop to run; backward: the hop whose backward runs next
    size_t refill = 0;                      // refill: the hop whose forward recomputes inputs for `hop`
    size_t failed = 0;                      // replanning: the hop being replaced
    size_t recovery = 0;                    // replanning: its entry in recoveries_
    Activation x;                           // forward: the next hop's input; backward: the grad of `hop`'s outputs
    std::map<uint32_t, Activation> inputs;  // by a hop's first block: its forward inputs
    std::map<uint32_t, Activation> grad_prompts;  // by a hop's first block
    uint64_t request_id = 0;                      // awaited; 0 = none
    PeerId awaiting;
    Time deadline = kNever;
    uint64_t route_id = 0;
    std::optional<Check> check;  // while checking
  };

  void on_forward_requested(Time now, const ForwardRequested& request, std::vector<Effect>& out);
  void on_backward_requested(Time now, const BackwardRequested& request, std::vector<Effect>& out);
  void on_route(Time now, const RoutePlanned& route, std::vector<Effect>& out);
  void on_message(Time now, PeerId from, const Message& message, std::vector<Effect>& out);
  void on_reply(Time now, Sub& sub, const Message& message, std::vector<Effect>& out);
  void on_timer(Time now, std::vector<Effect>& out);
  void fail_peer(Time now, PeerId peer, const Error& error, std::vector<Effect>& out);
  // Sends what the sub-batch needs next, or marks it done (and the pass, when all are).
  void pump(Time now, Sub& sub, std::vector<Effect>& out);
  void send_forward(Time now, Sub& sub, size_t hop, const Activation& inputs, std::vector<Effect>& out);
  void send_backward(Time now, Sub& sub, std::vector<Effect>& out);
  template <class Request>
  void send_request(Time now, Sub& sub, const Hop& target, const Activation& inputs, Request request,
                    std::vector<Effect>& out);
  void fail_hop(Time now, Sub& sub, Error cause, std::vector<Effect>& out);
  void fail(Error error, std::vector<Effect>& out);
  void finish_if_done(std::vector<Effect>& out);
  void rearm(std::vector<Effect>& out);
  std::optional<Activation> hop_prompts(const Sub& sub, const Hop& hop) const;
  Sub* awaited(PeerId from, uint64_t request_id);
  std::vector<PeerId> avoided(Time now) const;

  // pass_session_spot.cpp: spot checks of forward replies.
  bool start_check(Time now, Sub& sub, const Activation& result, std::vector<Effect>& out);
  void plan_check(Time now, Sub& sub, std::vector<PeerId> avoid, std::vector<Effect>& out);
  void on_check_route(Time now, Sub& sub, const RoutePlanned& route, std::vector<Effect>& out);
  void on_check_reply(Time now, Sub& sub, const Message& message, std::vector<Effect>& out);
  void on_check_done(Time now, Sub& sub, const Activation& opinion, std::vector<Effect>& out);
  void check_failed(Time now, Sub& sub, const Error& cause, std::vector<Effect>& out);
  void accept_checked(Time now, Sub& sub, SpotCheckOutcome outcome, std::vector<Effect>& out);
  void reject_checked(Time now, Sub& sub, SpotCheckOutcome outcome, std::vector<Effect>& out);
  void forward_again_without(Time now, PeerId liar, std::vector<Effect>& out);

  PassSessionConfig config_;
  Phase phase_ = Phase::idle;
  std::vector<Sub> subs_;
  std::optional<Activation> prompts_;
  uint32_t tokens_ = 0;  // positions per sequence of the current pass
  BanList bans_;
  std::vector<PassRecovery> recoveries_;
  uint32_t failures_ = 0;  // in the current forward or backward
  uint64_t next_request_ = 1;
  uint64_t route_id_ = 0;
  uint64_t requests_sent_ = 0;
  Time armed_at_ = kNever;
  Rng rng_;  // spot check draws only
  uint64_t forwards_ = 0;
  std::vector<SpotCheck> spot_checks_;
  std::set<PeerId> liars_;
  std::set<PeerId> impostors_;
};

std::string_view to_string(PassSession::Phase phase);

}  // namespace bouquet::core
