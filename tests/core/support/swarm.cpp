#include "tests/core/support/swarm.h"

#include <algorithm>
#include <limits>

#include <fmt/core.h>

#include "core/check.h"
#include "core/route.h"
#include "core/wire.h"

namespace bouquet::test {

using namespace core;

namespace {
// The component id of a balanced server's BalancerNode (its timers); a server's BlockServer is
// component server_generation, so a previous span's timers and computations are recognised.
constexpr size_t kBalancer = std::numeric_limits<size_t>::max();
}  // namespace

struct VirtualSwarm::Node {
  PeerId id;
  bool alive = true;
  std::unique_ptr<BlockServer> server;  // null on a client, and on a balanced server without a span
  // A balanced server (add_balanced_server): its balancer, the config of each span's BlockServer,
  // the span loaded, moves started (a later one cancels an earlier one still loading).
  std::unique_ptr<BalancerNode> balancer;
  BlockServerConfig server_template;
  double load_s_per_block = 0;
  size_t server_generation = 0;
  std::optional<BlockSpan> loaded;
  uint64_t moves = 0;
  std::vector<BlockSpan> spans;
  bool is_server() const { return server != nullptr || balancer != nullptr; }
  double compute_s_per_token_block = 0;
  std::map<CacheId, FakeCache> caches;
  std::vector<size_t> generations;  // client components, by generation index
  std::map<std::pair<size_t, TimerId>, Time> timers;
  std::set<PeerId> contacts;
  std::vector<ComputeKind> started;
  uint64_t inference_steps = 0;
  uint64_t batches = 0;
  uint64_t step_replies = 0;
  std::optional<std::pair<uint64_t, CrashPoint>> crash_step;
  std::optional<std::pair<uint64_t, float>> lie;  // honest steps, then the scale of every output
  uint64_t lie_counted = 0;                       // inference steps and forwards answered so far
  std::vector<std::pair<PeerId, Message>> inbox;
};

struct VirtualSwarm::Generation {
  size_t index = 0;
  PeerId client;
  GenerationSpec spec;
  std::unique_ptr<InferenceSession> session;
  GenerationResult result;
  uint32_t last_step_tokens = 0;
  uint64_t attempt = 0;  // restart_from_scratch: steps requested for an earlier attempt are dropped
  // A pass instead of a generation.
  std::unique_ptr<PassSession> pass;
  PassSpec pass_spec;
  PassResult pass_result;
};

namespace {

std::vector<float> pass_inputs(const PassSpec& spec) {
  return fake_prompt(spec.input_seed, spec.batch, spec.tokens, spec.pass.hidden_size);
}
std::vector<float> pass_grad(const PassSpec& spec) {
  return fake_prompt(spec.input_seed ^ 0x9a9a, spec.batch, spec.tokens, spec.pass.hidden_size);
}

}  // namespace

PassResult reference_pass(const PassSpec& spec) {
  const auto& c = spec.pass;
  PassResult r;
  r.outputs = fake_span_forward(BlockSpan{0, c.num_blocks}, spec.batch, spec.tokens, c.hidden_size, pass_inputs(spec),
                                nullptr, 0);
  if (spec.backward) {
    r.grad_inputs = fake_span_backward(BlockSpan{0, c.num_blocks}, spec.batch, spec.tokens, c.hidden_size,
                                       pass_inputs(spec), pass_grad(spec));
  }
  r.done = true;
  return r;
}

std::vector<std::vector<float>> reference_outputs(const GenerationSpec& spec) {
  const auto& s = spec.session;
  FakeCache cache;
  std::vector<std::vector<float>> outputs;
  auto x = fake_prompt(spec.prompt_seed, s.batch, spec.prompt_tokens, s.hidden_size);
  uint32_t length = 0, tokens = spec.prompt_tokens;
  for (uint32_t step = 0; step <= spec.new_tokens; ++step) {
    outputs.push_back(fake_span_forward(BlockSpan{0, s.num_blocks}, s.batch, tokens, s.hidden_size, x, &cache, length));
    length += tokens;
    x = fake_next_input(outputs.back(), s.batch, tokens, s.hidden_size);
    tokens = 1;
  }
  return outputs;
}

VirtualSwarm::VirtualSwarm(uint64_t seed) : rng_(seed) {}
VirtualSwarm::~VirtualSwarm() = default;

const GenerationResult& VirtualSwarm::result(size_t generation) const { return generations_.at(generation)->result; }

const InferenceSession& VirtualSwarm::session(size_t generation) const { return *generations_.at(generation)->session; }

PeerId VirtualSwarm::add_server(BlockServerConfig config, double compute_s_per_token_block) {
  auto n = std::make_unique<Node>();
  n->id = PeerId{rng_.next_u64()};
  ServerRecord record;
  record.peer = n->id;
  record.span = config.span;
  record.model_id = config.model_id;
  record.throughput_rps = config.throughput_rps;
  record.inference_rps = config.inference_rps;
  record.cache_tokens_free = config.cache_tokens;
  records_.push_back(record);
  n->server = std::make_unique<BlockServer>(std::move(config));
  n->compute_s_per_token_block = compute_s_per_token_block;
  const PeerId id = n->id;
  nodes_.emplace(id, std::move(n));
  return id;
}

PeerId VirtualSwarm::add_client() {
  auto n = std::make_unique<Node>();
  n->id = PeerId{rng_.next_u64()};
  const PeerId id = n->id;
  nodes_.emplace(id, std::move(n));
  return id;
}

void VirtualSwarm::use_directory(DirectoryModel model) { directory_ = model; }

PeerId VirtualSwarm::add_balanced_server(BalancerNodeConfig balancer, BlockServerConfig server, Time start_at,
                                         double compute_s_per_token_block, double load_s_per_block) {
  BOUQUET_CHECK(directory_.has_value(), "a balanced server needs the directory (use_directory)");
  auto n = std::make_unique<Node>();
  n->id = PeerId{rng_.next_u64()};
  balancer.peer = n->id;
  if (balancer.seed == 0) balancer.seed = rng_.next_u64();
  n->balancer = std::make_unique<BalancerNode>(std::move(balancer));
  n->server_template = std::move(server);
  n->compute_s_per_token_block = compute_s_per_token_block;
  n->load_s_per_block = load_s_per_block;
  const PeerId id = n->id;
  nodes_.emplace(id, std::move(n));
  schedule(start_at, [this, id] {
    Node& m = node(id);
    if (!m.alive) return;
    std::vector<Effect> effects;
    m.balancer->start(now_, effects);
    carry_out(id, kBalancer, effects);
  });
  return id;
}

void VirtualSwarm::stop_at(PeerId server, Time at) {
  schedule(at, [this, server] {
    Node& n = node(server);
    if (!n.alive) return;
    if (n.balancer) {
      std::vector<Effect> effects;
      n.balancer->stop(now_, effects);
      carry_out(server, kBalancer, effects);
    }
    if (n.server) {
      std::vector<Effect> effects;
      n.server->leave("the server is shutting down", effects);
      carry_out(server, n.server_generation, effects);
    }
    crash(server);  // the process exits: its connections reset after what it sent
  });
}

const BalancerNode& VirtualSwarm::balancer(PeerId server) const {
  const auto& n = *nodes_.at(server);
  BOUQUET_CHECK(n.balancer != nullptr, "not a balanced server");
  return *n.balancer;
}

const std::vector<BlockSpan>& VirtualSwarm::spans_served(PeerId server) const { return nodes_.at(server)->spans; }

void VirtualSwarm::announce(const ServerRecord& record) {
  std::erase_if(directory_entries_, [&](const DirectoryEntry& e) { return e.record.expires_at <= now_; });
  directory_entries_.push_back({now_ + directory_->announce_delay_s, ++directory_seq_, record});
}

std::vector<ServerRecord> VirtualSwarm::directory_records(const std::string& model_id) const {
  std::vector<AnnouncedRecord> visible;
  for (const DirectoryEntry& e : directory_entries_) {
    if (e.visible_at > now_ || e.record.expires_at <= now_ || e.record.model_id != model_id) continue;
    visible.push_back({e.record, Announcement{e.visible_at, e.seq}});
  }
  return newest_per_peer(visible);
}

std::vector<ServerRecord> VirtualSwarm::records_for(const std::string& model_id) const {
  if (!directory_) return records_;
  std::vector<ServerRecord> out;
  for (const ServerRecord& r : records_) {
    if (r.model_id == model_id) out.push_back(r);
  }
  for (ServerRecord& r : directory_records(model_id)) out.push_back(std::move(r));
  return out;
}

void VirtualSwarm::feed_balancer(PeerId id, const Input& input) {
  Node& n = node(id);
  if (!n.alive) return;
  n.balancer->set_cache_tokens_free(n.server ? n.server->cache_tokens_free() : 0);
  n.balancer->set_load(n.server ? n.server->load(now_) : ServerLoad{});
  std::vector<Effect> effects;
  n.balancer->handle(now_, input, effects);
  carry_out(id, kBalancer, effects);
}

void VirtualSwarm::move_to(PeerId id, BlockSpan span) {
  Node& n = node(id);
  // The old span keeps serving while the new blocks load (those both spans share are kept).
  uint32_t kept = 0;
  if (n.loaded) {
    const uint32_t begin = std::max(n.loaded->begin, span.begin);
    const uint32_t end = std::min(n.loaded->end, span.end);
    kept = end > begin ? end - begin : 0;
  }
  const uint64_t move = ++n.moves;
  schedule(now_ + n.load_s_per_block * (span.size() - kept), [this, id, span, move] {
    Node& m = node(id);
    if (!m.alive || move != m.moves) return;  // crashed, or moved again meanwhile
    if (m.server) {
      std::vector<Effect> effects;
      m.server->leave(fmt::format("the server moved to blocks {}", span.to_string()), effects);
      carry_out(id, m.server_generation, effects);
      if (!m.alive) return;
    }
    m.caches.clear();
    m.loaded = span;
    m.spans.push_back(span);
    BlockServerConfig c = m.server_template;
    c.span = span;
    m.server = std::make_unique<BlockServer>(std::move(c));
    ++m.server_generation;
    feed_balancer(id, SpanLoaded{span});
  });
}

void VirtualSwarm::set_link(PeerId a, PeerId b, Link link) {
  links_[{a, b}] = link;
  links_[{b, a}] = link;
}

Link VirtualSwarm::link(PeerId from, PeerId to) const {
  auto it = links_.find({from, to});
  return it == links_.end() ? default_link_ : it->second;
}

VirtualSwarm::Node& VirtualSwarm::node(PeerId peer) {
  auto it = nodes_.find(peer);
  BOUQUET_CHECK(it != nodes_.end(), "unknown node");
  return *it->second;
}

BlockServer& VirtualSwarm::server(PeerId peer) {
  auto& n = node(peer);
  BOUQUET_CHECK(n.server != nullptr, "not a server, or one without a span yet");
  return *n.server;
}

bool VirtualSwarm::alive(PeerId peer) const { return nodes_.at(peer)->alive; }

const std::vector<ComputeKind>& VirtualSwarm::computes_started(PeerId server) const {
  return nodes_.at(server)->started;
}

uint64_t VirtualSwarm::batches_started(PeerId server) const { return nodes_.at(server)->batches; }

const std::vector<std::pair<PeerId, Message>>& VirtualSwarm::inbox(PeerId n) const { return nodes_.at(n)->inbox; }

size_t VirtualSwarm::train(PeerId client, PassSpec spec) {
  const size_t index = generations_.size();
  auto g = std::make_unique<Generation>();
  g->index = index;
  g->client = client;
  g->pass_spec = spec;
  g->pass = std::make_unique<PassSession>(spec.pass);
  generations_.push_back(std::move(g));
  node(client).generations.push_back(index);
  const Activation x = make_activation({spec.batch, spec.tokens, spec.pass.hidden_size}, pass_inputs(spec));
  schedule(spec.start_at, [this, client, index, x] { feed(client, index, ForwardRequested{x, std::nullopt}); });
  return index;
}

const PassResult& VirtualSwarm::pass_result(size_t pass) const { return generations_.at(pass)->pass_result; }

const PassSession& VirtualSwarm::pass_session(size_t pass) const { return *generations_.at(pass)->pass; }

size_t VirtualSwarm::generate(PeerId client, GenerationSpec spec) {
  const size_t index = generations_.size();
  auto g = std::make_unique<Generation>();
  g->index = index;
  g->client = client;
  g->spec = spec;
  g->session = std::make_unique<InferenceSession>(spec.session);
  generations_.push_back(std::move(g));
  node(client).generations.push_back(index);
  schedule(spec.start_at, [this, client, index] { feed(client, index, OpenRequested{}); });
  return index;
}

void VirtualSwarm::crash_at(PeerId n, Time at) {
  schedule(at, [this, n] { crash(n); });
}

void VirtualSwarm::lie_after_steps(PeerId server, uint64_t honest, float scale) {
  node(server).lie = std::make_pair(honest, scale);
}

void VirtualSwarm::crash_at_step(PeerId server, uint64_t k, CrashPoint point) {
  node(server).crash_step = std::make_pair(k, point);
}

void VirtualSwarm::inject(PeerId from, PeerId to, Message message) { transmit(from, to, message); }

void VirtualSwarm::schedule(Time at, std::function<void()> fn) {
  events_.push(Event{std::max(at, now_), seq_++, std::move(fn)});
}

void VirtualSwarm::run_until(Time t) {
  while (!events_.empty() && events_.top().at <= t) {
    Event e = events_.top();
    events_.pop();
    now_ = e.at;
    e.run();
  }
  now_ = std::max(now_, t);
}

void VirtualSwarm::run(uint64_t max_events) {
  for (uint64_t n = 0; !events_.empty(); ++n) {
    BOUQUET_CHECK(n < max_events, "virtual swarm: too many events (a livelock?)");
    Event e = events_.top();
    events_.pop();
    now_ = e.at;
    e.run();
  }
}

void VirtualSwarm::feed(PeerId id, size_t component, const Input& input) {
  Node& n = node(id);
  if (!n.alive) return;
  if (n.balancer && component == kBalancer) return feed_balancer(id, input);
  std::vector<Effect> effects;
  if (n.is_server()) {
    if (!n.server || component != n.server_generation) return;  // a previous span's timer or result
    n.server->handle(now_, input, effects);
  } else if (auto& g = *generations_.at(component); g.pass) {
    g.pass->handle(now_, input, effects);
  } else {
    g.session->handle(now_, input, effects);
  }
  carry_out(id, component, effects);
}

// Counted in replies, as `serve --lie-after-steps` does: a step computed in chunks is one step.
void VirtualSwarm::lie_if_drilled(Node& n, Message& message) {
  Activation* outputs = nullptr;
  if (auto* step = std::get_if<StepResult>(&message)) outputs = &step->hidden_states;
  if (auto* forward = std::get_if<ForwardResult>(&message)) outputs = &forward->hidden_states;
  if (!n.lie || !outputs || ++n.lie_counted <= n.lie->first) return;
  std::vector<float> values = outputs->to_floats();
  for (float& v : values) v *= n.lie->second;
  *outputs = make_activation(outputs->shape, std::move(values), outputs->dtype, outputs->compression);
}

void VirtualSwarm::carry_out(PeerId id, size_t component, std::vector<Effect>& effects) {
  for (auto& effect : effects) {
    Node& n = node(id);
    if (!n.alive) return;  // crashed while carrying out an earlier effect
    if (auto* send = std::get_if<SendMessage>(&effect)) {
      if (n.server) lie_if_drilled(n, send->message);
      transmit(id, send->to, send->message);
      if (n.server && std::holds_alternative<StepResult>(send->message)) {
        ++n.step_replies;
        if (n.crash_step && n.crash_step->second == CrashPoint::after_reply && n.crash_step->first == n.step_replies) {
          crash(id);
        }
      }
    } else if (auto* set = std::get_if<SetTimer>(&effect)) {
      const auto key = std::make_pair(component, set->timer);
      const Time at = set->at;
      n.timers[key] = at;
      schedule(at, [this, id, component, key, at] {
        Node& m = node(id);
        auto it = m.timers.find(key);
        if (!m.alive || it == m.timers.end() || it->second != at) return;
        m.timers.erase(it);
        feed(id, component, TimerFired{key.second});
      });
    } else if (auto* cancel = std::get_if<CancelTimer>(&effect)) {
      n.timers.erase({component, cancel->timer});
    } else if (auto* compute = std::get_if<StartCompute>(&effect)) {
      start_compute(id, {compute->request});
    } else if (auto* batch = std::get_if<StartBatch>(&effect)) {
      start_compute(id, batch->requests);
    } else if (auto* drop = std::get_if<DropCache>(&effect)) {
      n.caches.erase(drop->cache_id);
    } else if (auto* plan = std::get_if<PlanRoute>(&effect)) {
      // With a directory, the client looks the swarm up first: the plan reads what was visible
      // when it asked and arrives a lookup later.
      const std::vector<ServerRecord> records = records_for(plan->model_id);
      RoutePlanned answer{plan->route_id, plan_route(routing_for(*plan, routing_), records, *plan,
                                                     PlannerContext{now_, nullptr, nullptr, &rng_})};
      const Time at = now_ + (directory_ ? directory_->lookup_delay_s : 0.0);
      schedule(at, [this, id, component, answer] { feed(id, component, answer); });
    } else if (auto* record = std::get_if<Announce>(&effect)) {
      BOUQUET_CHECK(directory_.has_value(), "an announcement without a directory");
      announce(record->record);
    } else if (auto* lookup = std::get_if<DirectoryLookup>(&effect)) {
      DirectoryAnswer answer{lookup->lookup_id, records_for(lookup->model_id)};
      schedule(now_ + directory_->lookup_delay_s, [this, id, answer] { feed(id, kBalancer, answer); });
    } else if (auto* move = std::get_if<MoveToSpan>(&effect)) {
      move_to(id, move->span);
    } else if (generations_.at(component)->pass) {
      on_pass_report(*generations_.at(component), effect);
    } else {
      on_session_report(*generations_.at(component), effect);
    }
  }
}

void VirtualSwarm::on_pass_report(Generation& g, const Effect& effect) {
  PassResult& r = g.pass_result;
  if (auto* forward = std::get_if<ForwardDone>(&effect)) {
    r.outputs = forward->outputs.to_floats();
    if (!g.pass_spec.backward) {
      r.done = true;
      r.finished_at = now_;
      return;
    }
    const auto& spec = g.pass_spec;
    const Activation grad = make_activation({spec.batch, spec.tokens, spec.pass.hidden_size}, pass_grad(spec));
    schedule(now_, [this, client = g.client, component = g.index, grad] {
      feed(client, component, BackwardRequested{grad});
    });
  } else if (auto* backward = std::get_if<BackwardDone>(&effect)) {
    r.grad_inputs = backward->grad_inputs.to_floats();
    r.done = true;
    r.finished_at = now_;
  } else if (auto* failed = std::get_if<PassFailed>(&effect)) {
    r.error = failed->error;
    r.finished_at = now_;
  }
}

void VirtualSwarm::on_session_report(Generation& g, const Effect& effect) {
  const auto& s = g.spec.session;
  const PeerId client = g.client;
  const size_t component = g.index;
  auto request = [this, &g, client, component](Activation hidden_states) {
    schedule(now_, [this, &g, client, component, hidden_states, attempt = g.attempt] {
      if (attempt == g.attempt) feed(client, component, StepRequested{hidden_states, std::nullopt});
    });
  };
  if (auto* ready = std::get_if<SessionReady>(&effect)) {
    g.result.ready = true;
    g.result.ready_at = now_;
    g.result.chain = ready->chain;
    g.last_step_tokens = g.spec.prompt_tokens;
    request(make_activation({s.batch, g.spec.prompt_tokens, s.hidden_size},
                            fake_prompt(g.spec.prompt_seed, s.batch, g.spec.prompt_tokens, s.hidden_size)));
  } else if (auto* done = std::get_if<StepDone>(&effect)) {
    g.result.outputs.push_back(done->outputs.to_floats());
    if (g.result.outputs.size() <= g.spec.new_tokens) {
      auto next = fake_next_input(g.result.outputs.back(), s.batch, g.last_step_tokens, s.hidden_size);
      g.last_step_tokens = 1;
      request(make_activation({s.batch, 1, s.hidden_size}, std::move(next)));
    } else {
      schedule(now_, [this, client, component] { feed(client, component, CloseRequested{}); });
    }
  } else if (std::holds_alternative<SessionRestarted>(effect)) {
    // Everything generated is lost; the next SessionReady starts again from the prompt.
    ++g.attempt;
    ++g.result.restarts;
    g.result.outputs.clear();
  } else if (auto* failed = std::get_if<SessionFailed>(&effect)) {
    g.result.error = failed->error;
    g.result.finished_at = now_;
  } else if (std::holds_alternative<SessionClosed>(effect)) {
    g.result.closed = true;
    g.result.finished_at = now_;
  }
}

void VirtualSwarm::start_compute(PeerId id, const std::vector<ComputeRequest>& requests) {
  Node& n = node(id);
  // A batch reads the weights once: it takes as long as its largest member alone would.
  double duration_s = 0;
  for (const ComputeRequest& request : requests) {
    duration_s =
        std::max(duration_s, n.compute_s_per_token_block * request.batch * request.new_tokens * request.span.size());
  }
  std::vector<ComputeFinished> results;
  for (const ComputeRequest& request : requests) {
    n.started.push_back(request.kind);
    if (request.kind == ComputeKind::inference) {
      ++n.inference_steps;
      if (n.crash_step && n.crash_step->second == CrashPoint::before_reply &&
          n.crash_step->first == n.inference_steps) {
        schedule(now_ + duration_s, [this, id] { crash(id); });
        return;
      }
    }
    FakeCache* cache = request.kind == ComputeKind::inference ? &n.caches[request.cache_id] : nullptr;
    results.push_back(ComputeFinished{request.task_id, fake_compute(request, n.server->config().hidden_size, cache)});
  }
  if (requests.size() > 1) ++n.batches;
  schedule(now_ + duration_s, [this, id, results, generation = n.server_generation] {
    for (const ComputeFinished& done : results) feed(id, generation, done);
  });
}

void VirtualSwarm::transmit(PeerId from, PeerId to, const Message& message) {
  if (!node(from).alive) return;
  const auto bytes = encode(message);
  BOUQUET_CHECK(bytes.size() == encoded_size(message), "encoded_size() differs from the real bytes");
  ++messages_sent_;
  bytes_sent_ += bytes.size();
  node(from).contacts.insert(to);
  for (const auto& drop : drops_) {
    if (drop(from, to, message, now_)) {
      ++messages_dropped_;
      return;
    }
  }
  if (drop_probability_ > 0 && rng_.bernoulli(drop_probability_)) {
    ++messages_dropped_;
    return;
  }
  double extra_s = 0;
  for (const auto& [predicate, delay_s] : delays_) {
    if (predicate(from, to, message, now_)) extra_s += delay_s;
  }
  const Link l = link(from, to);
  Time& busy_until = link_busy_until_[{from, to}];
  const Time start = std::max(now_, busy_until);
  busy_until = start + static_cast<double>(bytes.size()) * 8.0 / l.bandwidth_bps;
  schedule(busy_until + l.latency_s + extra_s, [this, from, to, bytes] { deliver(from, to, bytes); });
}

void VirtualSwarm::deliver(PeerId from, PeerId to, const std::vector<uint8_t>& bytes) {
  Node& receiver = node(to);
  if (!receiver.alive) {
    if (notify_peers_on_crash) {
      schedule(now_ + link(to, from).latency_s, [this, from, to] { peer_unreachable(from, to, "connection refused"); });
    }
    return;
  }
  receiver.contacts.insert(from);
  auto decoded = decode(bytes);
  BOUQUET_CHECK(decoded.ok(), "a message the core encoded did not decode");
  if (receiver.is_server() && !receiver.server) {
    // Still choosing or loading its first span: the sender is told at once.
    const Error error{ErrorCode::span_not_served, "this server is still choosing its blocks"};
    if (auto reply = refusal(decoded.value(), error)) transmit(to, from, *reply);
    return;
  }
  if (receiver.server) return feed(to, receiver.server_generation, MessageReceived{from, decoded.value()});
  receiver.inbox.emplace_back(from, decoded.value());
  for (size_t g : std::vector<size_t>(receiver.generations)) feed(to, g, MessageReceived{from, decoded.value()});
}

void VirtualSwarm::peer_unreachable(PeerId id, PeerId lost, std::string reason) {
  Node& n = node(id);
  if (!n.alive) return;
  PeerUnreachable input{lost, reason};
  if (n.is_server()) return feed(id, n.server_generation, input);
  for (size_t g : std::vector<size_t>(n.generations)) feed(id, g, input);
}

void VirtualSwarm::crash(PeerId id) {
  Node& n = node(id);
  if (!n.alive) return;
  n.alive = false;
  n.timers.clear();
  n.caches.clear();
  if (!notify_peers_on_crash) return;
  for (PeerId peer : n.contacts) {
    // Like a TCP reset: it arrives after whatever the node had already sent on that link.
    const auto busy = link_busy_until_.find({id, peer});
    const Time sent_by = busy == link_busy_until_.end() ? now_ : std::max(now_, busy->second);
    schedule(sent_by + link(id, peer).latency_s, [this, peer, id] { peer_unreachable(peer, id, "connection reset"); });
  }
}

}  // namespace bouquet::test
