#include "core/block_server.h"

#include <fmt/core.h>
#include <algorithm>
#include <cmath>

#include "core/positions.h"

namespace bouquet::core {

BlockServer::BlockServer(BlockServerConfig config)
    : config_(std::move(config)),
      admission_(config_.cache_tokens),
      prefill_chunk_(config_.prefill_chunk.value_or(default_prefill_chunk(config_.max_batch))) {
  BOUQUET_CHECK(!config_.span.empty(), "a server must hold at least one block");
  BOUQUET_CHECK(config_.compute_slots > 0, "a server needs at least one compute slot");
  BOUQUET_CHECK(config_.max_batch > 0, "a server's max_batch is at least 1");
  BOUQUET_CHECK(config_.batch_wait_s >= 0 && std::isfinite(config_.batch_wait_s), "batch_wait_s is finite, >= 0");
}

void BlockServer::handle(Time now, const Input& in, std::vector<Effect>& out) {
  now_ = now;
  if (auto* m = std::get_if<MessageReceived>(&in)) {
    on_message(now, m->from, m->message, out);
  } else if (auto* done = std::get_if<ComputeFinished>(&in)) {
    on_compute_finished(now, *done, out);
  } else if (auto* timer = std::get_if<TimerFired>(&in)) {
    on_timer(now, timer->timer, out);
  } else if (auto* gone = std::get_if<PeerUnreachable>(&in)) {
    on_peer_gone(gone->peer, out);
  }
  // Whatever freed cache room (a close, a timeout, a vanished client) lets waiters in.
  admit_granted(now, out);
  start_tasks(now, out);
  arm_contention(now, out);
}

void BlockServer::on_message(Time now, PeerId from, const Message& message, std::vector<Effect>& out) {
  std::visit(
      [&](const auto& m) {
        using M = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<M, OpenSession>)
          on_open(now, from, m, out);
        else if constexpr (std::is_same_v<M, StepRequest>)
          on_step(now, from, m, out);
        else if constexpr (std::is_same_v<M, CloseSession>)
          on_close(from, m.session_id, out);
        else if constexpr (std::is_same_v<M, ForwardRequest>)
          on_forward(from, m, out);
        else if constexpr (std::is_same_v<M, BackwardRequest>)
          on_backward(from, m, out);
        else if constexpr (std::is_same_v<M, InfoRequest>)
          on_info(from, m, out);
        else if constexpr (!std::is_same_v<M, ErrorReply>) {
          // A reply type sent to a server: answer so a confused peer learns why (never answer
          // an ErrorReply, or two confused peers would bounce errors forever).
          reply_error(from, 0, 0, ErrorCode::protocol,
                      fmt::format("a server does not accept {} messages", to_string(m.kType)), out);
        }
      },
      message);
}

std::optional<Error> BlockServer::check_call(const std::string& model_id, BlockSpan span,
                                             const std::string& adapter) const {
  if (model_id != config_.model_id) {
    return Error{ErrorCode::model_mismatch,
                 fmt::format("this server serves model '{}', not '{}'", config_.model_id, model_id)};
  }
  if (!config_.span.contains(span)) {
    return Error{ErrorCode::span_not_served,
                 fmt::format("blocks {} asked, this server holds {}", span.to_string(), config_.span.to_string())};
  }
  if (!adapter.empty() &&
      std::find(config_.adapters.begin(), config_.adapters.end(), adapter) == config_.adapters.end()) {
    return Error{ErrorCode::unknown_adapter, fmt::format("this server has no adapter '{}'", adapter)};
  }
  return std::nullopt;
}

std::optional<Error> BlockServer::check_hidden(const Activation& a, const char* what) const {
  if (a.shape.size() != 3 || a.shape[0] == 0 || a.shape[1] == 0 || a.shape[2] != config_.hidden_size) {
    std::string dims;
    for (uint32_t d : a.shape) dims += fmt::format("{}{}", dims.empty() ? "" : ", ", d);
    return Error{ErrorCode::bad_request,
                 fmt::format("{} has shape [{}], expected [batch, tokens, {}]", what, dims, config_.hidden_size)};
  }
  return std::nullopt;
}

void BlockServer::on_open(Time now, PeerId from, const OpenSession& open, std::vector<Effect>& out) {
  auto error = check_call(open.model_id, open.span, open.adapter);
  if (!error && (open.batch == 0 || open.max_length == 0 || open.max_length > config_.max_length_limit)) {
    error =
        Error{ErrorCode::bad_request, fmt::format("batch {} and max_length {} must be positive, max_length at most {}",
                                                  open.batch, open.max_length, config_.max_length_limit)};
  }
  const SessionKey key{from, open.session_id};
  const bool in_use = sessions_.count(key) != 0 || waiting_by_session_.count(key) != 0;
  if (!error && in_use) {
    error = Error{ErrorCode::bad_request, fmt::format("session {} is already open", open.session_id)};
  }
  if (error) {
    out.push_back(SendMessage{from, ErrorReply{open.session_id, 0, *error}});
    return;
  }
  const uint64_t tokens = uint64_t{open.batch} * open.max_length;
  if (tokens <= admission_.tokens_max()) {
    if (auto quota = check_open_quota(from, tokens)) {
      return reply_error(from, open.session_id, 0, quota->code, quota->message, out);
    }
  }
  const CacheAdmission::Ticket ticket = next_id_++;
  switch (admission_.request(ticket, tokens)) {
    case CacheAdmission::Outcome::granted:
      count(from, static_cast<int64_t>(tokens), 0, 0, 0);
      admit(now, from, open, out);
      return;
    case CacheAdmission::Outcome::never_fits:
      reply_error(from, open.session_id, 0, ErrorCode::cache_full,
                  fmt::format("session needs {} cache tokens per block, this server has {} in all", tokens,
                              admission_.tokens_max()),
                  out);
      return;
    case CacheAdmission::Outcome::waiting: {
      double wait_s = std::isfinite(open.cache_wait_timeout_s) ? open.cache_wait_timeout_s : 0.0;
      wait_s = std::clamp(wait_s, 0.0, config_.cache_wait_max_s);
      const TimerId timer = new_timer(TimerOwner{TimerKind::cache_wait, ticket, {}});
      waiting_.emplace(ticket, WaitingOpen{from, open, timer});
      waiting_by_session_.emplace(key, ticket);
      count(from, static_cast<int64_t>(tokens), 1, 0, 0);
      out.push_back(SetTimer{timer, now + wait_s});
      return;
    }
  }
}

std::optional<Error> BlockServer::check_open_quota(PeerId from, uint64_t tokens) const {
  const auto it = clients_.find(from);
  const ClientUsage usage = it == clients_.end() ? ClientUsage{} : it->second;
  const uint64_t quota = client_cache_tokens_max();
  if (quota > 0 && tokens > quota) {
    return Error{ErrorCode::over_limit, fmt::format("session needs {} cache tokens per block, one client may hold {} "
                                                    "(client_cache_tokens_max)",
                                                    tokens, quota)};
  }
  if (quota > 0 && usage.cache_tokens + tokens > quota) {
    return Error{ErrorCode::overloaded,
                 fmt::format("this client already holds or waits for {} cache tokens per block; {} more "
                             "would pass its quota of {} (client_cache_tokens_max)",
                             usage.cache_tokens, tokens, quota)};
  }
  if (!admission_.would_grant(tokens) && config_.client_opens_waiting_max > 0 &&
      usage.opens_waiting >= config_.client_opens_waiting_max) {
    return Error{ErrorCode::overloaded, fmt::format("this client already has {} opens waiting for cache room "
                                                    "(client_opens_waiting_max)",
                                                    usage.opens_waiting)};
  }
  return std::nullopt;
}

uint64_t BlockServer::client_cache_tokens_max() const {
  return std::min(config_.client_cache_tokens_max, admission_.tokens_max());
}

void BlockServer::count(PeerId peer, int64_t cache_tokens, int opens_waiting, int tasks_queued, int tasks_running) {
  ClientUsage& usage = clients_[peer];
  auto apply = [](auto& counter, int64_t delta) {
    BOUQUET_CHECK(delta >= 0 || static_cast<uint64_t>(-delta) <= counter, "client books went negative");
    counter = static_cast<std::remove_reference_t<decltype(counter)>>(static_cast<int64_t>(counter) + delta);
  };
  apply(usage.cache_tokens, cache_tokens);
  apply(usage.opens_waiting, opens_waiting);
  apply(usage.tasks_queued, tasks_queued);
  apply(usage.tasks_running, tasks_running);
  if (usage.idle()) clients_.erase(peer);
}

void BlockServer::admit(Time now, PeerId peer, const OpenSession& open, std::vector<Effect>& out) {
  const SessionKey key{peer, open.session_id};
  Session session;
  session.open = open;
  session.reserved_tokens = uint64_t{open.batch} * open.max_length;
  session.cache_id = next_id_++;
  session.last_active = now;
  session.idle_timer = new_timer(TimerOwner{TimerKind::idle, 0, key});
  out.push_back(SetTimer{session.idle_timer, now + config_.session_idle_timeout_s});
  sessions_.emplace(key, std::move(session));
  out.push_back(SendMessage{peer, SessionOpened{open.session_id, std::nullopt}});
}

void BlockServer::admit_granted(Time now, std::vector<Effect>& out) {
  for (CacheAdmission::Ticket ticket : admission_.take_granted()) {
    const WaitingOpen open = take_waiting(ticket, /*granted=*/true, out);
    admit(now, open.peer, open.open, out);
  }
}

BlockServer::WaitingOpen BlockServer::take_waiting(CacheAdmission::Ticket ticket, bool granted,
                                                   std::vector<Effect>& out) {
  auto it = waiting_.find(ticket);
  BOUQUET_CHECK(it != waiting_.end(), "no open waits on this ticket");
  WaitingOpen open = std::move(it->second);
  waiting_.erase(it);
  waiting_by_session_.erase(SessionKey{open.peer, open.open.session_id});
  out.push_back(CancelTimer{open.timer});
  timers_.erase(open.timer);
  const int64_t tokens = static_cast<int64_t>(uint64_t{open.open.batch} * open.open.max_length);
  count(open.peer, granted ? 0 : -tokens, -1, 0, 0);
  return open;
}

void BlockServer::on_step(Time now, PeerId from, const StepRequest& step, std::vector<Effect>& out) {
  auto it = sessions_.find(SessionKey{from, step.session_id});
  auto fail = [&](ErrorCode code, std::string message) {
    reply_error(from, step.session_id, step.step_id, code, std::move(message), out);
  };
  if (it == sessions_.end() || it->second.closing) {
    return fail(ErrorCode::unknown_session, fmt::format("no open session {}", step.session_id));
  }
  Session& s = it->second;
  if (s.task) {
    return fail(ErrorCode::session_busy, fmt::format("session {} has a step in progress", step.session_id));
  }
  if (auto error = check_hidden(step.hidden_states, "hidden_states")) return fail(error->code, error->message);
  const uint32_t batch = step.hidden_states.shape[0];
  const uint32_t tokens = step.hidden_states.shape[1];
  if (batch != s.open.batch) {
    return fail(ErrorCode::bad_request,
                fmt::format("hidden_states batch {} differs from the session's {}", batch, s.open.batch));
  }
  if (step.start_position > s.length) {
    return fail(ErrorCode::bad_position,
                fmt::format("start position {} skips past the {} cached positions", step.start_position, s.length));
  }
  if (uint64_t{step.start_position} + tokens > s.open.max_length) {
    return fail(ErrorCode::bad_position, fmt::format("positions up to {} exceed the session's max_length {}",
                                                     uint64_t{step.start_position} + tokens, s.open.max_length));
  }
  s.last_active = now;
  // What this step finds ahead of it, for the load the server announces.
  const double ahead = static_cast<double>(queue_.inference_rows() + running_rows_ + unqueued_rows_);
  rows_ahead_ = 0.9 * rows_ahead_ + 0.1 * ahead;
  last_arrival_ = now;
  const uint32_t chunk = chunk_tokens(batch, tokens, prefill_chunk_);
  if (chunk == tokens) {
    return queue_step(from, it->first, s, step.step_id, step.start_position, step.hidden_states, step.prompts, out);
  }
  Session::Chunks chunks;
  chunks.step_id = step.step_id;
  chunks.start_position = step.start_position;
  chunks.next_position = step.start_position;
  chunks.inputs = split_tokens(step.hidden_states, chunk);
  chunks.prompts = step.prompts;
  unqueued_rows_ += uint64_t{batch} * tokens;
  s.chunks = std::move(chunks);
  next_chunk(from, it->first, s, out);
}

void BlockServer::queue_step(PeerId from, SessionKey key, Session& s, uint64_t step_id, uint32_t start_position,
                             Activation inputs, std::optional<Activation> prompts, std::vector<Effect>& out) {
  ComputeRequest request;
  request.task_id = next_id_++;
  request.kind = ComputeKind::inference;
  request.span = s.open.span;
  request.batch = inputs.shape[0];
  request.new_tokens = inputs.shape[1];
  request.cache_length = start_position;
  request.cache_id = s.cache_id;
  request.max_length = s.open.max_length;
  request.adapter = s.open.adapter;
  request.inputs = std::move(inputs);
  request.prompts = std::move(prompts);
  request.output_compression = s.open.reply_compression;
  s.task = request.task_id;
  const TaskOwner owner{from,           ComputeKind::inference, key, step_id, 0, s.open.reply_compression, false,
                        start_position, request.new_tokens};
  enqueue(std::move(request), owner, out);
}

void BlockServer::next_chunk(PeerId peer, SessionKey key, Session& s, std::vector<Effect>& out) {
  Session::Chunks& chunks = *s.chunks;
  if (chunks.next < chunks.inputs.size()) {
    Activation inputs = std::move(chunks.inputs[chunks.next++]);
    unqueued_rows_ -= uint64_t{inputs.shape[0]} * inputs.shape[1];
    const uint32_t start = chunks.next_position;
    chunks.next_position += inputs.shape[1];
    return queue_step(peer, key, s, chunks.step_id, start, std::move(inputs), chunks.prompts, out);
  }
  StepResult result{key.session_id, chunks.step_id, chunks.start_position, concat_tokens(chunks.outputs)};
  result.hidden_states.compression = s.open.reply_compression;
  s.chunks.reset();
  out.push_back(SendMessage{peer, std::move(result)});
}

void BlockServer::drop_chunks(Session& s) {
  if (!s.chunks) return;
  for (size_t i = s.chunks->next; i < s.chunks->inputs.size(); ++i) {
    unqueued_rows_ -= uint64_t{s.chunks->inputs[i].shape[0]} * s.chunks->inputs[i].shape[1];
  }
  s.chunks.reset();
}

void BlockServer::on_close(PeerId from, uint64_t session_id, std::vector<Effect>& out) {
  const SessionKey key{from, session_id};
  if (auto w = waiting_by_session_.find(key); w != waiting_by_session_.end()) {
    const CacheAdmission::Ticket ticket = w->second;
    take_waiting(ticket, /*granted=*/false, out);
    admission_.cancel(ticket);
    return;
  }
  close_session(key, out);
}

void BlockServer::close_session(SessionKey key, std::vector<Effect>& out) {
  auto it = sessions_.find(key);
  if (it == sessions_.end()) return;
  Session& s = it->second;
  if (s.task && queue_.remove(*s.task)) {
    owners_.erase(*s.task);
    s.task.reset();
    count(key.peer, 0, 0, -1, 0);
  }
  if (s.task) {
    s.closing = true;  // its compute is running; the cache is dropped when it finishes
    return;
  }
  free_session(key, out);
}

void BlockServer::free_session(SessionKey key, std::vector<Effect>& out) {
  auto it = sessions_.find(key);
  BOUQUET_CHECK(it != sessions_.end(), "freeing an unknown session");
  out.push_back(CancelTimer{it->second.idle_timer});
  timers_.erase(it->second.idle_timer);
  out.push_back(DropCache{it->second.cache_id});
  drop_chunks(it->second);
  const uint64_t tokens = it->second.reserved_tokens;
  sessions_.erase(it);
  admission_.release(tokens);
  count(key.peer, -static_cast<int64_t>(tokens), 0, 0, 0);
}

void BlockServer::on_forward(PeerId from, const ForwardRequest& request, std::vector<Effect>& out) {
  auto error = check_call(request.model_id, request.span, request.adapter);
  if (!error) error = check_hidden(request.hidden_states, "hidden_states");
  if (!error) error = check_pass(from, request.hidden_states);
  if (error) return reply_error(from, request.request_id, 0, error->code, error->message, out);
  ComputeRequest compute;
  compute.task_id = next_id_++;
  compute.kind = ComputeKind::forward;
  compute.span = request.span;
  compute.batch = request.hidden_states.shape[0];
  compute.new_tokens = request.hidden_states.shape[1];
  compute.adapter = request.adapter;
  compute.inputs = request.hidden_states;
  compute.prompts = request.prompts;
  compute.output_compression = request.reply_compression;
  enqueue(std::move(compute),
          TaskOwner{from,
                    ComputeKind::forward,
                    {},
                    0,
                    request.request_id,
                    request.reply_compression,
                    request.prompts.has_value()},
          out);
}

void BlockServer::on_backward(PeerId from, const BackwardRequest& request, std::vector<Effect>& out) {
  auto error = check_call(request.model_id, request.span, request.adapter);
  if (!error) error = check_hidden(request.hidden_states, "hidden_states");
  if (!error && request.grad_outputs.shape != request.hidden_states.shape) {
    error = Error{ErrorCode::bad_request, "grad_outputs must have the shape of hidden_states"};
  }
  if (!error) error = check_pass(from, request.hidden_states);
  if (error) return reply_error(from, request.request_id, 0, error->code, error->message, out);
  ComputeRequest compute;
  compute.task_id = next_id_++;
  compute.kind = ComputeKind::backward;
  compute.span = request.span;
  compute.batch = request.hidden_states.shape[0];
  compute.new_tokens = request.hidden_states.shape[1];
  compute.adapter = request.adapter;
  compute.inputs = request.hidden_states;
  compute.grad_outputs = request.grad_outputs;
  compute.prompts = request.prompts;
  compute.output_compression = request.reply_compression;
  enqueue(std::move(compute),
          TaskOwner{from,
                    ComputeKind::backward,
                    {},
                    0,
                    request.request_id,
                    request.reply_compression,
                    request.prompts.has_value()},
          out);
}

std::optional<Error> BlockServer::check_pass(PeerId from, const Activation& hidden_states) const {
  const uint64_t tokens = uint64_t{hidden_states.shape[0]} * hidden_states.shape[1];
  if (config_.request_tokens_max > 0 && tokens > config_.request_tokens_max) {
    return Error{ErrorCode::over_limit,
                 fmt::format("hidden_states of {} x {} = {} tokens; this server takes at most {} per request "
                             "(request_tokens_max): split the batch",
                             hidden_states.shape[0], hidden_states.shape[1], tokens, config_.request_tokens_max)};
  }
  const auto it = clients_.find(from);
  const uint32_t queued = it == clients_.end() ? 0 : it->second.tasks_queued;
  if (config_.client_tasks_queued_max > 0 && queued >= config_.client_tasks_queued_max) {
    return Error{ErrorCode::overloaded,
                 fmt::format("this client already has {} computations queued (client_tasks_queued_max)", queued)};
  }
  if (config_.tasks_queued_max > 0 && queue_.size() >= config_.tasks_queued_max) {
    return Error{
        ErrorCode::overloaded,
        fmt::format("{} computations are queued here (tasks_queued_max); try later or another server", queue_.size())};
  }
  return std::nullopt;
}

void BlockServer::on_info(PeerId from, const InfoRequest& request, std::vector<Effect>& out) {
  InfoReply info;
  info.request_id = request.request_id;
  info.model_id = config_.model_id;
  info.span = config_.span;
  info.hidden_size = config_.hidden_size;
  info.version = config_.version;
  info.cache_tokens_max = admission_.tokens_max();
  info.cache_tokens_free = admission_.tokens_free();
  info.adapters = config_.adapters;
  info.inference_rps = config_.inference_rps;
  info.forward_rps = config_.forward_rps;
  info.throughput_rps = config_.throughput_rps;
  info.request_tokens_max = config_.request_tokens_max;
  info.client_cache_tokens_max = client_cache_tokens_max();
  info.client_opens_waiting_max = config_.client_opens_waiting_max;
  info.client_tasks_queued_max = config_.client_tasks_queued_max;
  info.tasks_queued_max = config_.tasks_queued_max;
  out.push_back(SendMessage{from, std::move(info)});
}

void BlockServer::enqueue(ComputeRequest request, TaskOwner owner, std::vector<Effect>& out) {
  owners_.emplace(request.task_id, owner);
  queue_.push(std::move(request), now_);
  count(owner.peer, 0, 0, 1, 0);
}

void BlockServer::start_tasks(Time now, std::vector<Effect>& out) {
  while (batch_left_.size() < config_.compute_slots) {
    const auto preview = queue_.preview_batch(config_.max_batch);
    if (preview.requests == 0) return;
    if (hold_batch(now, preview)) {
      if (batch_timer_ == 0) batch_timer_ = new_timer(TimerOwner{TimerKind::batch_wait, 0, {}});
      out.push_back(SetTimer{batch_timer_, preview.head_queued_at + config_.batch_wait_s});
      return;
    }
    std::vector<ComputeRequest> batch = queue_.pop_batch(config_.max_batch);
    const uint64_t batch_id = next_id_++;
    uint64_t rows = 0;  // inference rows, for the load announced
    for (const ComputeRequest& request : batch) {
      running_.insert(request.task_id);
      batch_of_.emplace(request.task_id, batch_id);
      count(owners_.at(request.task_id).peer, 0, 0, -1, 1);
      if (request.kind == ComputeKind::inference) rows += batch_rows(request);
    }
    running_rows_ += rows;
    batch_left_.emplace(batch_id, RunningBatch{static_cast<uint32_t>(batch.size()), rows, now,
                                               batch.front().kind == ComputeKind::inference});
    if (batch.size() == 1) {
      out.push_back(StartCompute{std::move(batch.front())});
    } else {
      out.push_back(StartBatch{std::move(batch)});
    }
  }
}

ServerLoad BlockServer::load(Time now) const {
  ServerLoad load;
  for (const auto& [key, s] : sessions_) {
    if (s.task || now - s.last_active <= kActiveWindowS) ++load.active_sessions;
  }
  load.step_s = step_s_;
  load.max_batch = config_.max_batch;
  // Without recent arrivals the average is stale (a server once busy would be avoided forever):
  // what is queued and running now is the answer.
  load.rows_ahead = now - last_arrival_ <= kActiveWindowS
                        ? rows_ahead_
                        : static_cast<double>(queue_.inference_rows() + running_rows_ + unqueued_rows_);
  return load;
}

bool BlockServer::hold_batch(Time now, const TaskQueue::BatchPreview& preview) const {
  if (config_.batch_wait_s <= 0 || !preview.batchable || preview.rows >= config_.max_batch) return false;
  if (now >= preview.head_queued_at + config_.batch_wait_s) return false;
  // Sessions that could still send a step to join: those with none queued (idle, or running on
  // another slot). With none, waiting only delays.
  size_t could_join = 0;
  for (const auto& [key, s] : sessions_) {
    if (!s.closing && (!s.task || running_.count(*s.task))) ++could_join;
  }
  return could_join > 0;
}

void BlockServer::on_compute_finished(Time now, const ComputeFinished& done, std::vector<Effect>& out) {
  auto owner_it = owners_.find(done.task_id);
  if (owner_it == owners_.end() || running_.erase(done.task_id) == 0) return;  // not ours
  if (auto b = batch_of_.find(done.task_id); b != batch_of_.end()) {
    auto left = batch_left_.find(b->second);
    if (left != batch_left_.end() && --left->second.left == 0) {  // its slot is free
      running_rows_ -= left->second.inference_rows;
      if (left->second.inference) {
        const double took = std::max(0.0, now - left->second.started_at);
        step_s_ = step_s_ > 0 ? 0.8 * step_s_ + 0.2 * took : took;
      }
      batch_left_.erase(left);
    }
    batch_of_.erase(b);
  }
  const TaskOwner owner = owner_it->second;
  owners_.erase(owner_it);
  count(owner.peer, 0, 0, 0, -1);
  if (owner.kind != ComputeKind::inference) {
    const uint64_t id = owner.request_id;
    if (!done.result.ok()) {
      return reply_error(owner.peer, id, 0, done.result.error().code, done.result.error().message, out);
    }
    Activation outputs = done.result.value().outputs;
    outputs.compression = owner.reply_compression;
    if (owner.kind == ComputeKind::forward) {
      out.push_back(SendMessage{owner.peer, ForwardResult{id, std::move(outputs), std::nullopt}});
    } else {
      auto grad_prompts = owner.has_prompts ? done.result.value().grad_prompts : std::nullopt;
      if (grad_prompts) grad_prompts->compression = owner.reply_compression;
      out.push_back(
          SendMessage{owner.peer, BackwardResult{id, std::move(outputs), std::move(grad_prompts), std::nullopt}});
    }
    return;
  }
  auto it = sessions_.find(owner.session);
  BOUQUET_CHECK(it != sessions_.end(), "an inference task outlived its session");
  Session& s = it->second;
  s.task.reset();
  s.last_active = now;
  if (s.closing) return free_session(owner.session, out);
  const uint64_t session_id = owner.session.session_id;
  if (!done.result.ok()) {
    // The cache may hold part of the step: only positions before it (before this chunk) are
    // trusted, and the next step's start position (its cache_length) truncates the rest.
    s.length = owner.start_position;
    drop_chunks(s);
    return reply_error(owner.peer, session_id, owner.step_id, done.result.error().code, done.result.error().message,
                       out);
  }
  s.length = owner.start_position + owner.new_tokens;
  Activation outputs = done.result.value().outputs;
  outputs.compression = owner.reply_compression;
  if (s.chunks) {
    s.chunks->outputs.push_back(std::move(outputs));
    return next_chunk(owner.peer, owner.session, s, out);
  }
  out.push_back(
      SendMessage{owner.peer, StepResult{session_id, owner.step_id, owner.start_position, std::move(outputs)}});
}

void BlockServer::on_timer(Time now, TimerId timer, std::vector<Effect>& out) {
  auto it = timers_.find(timer);
  if (it == timers_.end()) return;
  const TimerOwner owner = it->second;
  if (owner.kind == TimerKind::batch_wait) return;  // handle() then starts the batch it held
  if (owner.kind == TimerKind::contended) {
    timers_.erase(it);
    contention_timer_ = 0;
    return on_contended(now, out);
  }
  if (owner.kind == TimerKind::cache_wait) {
    if (waiting_.count(owner.ticket) == 0) {
      timers_.erase(it);
      return;
    }
    const WaitingOpen open = take_waiting(owner.ticket, /*granted=*/false, out);
    admission_.cancel(owner.ticket);
    reply_error(open.peer, open.open.session_id, 0, ErrorCode::cache_full,
                fmt::format("no room for {} cache tokens per block within {} s",
                            uint64_t{open.open.batch} * open.open.max_length,
                            std::clamp(open.open.cache_wait_timeout_s, 0.0, config_.cache_wait_max_s)),
                out);
    return;
  }
  auto s = sessions_.find(owner.session);
  if (s == sessions_.end()) return;
  const Time idle_until = s->second.last_active + config_.session_idle_timeout_s;
  if (s->second.task || now < idle_until) {  // busy, or active since the timer was set
    out.push_back(SetTimer{timer, s->second.task ? now + config_.session_idle_timeout_s : idle_until});
    return;
  }
  reply_error(owner.session.peer, owner.session.session_id, 0, ErrorCode::session_closed,
              fmt::format("session {} closed after {} s without a step", owner.session.session_id,
                          config_.session_idle_timeout_s),
              out);
  free_session(owner.session, out);
}

void BlockServer::on_contended(Time now, std::vector<Effect>& out) {
  if (admission_.waiting() == 0) return;
  std::vector<SessionKey> idle;
  for (const auto& [key, s] : sessions_) {
    // The same sum arm_contention() set the timer for, so rounding cannot keep a due session alive.
    if (!s.task && !s.closing && now >= s.last_active + config_.session_idle_contended_s) idle.push_back(key);
  }
  for (const SessionKey& key : idle) {
    reply_error(key.peer, key.session_id, 0, ErrorCode::session_closed,
                fmt::format("session {} closed after {} s without a step while other clients wait for cache room",
                            key.session_id, config_.session_idle_contended_s),
                out);
    free_session(key, out);
  }
}

void BlockServer::arm_contention(Time now, std::vector<Effect>& out) {
  if (contention_timer_ != 0 || admission_.waiting() == 0) return;
  // Only a limit shorter than the ordinary idle timeout changes anything.
  if (!(config_.session_idle_contended_s > 0 && config_.session_idle_contended_s < config_.session_idle_timeout_s))
    return;
  // O(sessions), but only when the timer is re-set: once per contended idle period, not per open.
  std::optional<Time> earliest;
  for (const auto& [key, s] : sessions_) {
    if (s.closing) continue;
    const Time at = (s.task ? now : s.last_active) + config_.session_idle_contended_s;
    if (!earliest || at < *earliest) earliest = at;
  }
  if (!earliest) return;  // nothing holds the cache that could be evicted
  contention_timer_ = new_timer(TimerOwner{TimerKind::contended, 0, {}});
  out.push_back(SetTimer{contention_timer_, std::max(*earliest, now)});
}

void BlockServer::on_peer_gone(PeerId peer, std::vector<Effect>& out) {
  // Withdrawing one of its waiting opens may grant the next one, possibly also this peer's: the
  // admission takes back a granted ticket that nobody collected yet, so each is cancelled alike.
  const SessionKey first{peer, 0};
  std::vector<CacheAdmission::Ticket> tickets;
  for (auto w = waiting_by_session_.lower_bound(first); w != waiting_by_session_.end() && w->first.peer == peer; ++w) {
    tickets.push_back(w->second);
  }
  for (auto ticket : tickets) {
    take_waiting(ticket, /*granted=*/false, out);
    admission_.cancel(ticket);
  }
  std::vector<SessionKey> keys;
  for (auto s = sessions_.lower_bound(first); s != sessions_.end() && s->first.peer == peer; ++s) {
    keys.push_back(s->first);
  }
  for (const auto& key : keys) close_session(key, out);
  // Queued forward/backward work for a vanished client would only produce undeliverable replies.
  std::vector<TaskId> orphans;
  for (const auto& [task, owner] : owners_) {
    if (owner.peer == peer && owner.kind != ComputeKind::inference && !running_.count(task)) {
      orphans.push_back(task);
    }
  }
  for (TaskId task : orphans) {
    queue_.remove(task);
    owners_.erase(task);
    count(peer, 0, 0, -1, 0);
  }
}

void BlockServer::leave(const std::string& why, std::vector<Effect>& out) {
  const Error error{ErrorCode::span_not_served, why};
  std::vector<CacheAdmission::Ticket> tickets;
  for (const auto& [ticket, waiting] : waiting_) tickets.push_back(ticket);
  for (auto ticket : tickets) {
    const WaitingOpen w = take_waiting(ticket, /*granted=*/false, out);
    admission_.cancel(ticket);
    out.push_back(SendMessage{w.peer, ErrorReply{w.open.session_id, 0, error}});
  }
  // Step id 0: the error concerns the session itself, whatever step it has in flight.
  for (const auto& [key, session] : sessions_)
    out.push_back(SendMessage{key.peer, ErrorReply{key.session_id, 0, error}});
  for (const auto& [task, owner] : owners_) {
    if (owner.kind != ComputeKind::inference)
      out.push_back(SendMessage{owner.peer, ErrorReply{owner.request_id, 0, error}});
  }
  for (const auto& [id, session] : sessions_) {
    // A cache with a step running on it goes with the compute the driver drops (never dropped
    // under a running computation); the driver ignores that step's result.
    if (!session.task || !running_.count(*session.task)) out.push_back(DropCache{session.cache_id});
    admission_.release(session.reserved_tokens);
  }
  for (const auto& [id, owner] : timers_) out.push_back(CancelTimer{id});
  sessions_.clear();
  waiting_by_session_.clear();
  queue_ = TaskQueue{};
  owners_.clear();
  running_.clear();
  batch_of_.clear();
  batch_left_.clear();
  running_rows_ = 0;
  unqueued_rows_ = 0;
  timers_.clear();
  clients_.clear();
  contention_timer_ = 0;
  batch_timer_ = 0;
}

std::optional<ErrorReply> refusal(const Message& message, Error error) {
  return std::visit(
      [&](const auto& m) -> std::optional<ErrorReply> {
        using M = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<M, OpenSession>) return ErrorReply{m.session_id, 0, std::move(error)};
        if constexpr (std::is_same_v<M, StepRequest>) return ErrorReply{m.session_id, m.step_id, std::move(error)};
        if constexpr (std::is_same_v<M, InfoRequest> || std::is_same_v<M, ForwardRequest> ||
                      std::is_same_v<M, BackwardRequest>) {
          return ErrorReply{m.request_id, 0, std::move(error)};
        }
        return std::nullopt;
      },
      message);
}

TimerId BlockServer::new_timer(TimerOwner owner) {
  const TimerId id = next_id_++;
  timers_.emplace(id, owner);
  return id;
}

void BlockServer::reply_error(PeerId to, uint64_t request_id, uint64_t step_id, ErrorCode code, std::string message,
                              std::vector<Effect>& out) {
  out.push_back(SendMessage{to, ErrorReply{request_id, step_id, Error{code, std::move(message)}}});
}

}  // namespace bouquet::core
