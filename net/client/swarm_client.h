// A client's view of the swarm: the servers given on the command line, what each said about
// itself (InfoReply), the connections to them, and a synchronous face over the asynchronous
// event loop for the command-line client and tests.
//
// Promises:
// - discover() asks every peer for its info in parallel and returns within request_timeout_s
//   (plus the connect timeout), with, per peer, the reply or the reason there is none.
// - records() turns the replies into core ServerRecords; routing is the core's planner over them.
//   Once a directory read is taken it returns the directory's records instead (servers new to the
//   client become peers). A re-plan starts a read and plans at once on what is known (a DHT lookup
//   that meets a dead node takes seconds); it waits for the read only when that gives no chain.
// - Each info answer's round trip feeds rtt(), which min-latency routing prices hops with (with a
//   directory, discover() times a second exchange on the open connection instead of the first).
// - call() sends one request/reply message (info, forward, backward) and waits for the reply with
//   the same request id, an ErrorReply, a lost connection or the timeout; failures come back as
//   typed errors naming the peer.
// - Inference sessions (remote_session.h) attach as listeners and get every message and loss.
// - Request ids have the top bit set and session ids (drawn by sessions) do not, so an ErrorReply
//   always reaches the right one.
// - Identity challenge (core/identity_proof.h): with challenge_identity (the default) every
//   OpenSession, ForwardRequest and BackwardRequest leaves with a fresh random nonce, and its reply
//   must carry the server's proof: a key whose peer id a directory record names for that address
//   (any key for peers given by hand, which no record names) and a signature of the nonce and the
//   model id that verifies. A reply that fails, lacks the proof, or an old server's protocol error
//   in its place, does not reach the sessions: they get core::IdentityRefused naming the server
//   (a call() throws RemoteError identity_refused), and one line on stderr says so.
// - Address pinning (core/address_pins.h): with challenge_identity, discover()'s InfoRequests
//   carry a nonce too, and each address is pinned to the key whose proof in the InfoReply verifies
//   (and which a record for that address names, if any does). An address that answers without a
//   valid proof, or with a version-3 server's bad_version error, is refused as above: no info, no
//   routing. Before any plan, records at a pinned address that name another key are dropped, from
//   the named identities at discovery and from every directory read, one stderr line per record
//   saying which and why. Addresses a directory read brings that were never asked are asked
//   then, so the next read is filtered too.
// - Single-threaded: one thread uses a SwarmClient at a time.
#pragma once

#include <asio.hpp>

#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/address_pins.h"
#include "core/effect.h"
#include "core/error.h"
#include "core/input.h"
#include "core/messages.h"
#include "core/rng.h"
#include "core/rtt_estimator.h"
#include "core/server_record.h"
#include "core/server_speeds.h"
#include "net/rpc/client_network.h"
#include "net/rpc/timers.h"

namespace bouquet::net {

struct SwarmClientConfig {
  std::vector<std::string> peers;  // "HOST:PORT"
  // Optional: fresh records of the model's servers (a DHT lookup), with the model id the
  // sessions use. Re-plans read it (plan_route) instead of the infos.
  std::function<std::vector<core::ServerRecord>()> directory;
  double connect_timeout_s = 10;
  double request_timeout_s = 30;  // info, forward and backward replies
  FrameLimits limits;
  // Challenge every open, forward and backward (off: what a wire-version-2 client sends).
  bool challenge_identity = true;
  // The peer ids the directory's records name for each address ("HOST:PORT"): the server there
  // must prove one of them. Later directory reads add theirs.
  std::map<std::string, std::set<core::PeerId>> identities;
};

struct PeerStatus {
  core::PeerId peer;
  std::string address;
  std::optional<core::InfoReply> info;  // the peer's answer
  std::string error;                    // why there is no answer
};

// A typed failure of a remote call or session, with a one-line message naming the peer.
class RemoteError : public std::runtime_error {
 public:
  explicit RemoteError(core::Error error) : std::runtime_error(error.to_string()), error_(std::move(error)) {}
  const core::Error& error() const { return error_; }

 private:
  core::Error error_;
};

class SwarmClient {
 public:
  // Listeners get every message and loss (as core Inputs: MessageReceived / PeerUnreachable).
  using Listener = std::function<void(const core::Input&)>;

  explicit SwarmClient(SwarmClientConfig config);  // std::invalid_argument on a bad address
  ~SwarmClient();

  const std::vector<PeerStatus>& discover();
  bool discovered() const { return discovered_; }
  const std::vector<PeerStatus>& peers() const { return peers_; }
  // The key each address asked with a challenged InfoRequest proved (or why it did not).
  const core::AddressPins& pins() const { return pins_; }
  std::vector<core::ServerRecord> records() const;
  std::string address_of(core::PeerId peer) const;
  bool has_directory() const { return static_cast<bool>(config_.directory); }
  // Starts reading config().directory on a thread of its own, unless a read is already running.
  void start_directory_read();
  // Takes the running read's answer if it comes within `wait_s` (0: only if it is in already):
  // records() returns it from then on. False when no read runs, it is late, or it failed.
  bool take_directory_read(double wait_s);
  // How long a plan waits for a directory read it cannot do without (more than a DHT lookup's own
  // 30 s limit, so the lookup's error comes first).
  static constexpr double kDirectoryReadWaitS = 35;
  // Answers a client component's PlanRoute from what this client knows (core/planners.h): the
  // planner the plan names, else `configured`. A plan that reads the directory
  // (PlanRoute::read_directory) first takes a finished read's answer and starts a new read; it
  // plans on the records known and waits for that read only when they give no chain
  // (core::waits_for_directory).
  core::RoutePlanned plan_route(const core::PlanRoute& plan, core::Routing configured, core::Rng& rng);
  const core::RttEstimator& rtt() const { return rtt_; }
  // What this client's sessions measured of each server's speed (core/server_speeds.h).
  core::ServerSpeeds& speeds() { return speeds_; }
  const core::ServerSpeeds& speeds() const { return speeds_; }

  // One request/reply exchange. `request` must be an InfoRequest, ForwardRequest or
  // BackwardRequest; its request_id is assigned here. Throws RemoteError.
  core::Message call(core::PeerId peer, core::Message request, double timeout_s);

  size_t add_listener(Listener listener);
  void remove_listener(size_t id);
  // Sends `message` to `peer`, with an identity challenge when it is an open, forward or backward.
  void send(core::PeerId peer, core::Message message);

  asio::io_context& io() { return io_; }
  const DriverClock& clock() const { return clock_; }
  const SwarmClientConfig& config() const { return config_; }
  // Runs the event loop until done() holds or timeout_s passed; returns done().
  bool run_until(const std::function<bool()>& done, double timeout_s);

 private:
  struct Pending {
    core::PeerId peer;
    std::optional<core::Message> reply;
    std::optional<core::Error> error;
    double sent_at = 0;
    double answered_at = 0;
  };

  void on_message(core::PeerId peer, core::Message message);
  void ping_answered_peers();  // a second info exchange per peer, for RTT without the connect
  void on_lost(core::PeerId peer, const std::string& reason);
  // Identity challenges (core/identity_proof.h).
  void challenge(core::PeerId peer, core::Message& message);
  // Why `message`, an answer from `peer`, fails its challenge; nothing when it passes or none was made.
  std::optional<std::string> check_proof(core::PeerId peer, const core::Message& message);
  void refuse(core::PeerId peer, const std::string& why);
  // Pinning (core/address_pins.h): the verdict on `peer`'s address, and what it drops.
  void pin(core::PeerId peer, core::AddressPin verdict);
  std::vector<core::ServerRecord> keep_pinned(std::vector<core::ServerRecord> records);
  void drop_identities_of_other_keys();
  void ask_to_pin(core::PeerId peer);  // a challenged InfoRequest whose answer only pins
  uint64_t next_request_id() { return (uint64_t{1} << 63) | next_request_++; }

  SwarmClientConfig config_;
  asio::io_context io_;
  DriverClock clock_;
  ClientNetwork network_;
  std::vector<PeerStatus> peers_;
  std::optional<std::vector<core::ServerRecord>> directory_records_;
  core::RttEstimator rtt_;
  core::ServerSpeeds speeds_{rtt_};
  std::map<uint64_t, Pending> pending_;
  std::map<size_t, Listener> listeners_;
  struct Challenge {
    std::string nonce;
    std::string model_id;  // what the server must sign with it (an info reply's own, for an info request)
    bool info = false;     // an InfoRequest's: its verdict pins the address
  };
  // Why `proof` does not answer `challenge` made to `peer`; nothing when it does.
  std::optional<std::string> verify(core::PeerId peer, const std::optional<core::IdentityProof>& proof,
                                    const Challenge& challenge) const;
  std::map<std::pair<core::PeerId, uint64_t>, Challenge> challenges_;  // by peer and session or request id
  std::map<std::string, std::set<core::PeerId>> identities_;           // by address as peers_ spell it
  std::set<core::PeerId> refused_;                                     // said so on stderr
  core::AddressPins pins_;                                             // by address as peers_ spell it
  std::set<std::pair<core::PeerId, std::string>> said_dropped_;        // records dropped, said on stderr
  std::set<uint64_t> pinning_;                                         // ask_to_pin's request ids
  std::set<std::string> pin_asked_;                                    // addresses ask_to_pin asked
  size_t next_listener_ = 1;
  bool discovered_ = false;
  uint64_t next_request_ = 1;
  // A directory read in flight (start_directory_read). Destroyed first: a read still running when
  // the client goes waits for its answer while config_.directory is still there.
  std::future<std::vector<core::ServerRecord>> reading_;
};

}  // namespace bouquet::net
