// The server side of the protocol for one contiguous span of blocks, as a state machine.
//
// Promises:
// - Sessions: an OpenSession reserves batch x max_length cache tokens per block
//   (cache_admission.h). If the budget is taken it waits up to the client's
//   cache_wait_timeout_s (capped by cache_wait_max_s), then answers ErrorReply cache_full; a
//   request bigger than the whole budget fails at once. Reservations are returned on
//   CloseSession, after session_idle_timeout_s without a step (the client is told
//   session_closed), and when the transport reports the client unreachable.
// - Steps: one at a time per session; start_position may rewind (the cache is truncated there)
//   but never skip past the cached length or run past max_length. Replies carry the session's
//   reply_compression. Every bad request gets an ErrorReply naming what is wrong, and the server
//   goes on serving everyone else.
// - Compute: at most compute_slots computations in flight; queued work runs inference first,
//   then forward/backward, FIFO within each (task_queue.h). With max_batch above 1, queued decode
//   steps of different sessions run together as one StartBatch (continuous batching: whatever is
//   queued when a slot frees joins, up to max_batch rows). batch_wait_s above 0 holds a batch that
//   is not full until its oldest step has waited that long, but only while another session could
//   still join it: a lone session is never delayed. A session's cache is dropped (DropCache) only
//   when no compute on it is running.
// - Chunked prefill: a step of more rows than prefill_chunk (a long prompt, a replay) is computed
//   as successive chunks of its new tokens, each appended to the session's cache and queued behind
//   the steps that arrived meanwhile (task_queue.h), so decoders wait for one chunk, not the whole
//   prompt. The client still gets one StepResult with every position's output (or one ErrorReply:
//   a failed chunk fails that session's step only; the positions of the chunks before it stay
//   cached). A session closed or a client gone between or during chunks stops there and frees its
//   cache. Admission is unchanged: the open reserved the session's whole max_length.
// - Limits, all announced in InfoReply; a client is one peer as the transport reports
//   it (one connection). A forward/backward of more than request_tokens_max (batch x tokens) is
//   refused over_limit (the client splits to the announced cap). A client whose cache tokens
//   (held and waiting) would pass client_cache_tokens_max, that would have more than
//   client_opens_waiting_max opens waiting, or more than client_tasks_queued_max forward/backward
//   passes queued, and any forward/backward beyond tasks_queued_max queued in all, is refused
//   overloaded. An open costs O(log n) in the opens waiting.
// - While opens wait for cache room, a session without a step for session_idle_contended_s is
//   closed (session_closed), so one idle client cannot hold the cache for the full idle timeout.
// - Info: answered at once with the span, cache budget and what it has free.
// - Moving away (leave()): every session, waiting open and forward/backward, queued or running,
//   is answered span_not_served naming why, per session and request, so each client recovers
//   elsewhere at once instead of waiting for a timeout or a closed connection. A server without a
//   span (choosing or loading one) answers every request with refusal().
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/cache_admission.h"
#include "core/effect.h"
#include "core/input.h"
#include "core/server_record.h"
#include "core/task_queue.h"
#include "core/time.h"

namespace bouquet::core {

struct BlockServerConfig {
  std::string model_id;  // name and fingerprint; clients must name it exactly
  BlockSpan span;        // the blocks this server holds
  uint32_t hidden_size = 0;
  uint64_t cache_tokens = 0;             // attention-cache budget, tokens per block
  double session_idle_timeout_s = 300;   // close a session after this long without a step
  double cache_wait_max_s = 60;          // cap on the wait a client may ask for
  uint32_t max_length_limit = 1u << 20;  // largest max_length a session may ask for
  uint32_t compute_slots = 1;            // computations run at once
  uint32_t max_batch = 1;                // rows (batch x new tokens) one batched step may merge; 1 = off
  double batch_wait_s = 0;               // longest a step waits for others to join its batch
  // Rows (batch x new tokens) of one chunk of a longer step; 0 = never split; unset =
  // default_prefill_chunk(max_batch) (task_queue.h).
  std::optional<uint32_t> prefill_chunk;
  std::vector<std::string> adapters;  // adapter names it can apply
  std::string version = "bouquet 0.1";
  // Reported in InfoReply; measured by the driver (0 = unknown).
  double inference_rps = 0;
  double forward_rps = 0;
  double throughput_rps = 0;
  // Limits against greedy or hostile clients (see the promises above); 0 = none, the default
  // here (simulated swarms model well-behaved clients), while `bouquet serve` sets its own.
  uint32_t request_tokens_max = 0;       // batch x tokens of one forward or backward
  uint64_t client_cache_tokens_max = 0;  // per client
  uint32_t client_opens_waiting_max = 0;
  uint32_t client_tasks_queued_max = 0;
  uint32_t tasks_queued_max = 0;
  double session_idle_contended_s = 0;  // idle limit of a session while opens wait
};

class BlockServer {
 public:
  explicit BlockServer(BlockServerConfig config);

  void handle(Time now, const Input& in, std::vector<Effect>& out);

  const BlockServerConfig& config() const { return config_; }
  size_t open_sessions() const { return sessions_.size(); }
  size_t waiting_opens() const { return waiting_.size(); }
  size_t queued_tasks() const { return queue_.size(); }
  size_t running_tasks() const { return running_.size(); }
  size_t running_batches() const { return batch_left_.size(); }
  uint64_t cache_tokens_free() const { return admission_.tokens_free(); }
  // What the server announces of its load (server_record.h): sessions that stepped within the
  // last kActiveWindowS, the recent duration of its inference computations and the rows arriving
  // steps found ahead of them (moving averages; the rows queued now when none arrived lately).
  static constexpr double kActiveWindowS = 5;
  ServerLoad load(Time now) const;
  // The server stops serving its span: answers everything it holds span_not_served with `why`,
  // frees every cache and forgets every client. The driver then drops it (or keeps it for
  // nothing): results of computations still running are ignored.
  void leave(const std::string& why, std::vector<Effect>& out);
  // True while `peer` has a session, a waiting open or a computation here: its connection is in
  // use even when no bytes flow (a driver's idle-connection timeout spares it).
  bool holds_work(PeerId peer) const { return clients_.count(peer) != 0; }

 private:
  struct SessionKey {
    PeerId peer;
    uint64_t session_id = 0;
    friend auto operator<=>(const SessionKey&, const SessionKey&) = default;
  };
  struct Session {
    OpenSession open;
    uint64_t reserved_tokens = 0;
    CacheId cache_id = 0;
    uint32_t length = 0;         // positions cached
    std::optional<TaskId> task;  // the step queued or running
    bool closing = false;        // closed while its step runs: free when it finishes
    // A step computed in chunks: the inputs of the chunks still to queue and the outputs of those
    // done. Absent for a step computed at once.
    struct Chunks {
      uint64_t step_id = 0;
      uint32_t start_position = 0;  // of the whole step (it may rewind the cache)
      std::vector<Activation> inputs;
      size_t next = 0;             // the chunk to queue next
      uint32_t next_position = 0;  // where it starts
      std::vector<Activation> outputs;
      std::optional<Activation> prompts;
    };
    std::optional<Chunks> chunks;
    Time last_active = 0;
    TimerId idle_timer = 0;
  };
  struct WaitingOpen {
    PeerId peer;
    OpenSession open;
    TimerId timer = 0;
  };
  // What a running or queued task answers when it finishes.
  struct TaskOwner {
    PeerId peer;
    ComputeKind kind = ComputeKind::inference;
    SessionKey session;       // inference
    uint64_t step_id = 0;     // inference
    uint64_t request_id = 0;  // forward/backward
    Compression reply_compression = Compression::none;
    bool has_prompts = false;
    uint32_t start_position = 0;  // inference
    uint32_t new_tokens = 0;      // inference
  };
  // What one client holds or waits for, kept for its quotas; absent when all zero.
  struct ClientUsage {
    uint64_t cache_tokens = 0;  // reserved by its sessions and asked by its waiting opens
    uint32_t opens_waiting = 0;
    uint32_t tasks_queued = 0;   // any kind; the quota counts them for forward/backward
    uint32_t tasks_running = 0;  // any kind
    bool idle() const { return cache_tokens == 0 && opens_waiting == 0 && tasks_queued == 0 && tasks_running == 0; }
  };
  enum class TimerKind { cache_wait, idle, contended, batch_wait };
  struct TimerOwner {
    TimerKind kind;
    CacheAdmission::Ticket ticket = 0;  // cache_wait
    SessionKey session;                 // idle
  };

  void on_message(Time now, PeerId from, const Message& message, std::vector<Effect>& out);
  void on_open(Time now, PeerId from, const OpenSession& open, std::vector<Effect>& out);
  void on_step(Time now, PeerId from, const StepRequest& step, std::vector<Effect>& out);
  // Queues the computation of `inputs` at `start_position` of session `key`'s cache (a whole
  // step, or one chunk of it).
  void queue_step(PeerId from, SessionKey key, Session& s, uint64_t step_id, uint32_t start_position, Activation inputs,
                  std::optional<Activation> prompts, std::vector<Effect>& out);
  // Queues the next chunk of session `key`'s step, or answers the whole step once all are done.
  void next_chunk(PeerId peer, SessionKey key, Session& s, std::vector<Effect>& out);
  // Forgets the chunks of a step not queued yet (the step failed, or the session ends).
  void drop_chunks(Session& s);
  void on_close(PeerId from, uint64_t session_id, std::vector<Effect>& out);
  void on_forward(PeerId from, const ForwardRequest& request, std::vector<Effect>& out);
  void on_backward(PeerId from, const BackwardRequest& request, std::vector<Effect>& out);
  void on_info(PeerId from, const InfoRequest& request, std::vector<Effect>& out);
  void on_compute_finished(Time now, const ComputeFinished& done, std::vector<Effect>& out);
  void on_timer(Time now, TimerId timer, std::vector<Effect>& out);
  void on_peer_gone(PeerId peer, std::vector<Effect>& out);
  void on_contended(Time now, std::vector<Effect>& out);
  // Sets the contention timer if opens wait and it is not set: at the earliest time a session
  // could have been idle for session_idle_contended_s.
  void arm_contention(Time now, std::vector<Effect>& out);

  std::optional<Error> check_call(const std::string& model_id, BlockSpan span, const std::string& adapter) const;
  std::optional<Error> check_hidden(const Activation& a, const char* what) const;
  std::optional<Error> check_open_quota(PeerId from, uint64_t tokens) const;
  // The size cap and the queue quotas of a forward/backward.
  std::optional<Error> check_pass(PeerId from, const Activation& hidden_states) const;
  uint64_t client_cache_tokens_max() const;
  // Changes one client's books (a negative delta returns); forgets a client left with nothing.
  void count(PeerId peer, int64_t cache_tokens, int opens_waiting, int tasks_queued, int tasks_running);
  void admit(Time now, PeerId peer, const OpenSession& open, std::vector<Effect>& out);
  void close_session(SessionKey key, std::vector<Effect>& out);
  void free_session(SessionKey key, std::vector<Effect>& out);
  void admit_granted(Time now, std::vector<Effect>& out);
  // Forget a waiting open (its ticket already withdrawn from or granted by the admission);
  // unless granted, its tokens leave the client's books.
  WaitingOpen take_waiting(CacheAdmission::Ticket ticket, bool granted, std::vector<Effect>& out);
  void enqueue(ComputeRequest request, TaskOwner owner, std::vector<Effect>& out);
  void start_tasks(Time now, std::vector<Effect>& out);
  // Whether the batch the queue would start now should wait for more steps (batch_wait_s).
  bool hold_batch(Time now, const TaskQueue::BatchPreview& preview) const;
  TimerId new_timer(TimerOwner owner);
  static void reply_error(PeerId to, uint64_t request_id, uint64_t step_id, ErrorCode code, std::string message,
                          std::vector<Effect>& out);

  BlockServerConfig config_;
  CacheAdmission admission_;
  TaskQueue queue_;
  std::map<SessionKey, Session> sessions_;
  std::map<CacheAdmission::Ticket, WaitingOpen> waiting_;
  std::map<SessionKey, CacheAdmission::Ticket> waiting_by_session_;  // the same opens, by client
  std::unordered_map<TaskId, TaskOwner> owners_;                     // queued and running
  std::unordered_set<TaskId> running_;
  std::unordered_map<TaskId, uint64_t> batch_of_;  // running task -> its batch
  struct RunningBatch {
    uint32_t left = 0;  // tasks not finished
    uint64_t inference_rows = 0;
    Time started_at = 0;
    bool inference = false;
  };
  std::unordered_map<uint64_t, RunningBatch> batch_left_;  // by batch id
  double step_s_ = 0;                                      // moving average of inference computations
  uint64_t running_rows_ = 0;                              // inference rows of the running batches
  uint64_t unqueued_rows_ = 0;                             // rows of chunks not queued yet
  uint32_t prefill_chunk_ = 0;                             // rows; 0 = never split
  double rows_ahead_ = 0;                                  // moving average over arriving steps
  Time last_arrival_ = -kNever;                            // of an inference step
  std::unordered_map<TimerId, TimerOwner> timers_;
  std::unordered_map<PeerId, ClientUsage> clients_;  // only looked up, per message
  TimerId contention_timer_ = 0;                     // 0 = not set
  TimerId batch_timer_ = 0;                          // 0 = never needed yet; reused once allocated
  Time now_ = 0;                                     // the time of the input being handled
  uint64_t next_id_ = 1;                             // tickets, tasks, caches and timers share one counter
};

// What a server that holds no span yet (choosing or loading one) answers to `message`: an
// ErrorReply with `error` to the request or session it names, or nothing for a message that
// expects no answer (a close, a reply).
std::optional<ErrorReply> refusal(const Message& message, Error error);

}  // namespace bouquet::core
