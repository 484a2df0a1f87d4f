// The virtual swarm: a deterministic, single-threaded driver that runs many BlockServers,
// InferenceSessions and PassSessions on a virtual clock. It is the reference driver of the core: it carries out
// every Effect the way net/ and sim/ must (timers, computes, route planning, messages), and
// encodes and decodes every message with the real wire codec, charging encode(m).size() (checked
// equal to encoded_size()) over per-link latency and bandwidth.
//
// Faults: drop or delay messages matching a predicate, drop each message with a probability,
// crash a node at a time or a server at its k-th inference step (before or after replying), make
// a server lie (scaled outputs) after some steps.
// A crash is noticed by the node's peers as PeerUnreachable one link latency later (a reset
// connection), unless notify_peers_on_crash is false (then only timeouts reveal it).
//
// Discovery and balancing (use_directory): servers added with add_balanced_server run the core's
// BalancerNode, which announces records to a modelled directory (visible after announce_delay_s,
// gone at their expiry), looks the swarm up, picks and moves its span; the node loads the span
// (load_s_per_block for each block it does not hold yet), then serves it with a fresh
// BlockServer, the old one leaving first (each of its sessions told, as sim and net do). Until
// its first span is loaded a server refuses every request with span_not_served. Route plans
// then read the directory's records, like a real client's lookup.
//
// Compute is the fake block (fake_block.h). Same seed, same calls: same run, bit for bit.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <set>
#include <string>
#include <vector>

#include "core/balancer_node.h"
#include "core/block_server.h"
#include "core/inference_session.h"
#include "core/pass_session.h"
#include "core/planners.h"
#include "core/rng.h"
#include "tests/core/support/fake_block.h"

namespace bouquet::test {

struct Link {
  double latency_s = 0.005;
  double bandwidth_bps = 1e9;
};

// One generation driven by a fake client head: a prompt step, then `new_tokens` one-token steps,
// each next input derived from the previous output (fake_next_input), then close.
struct GenerationSpec {
  core::InferenceSessionConfig session;
  uint32_t prompt_tokens = 4;
  uint32_t new_tokens = 8;
  uint64_t prompt_seed = 1;
  core::Time start_at = 0;
};

struct GenerationResult {
  bool ready = false;
  bool closed = false;
  std::optional<core::Error> error;
  core::Chain chain;
  std::vector<std::vector<float>> outputs;  // per step: the last span's output values
  uint32_t restarts = 0;                    // SessionRestarted reports (restart_from_scratch)
  core::Time ready_at = core::kNever;
  core::Time finished_at = core::kNever;
  bool finished() const { return closed || error.has_value(); }
};

// The outputs a generation must produce: the same fake client head over one local copy of all
// blocks, no network, no server.
std::vector<std::vector<float>> reference_outputs(const GenerationSpec& spec);

// A fine-tuning pass: fake hidden states through every block, then (backward) a fake gradient.
struct PassSpec {
  core::PassSessionConfig pass;
  uint32_t batch = 2;
  uint32_t tokens = 4;
  uint64_t input_seed = 1;
  bool backward = true;
  core::Time start_at = 0;
};

struct PassResult {
  bool done = false;
  std::optional<core::Error> error;
  std::vector<float> outputs;      // the forward's
  std::vector<float> grad_inputs;  // the backward's
  core::Time finished_at = core::kNever;
  bool finished() const { return done || error.has_value(); }
};

// What a pass must produce: the fake blocks over one local copy of all of them.
PassResult reference_pass(const PassSpec& spec);

enum class CrashPoint { before_reply, after_reply };

// The modelled directory's delays (the DHT's round trips).
struct DirectoryModel {
  double announce_delay_s = 0.05;  // a record becomes visible this long after it is announced
  double lookup_delay_s = 0.05;    // a lookup or a route plan is answered this long after it is asked
};

class VirtualSwarm {
 public:
  using MessagePredicate =
      std::function<bool(core::PeerId from, core::PeerId to, const core::Message&, core::Time now)>;

  explicit VirtualSwarm(uint64_t seed);
  ~VirtualSwarm();

  // The server's directory record carries the config's span, speeds and cache budget.
  core::PeerId add_server(core::BlockServerConfig config, double compute_s_per_token_block = 1e-3);
  core::PeerId add_client();
  // Turns the directory on: route plans read the records announced (and the records of servers
  // added with add_server, which never expire) instead of every server ever added.
  void use_directory(DirectoryModel model = {});
  // A server whose span its BalancerNode chooses (or pins: balancer.blocks), started at
  // `start_at`; `server` is the BlockServer config of every span it serves (span set by the
  // balancer). balancer.peer is set here. Needs use_directory().
  core::PeerId add_balanced_server(core::BalancerNodeConfig balancer, core::BlockServerConfig server,
                                   core::Time start_at = 0, double compute_s_per_token_block = 1e-3,
                                   double load_s_per_block = 0.1);
  // A clean shutdown at `at`: the balancer announces the server offline, its BlockServer leaves
  // (every session told), then the process exits (its connections reset).
  void stop_at(core::PeerId server, core::Time at);
  const core::BalancerNode& balancer(core::PeerId server) const;
  // The spans a balanced server has started serving, in order.
  const std::vector<core::BlockSpan>& spans_served(core::PeerId server) const;
  // What a lookup of `model_id` answers now: the newest visible, unexpired record of each peer.
  std::vector<core::ServerRecord> directory_records(const std::string& model_id) const;
  void set_default_link(Link link) { default_link_ = link; }
  void set_link(core::PeerId a, core::PeerId b, Link link);  // both directions
  // Which core planner answers a PlanRoute (core/planners.h; greedy unless set), from the
  // directory's records: every server ever added, crashed or not, like a directory whose records
  // have not expired yet. No RTTs are measured: every peer is at the estimator's default.
  void set_routing(core::Routing routing) { routing_ = routing; }

  // Schedules a generation on `client`; returns its index for result() and session().
  size_t generate(core::PeerId client, GenerationSpec spec);
  const GenerationResult& result(size_t generation) const;
  const core::InferenceSession& session(size_t generation) const;
  // Schedules a pass on `client`; returns its index for pass_result() and pass_session().
  size_t train(core::PeerId client, PassSpec spec);
  const PassResult& pass_result(size_t pass) const;
  const core::PassSession& pass_session(size_t pass) const;

  void drop_if(MessagePredicate predicate) { drops_.push_back(std::move(predicate)); }
  void delay_if(MessagePredicate predicate, double extra_s) { delays_.push_back({std::move(predicate), extra_s}); }
  void set_drop_probability(double p) { drop_probability_ = p; }
  void crash_at(core::PeerId node, core::Time at);
  // Crash `server` at its k-th inference step (1-based): while computing it, or right after its
  // reply left.
  void crash_at_step(core::PeerId server, uint64_t k, CrashPoint point);
  // A lying server: after its first `honest` inference steps and forwards, every output it
  // returns is scaled by `scale` (what `serve --lie-after-steps` does for real).
  void lie_after_steps(core::PeerId server, uint64_t honest, float scale = 1.5f);
  bool notify_peers_on_crash = true;

  // Runs events up to and including time `t` (the clock then reads t).
  void run_until(core::Time t);
  // Runs until no event is left; checks it ends within `max_events`.
  void run(uint64_t max_events = 10'000'000);

  core::Time now() const { return now_; }
  // The BlockServer serving now (a balanced server's current one; it must have a span).
  core::BlockServer& server(core::PeerId peer);
  bool alive(core::PeerId peer) const;
  uint64_t bytes_sent() const { return bytes_sent_; }
  uint64_t messages_sent() const { return messages_sent_; }
  uint64_t messages_dropped() const { return messages_dropped_; }
  // Inference computations started per server, and the kinds started in order.
  const std::vector<core::ComputeKind>& computes_started(core::PeerId server) const;
  // Batched computations (StartBatch, two steps or more) a server started.
  uint64_t batches_started(core::PeerId server) const;
  // Sends a message as if `from` had (for tests that play a client by hand).
  void inject(core::PeerId from, core::PeerId to, core::Message message);
  // Messages delivered to a node that has no component for them (hand-played clients).
  const std::vector<std::pair<core::PeerId, core::Message>>& inbox(core::PeerId node) const;

 private:
  struct Generation;
  struct Node;
  struct Event {
    core::Time at;
    uint64_t seq;
    std::function<void()> run;
    bool operator>(const Event& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };

  void schedule(core::Time at, std::function<void()> fn);
  void transmit(core::PeerId from, core::PeerId to, const core::Message& message);
  void deliver(core::PeerId from, core::PeerId to, const std::vector<uint8_t>& bytes);
  void feed(core::PeerId node, size_t component, const core::Input& input);
  void feed_balancer(core::PeerId node, const core::Input& input);
  void move_to(core::PeerId node, core::BlockSpan span);
  void announce(const core::ServerRecord& record);
  std::vector<core::ServerRecord> records_for(const std::string& model_id) const;
  void carry_out(core::PeerId node, size_t component, std::vector<core::Effect>& effects);
  void lie_if_drilled(Node& n, core::Message& message);
  void start_compute(core::PeerId node, const std::vector<core::ComputeRequest>& requests);
  void on_session_report(Generation& g, const core::Effect& effect);
  void on_pass_report(Generation& g, const core::Effect& effect);
  void crash(core::PeerId node);
  void peer_unreachable(core::PeerId node, core::PeerId lost, std::string reason);
  Link link(core::PeerId from, core::PeerId to) const;
  Node& node(core::PeerId peer);

  core::Rng rng_;
  core::Time now_ = 0;
  uint64_t seq_ = 0;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> events_;
  std::map<core::PeerId, std::unique_ptr<Node>> nodes_;
  std::vector<std::unique_ptr<Generation>> generations_;
  std::vector<core::ServerRecord> records_;  // add_server's, never expiring
  struct DirectoryEntry {
    core::Time visible_at = 0;
    uint64_t seq = 0;
    core::ServerRecord record;
  };
  std::optional<DirectoryModel> directory_;
  std::vector<DirectoryEntry> directory_entries_;
  uint64_t directory_seq_ = 0;
  core::Routing routing_ = core::Routing::greedy;
  Link default_link_;
  std::map<std::pair<core::PeerId, core::PeerId>, Link> links_;
  std::map<std::pair<core::PeerId, core::PeerId>, core::Time> link_busy_until_;
  std::vector<MessagePredicate> drops_;
  std::vector<std::pair<MessagePredicate, double>> delays_;
  double drop_probability_ = 0;
  uint64_t bytes_sent_ = 0;
  uint64_t messages_sent_ = 0;
  uint64_t messages_dropped_ = 0;
};

}  // namespace bouquet::test
