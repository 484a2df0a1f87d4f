// `bouquet serve`: one process serving a span of a model's blocks over TCP.
//
// The server is a driver: one core::BlockServer state machine makes every decision (admission,
// ordering, validation, error replies); this code feeds it what the io_context sees (accepted
// connections and their messages, timers, lost peers, finished computations) and carries out its
// effects. Each connection is one peer. Computations run on a worker thread (SpanCompute) and come
// back through the io_context, so sockets are served while blocks compute.
//
// With --initial-peers the server also joins the DHT and is the driver of a core::BalancerNode
// (server_discovery.h): it announces itself, chooses its span (unless pinned with --blocks) and
// moves when the swarm is unbalanced. Before its first span is loaded every request is answered
// span_not_served ("still choosing its blocks"); a move
// loads the new span on a loader thread while the old one keeps serving, then closes the
// connections of the old span's clients (they recover elsewhere) and serves the new span.
//
// Accept errors (the fd limit) back off, up to 1 s between tries, instead of spinning.
//
// Promises: only blocks [A, B) are read from the checkpoint; InfoReply and every session carry the
// model id, which is the model fingerprint (fingerprint.h), so a client with another model is
// refused (model_mismatch); a malformed or hostile connection is answered and/or closed without
// disturbing other connections (connection.h).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/block_span.h"
#include "net/rpc/frame.h"

namespace bouquet::net {

// Field names are the flag names of `bouquet serve`.
struct ServeConfig {
  std::string model;                   // Hugging Face model folder
  std::string blocks;                  // "A:B": serve blocks A .. B-1 (pinned); "" = choose (discovery)
  std::string listen = "127.0.0.1:0";  // port 0: any free port (printed)
  std::string announce_addr;           // address others should use; "" = the listen address
  uint64_t cache_tokens = 8192;        // attention-cache budget, tokens per block
  std::string device = "cpu";          // cpu | cuda | cuda:N | auto
  std::string dtype = "f32";           // compute dtype
  std::string quant = "none";          // none | int8 | nf4 | nf4-nodq: how the span's weights are held
  int threads = 0;                     // CPU threads for compute; 0 = libtorch's default
  // Continuous batching (core/block_server.h): most rows (batch x new tokens) of queued decode
  // steps merged into one computation (0 = sized for the device: 8 on a CPU, where measured
  // steps stop getting cheaper per session past it, or 32 on a GPU; 1 = off), and the longest a
  // step waits for others to join.
  uint32_t max_batch = 0;
  double batch_wait_ms = 0;
  // Chunked prefill (core/block_server.h): a step of more rows than this is computed in chunks of
  // this many rows, decode steps of other sessions running between them; 0 = never split; unset =
  // the max batch (when batching).
  std::optional<uint32_t> prefill_chunk;
  double session_idle_timeout_s = 300;
  double frame_timeout_s = 30;  // a frame that has begun must end within this
  uint64_t max_frame_bytes = kDefaultMaxFrameBytes;
  // Against hostile or greedy clients. A connection beyond max_connections is answered
  // overloaded and closed; one with no session, open or computation here and no bytes for
  // idle_timeout_s is closed (0 = never). The rest are core::BlockServerConfig's limits, announced
  // in InfoReply (0 = none).
  uint32_t max_connections = 256;
  double idle_timeout_s = 60;
  uint32_t request_tokens_max = 2048;
  uint64_t client_cache_tokens_max = 0;
  uint32_t client_opens_waiting_max = 8;
  uint32_t client_tasks_queued_max = 64;
  uint32_t tasks_queued_max = 1024;
  double session_idle_contended_s = 30;  // idle limit of a session while opens wait for cache
  // Fault drill: after serving this many inference steps (StepRequests), the next one kills the
  // process at once (SIGKILL: no replies, no closes, no goodbye). 0 = never.
  uint64_t crash_after_steps = 0;
  // Fault drill: a lying server. After this many inference steps and forwards answered, every
  // output it returns is multiplied by lie_scale (what client spot checks must catch). 0 = never.
  uint64_t lie_after_steps = 0;
  double lie_scale = 1.5;
  // LoRA adapter folders (PEFT layout) loaded for the span; each is named by its folder's name,
  // announced (InfoReply, DHT record) and applied to the requests that name it.
  std::vector<std::string> adapters;

  // Discovery and load balancing (server_discovery.h). On when initial_peers is given.
  std::vector<std::string> initial_peers;  // DHT nodes (HOST:PORT, UDP) to join through
  std::string model_name;                  // announced model name; "" = the model folder's name
  double update_period_s = 60;             // re-announce period; records expire 2x later
  uint32_t num_blocks = 0;                 // blocks to hold when not pinned; 0 = as many as fit memory
  double join_delay_s = 5;                 // wait uniform in [0, this] before choosing a span
  double balance_period_s = 60;            // look at the swarm about this often (x uniform [0.5, 1.5])
  double balance_quality = 0.75;           // move iff min now / min after < this; 0 = never move
  double network_bps = 0;                  // link speed; 0 = the default 100 Mbit/s
  double throughput = 0;                   // announced tokens/s per block; 0 = measured (cached on disk)
  double inference_rps = 0;                // announced one-token steps/s per block; 0 = measured
  std::string dht_listen;                  // UDP HOST:PORT of the server's DHT node; "" = listen host, any port
  uint64_t seed = 0;                       // balancing randomness; 0 = derived from the peer id
  // The key the server signs its records with (net/dht/identity.h), kept in this file (made when
  // missing); "" = a new key every start. The peer id is derived from it.
  std::string identity;
};

class Server {
 public:
  // Loads the span and binds the listening socket; throws with one clear line on a bad folder,
  // span or address.
  explicit Server(const ServeConfig& config);
  ~Server();

  // "HOST:PORT" actually bound (the real port when asked for 0).
  std::string listen_address() const;
  std::string announce_address() const;
  const std::string& model_id() const;
  core::BlockSpan span() const;  // empty until the first span is loaded
  std::string describe() const;  // one line: blocks, model, fingerprint, compute, memory
  // Computations that merged decode steps of several sessions (continuous batching), so far.
  uint64_t batches_started() const;
  // Computations started so far, single or batched (a chunked prefill starts one per chunk).
  uint64_t computations_started() const;

  // Serves until stop() (or SIGINT/SIGTERM when handle_signals).
  void run(bool handle_signals = false);
  // Thread-safe.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The command: builds a Server, prints "listening on HOST:PORT" (flushed; tests parse it) and
// serves until SIGINT/SIGTERM. Returns the exit status.
int serve(const ServeConfig& config);

}  // namespace bouquet::net
