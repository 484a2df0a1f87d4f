// Spot checks: how a client catches a server that returns wrong activations (a lying or broken
// server), and the record of each check (`generate --json` prints them as `spot_checks`).
//
// The policy (InferenceSession and PassSession carry it out):
// - With probability spot_check_rate (drawn from the session's own seeded Rng, and only when the
//   rate is above 0, so a rate of 0 changes nothing), a hop's reply that completes a step (a
//   fine-tuning pass: a sub-batch's forward through a hop) is held back and re-run on a second
//   server: the planner finds servers covering exactly that span with the checked one (and every
//   banned or known liar) avoided.
// - Positions before the step: the second server opens a fresh session just large enough and is
//   sent the hop's whole input history [0, end) (kept for recovery anyway), merged into as few
//   messages as the step limit allows, as a recovery replays; only the step's positions are
//   compared. This lets any step be checked (a server that starts lying after N steps is caught;
//   checking only each hop's first step would never see it) and costs one prefill of the prefix,
//   not a standing second session fed every step. Fine-tuning forwards carry every position, so
//   the checker gets the same request.
// - The two outputs agree when, for every token vector, the largest difference is within
//   spot_check_tolerance() of the vector's largest magnitude: the wire compression's rounding
//   (float16: each value within 2^-11 relative; int8 blockwise: within half a block step,
//   absmax/254) twice over, plus spot_check_rtol for honest servers that batch or sum in another
//   order. Without values (the simulator) they always agree: the simulator models the cost only.
// - A mismatch suspects both: a third server (avoiding both) runs the same inputs. The one the
//   third disagrees with is the liar: banned for the rest of the session (every later route avoids
//   it). When every earlier output of the lying hop was checked (so nothing it said went on), its
//   hop is replaced as a failed one is (recovery.h) and the step goes on. When some went on
//   unchecked, later hops' caches and the tokens the loop sampled may hold its lies: the session
//   starts over from scratch on a chain without it (SessionRestarted, as restart_from_scratch
//   does), so the text generated in the end is the honest one at any rate. (Recovery policy
//   `none`: the session fails instead.) When the third agrees with neither, or none can be found,
//   the checked hop is replaced as failed (both keep an ordinary backoff ban).
// - The step waits for its check, so at rate 1 no unchecked output ever moves on and a liar costs
//   no restart.
// - A second server that fails (timeout, error, unreachable) or cannot be found leaves the reply
//   unchecked (it goes on; the failure is recorded and the failed checker banned with backoff).
//
// Default for real clients (`generate --spot-check-rate`): 0.05. A server that lies on every step
// from some step on is caught within 1/0.05 = 20 of its steps on average (99% within 90), and
// since the text then starts over without it, what the user gets is honest. A check costs a round
// trip and a prefill of the prefix on another server while the step waits: about one decode step
// where decode is memory-bound (a GPU), but on a CPU a prefill costs in proportion to its length.
// Measured by bench-swarm --spot-check-rate 0,0.05,0.2 on this 2-core machine (README): tiny
// model 739 / 676 / 423 tokens/s (5%: -8%), 7B-shaped blocks 5.1 / 3.9 / 2.1 tokens/s. 5% keeps
// the cost under a tenth where steps are cheap and a liar still has only tens of steps; clients
// that must never see a lie use 1 (every step checked before it moves on, twice the compute).
// The simulator's published scenarios keep 0 so their expected outputs stay as they were.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "core/activation.h"
#include "core/route.h"
#include "core/time.h"

namespace bouquet::core {

inline constexpr double kDefaultSpotCheckRate = 0.05;
inline constexpr double kDefaultSpotCheckRtol = 1e-3;

// Largest |a - b| allowed, relative to a token vector's largest magnitude, under `compression`.
double spot_check_tolerance(Compression compression, double rtol);

// True when `a` and `b` (same shape, [..., hidden]) agree within the tolerance, or when either has
// no values (a simulated handle) or values the core cannot read.
bool outputs_agree(const Activation& a, const Activation& b, Compression compression, double rtol);

enum class SpotCheckOutcome : uint8_t {
  pending,         // under way
  agreed,          // the second server agreed: the reply went on
  liar_found,      // the checked server lied (a third server agreed with the second)
  checker_lied,    // the second server lied (a third agreed with the checked one): the reply went on
  undecided,       // mismatch and no third opinion settled it: the checked hop was replaced
  no_checker,      // no other server covers the span: the reply went on unchecked
  checker_failed,  // the second server failed: the reply went on unchecked
  abandoned,       // the checked hop failed meanwhile
};
std::string_view to_string(SpotCheckOutcome outcome);

struct SpotCheck {
  BlockSpan span;
  PeerId checked;               // the hop's server
  Chain checker;                // the second opinion's servers (empty if none found)
  Chain referee;                // the third opinion's (empty unless there was a mismatch)
  uint64_t step_id = 0;         // the loop's step (fine-tuning: the pass's forward count)
  uint32_t begin = 0, end = 0;  // positions compared
  std::optional<PeerId> liar;   // set with liar_found / checker_lied
  // liar_found: the first position of the liar's outputs that went on unchecked before this step
  // (== begin when every earlier output was checked: nothing wrong reached the loop).
  uint32_t unverified_from = 0;
  SpotCheckOutcome outcome = SpotCheckOutcome::pending;
  Time started_at = 0;
  Time finished_at = kNever;
};

}  // namespace bouquet::core
