#include "net/client/swarm_client.h"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>

#include "core/check.h"
#include "core/planners.h"

namespace bouquet::net {

using core::Error;
using core::ErrorCode;
using core::PeerId;

SwarmClient::SwarmClient(SwarmClientConfig config)
    : config_(std::move(config)),
      network_(
          io_, ClientNetworkConfig{config_.connect_timeout_s, 30, config_.limits},
          [this](PeerId peer, core::Message message) { on_message(peer, std::move(message)); },
          [this](PeerId peer, const std::string& reason) { on_lost(peer, reason); }) {
  if (config_.peers.empty()) throw std::invalid_argument("no peers given");
  for (const auto& text : config_.peers) {
    const HostPort address = parse_host_port(text);
    peers_.push_back(PeerStatus{network_.add_peer(address), address.to_string(), std::nullopt, ""});
  }
  for (const auto& [text, ids] : config_.identities)
    identities_[parse_host_port(text).to_string()].insert(ids.begin(), ids.end());
}

SwarmClient::~SwarmClient() {
  network_.close_all();
  // Let the closes reach the servers (a FIN) before the sockets go away with the io_context.
  io_.restart();
  io_.poll();
}

std::string SwarmClient::address_of(PeerId peer) const { return network_.address(peer).to_string(); }

const std::vector<PeerStatus>& SwarmClient::discover() {
  std::map<uint64_t, size_t> asked;  // request id -> index in peers_
  for (size_t i = 0; i < peers_.size(); ++i) {
    const uint64_t id = next_request_id();
    pending_[id] = Pending{peers_[i].peer, std::nullopt, std::nullopt, clock_.now(), 0};
    asked[id] = i;
    send(peers_[i].peer, core::InfoRequest{id});  // challenged: the answer pins the address
  }
  auto all_answered = [&] {
    for (const auto& [id, i] : asked) {
      const Pending& p = pending_.at(id);
      if (!p.reply && !p.error) return false;
    }
    return true;
  };
  run_until(all_answered, config_.connect_timeout_s + config_.request_timeout_s);
  for (const auto& [id, i] : asked) {
    Pending& p = pending_.at(id);
    PeerStatus& status = peers_[i];
    status.info.reset();
    status.error.clear();
    if (p.reply && std::holds_alternative<core::InfoReply>(*p.reply)) {
      status.info = std::get<core::InfoReply>(*p.reply);
      // The first answer includes the TCP connect: a round trip and a half, close enough.
      rtt_.observe(status.peer, std::max(0.0, p.answered_at - p.sent_at));
    } else if (p.error) {
      status.error = p.error->to_string();
    } else if (p.reply) {
      status.error = fmt::format("answered info with {}", core::to_string(core::message_type(*p.reply)));
    } else {
      status.error = fmt::format("no answer to info within {} s", config_.request_timeout_s);
    }
    pending_.erase(id);
  }
  drop_identities_of_other_keys();
  if (config_.directory) ping_answered_peers();
  discovered_ = true;
  return peers_;
}

void SwarmClient::ping_answered_peers() {
  // Min-latency routing prices hops by RTT; the first answer above also paid for the TCP connect,
  // so time one more info exchange on the open connections and keep that sample only.
  std::map<uint64_t, PeerId> asked;
  for (const PeerStatus& status : peers_) {
    if (!status.info) continue;
    const uint64_t id = next_request_id();
    pending_[id] = Pending{status.peer, std::nullopt, std::nullopt, clock_.now(), 0};
    asked[id] = status.peer;
    network_.send(status.peer, core::InfoRequest{id});
  }
  run_until(
      [&] {
        for (const auto& [id, peer] : asked) {
          if (!pending_.at(id).reply && !pending_.at(id).error) return false;
        }
        return true;
      },
      config_.request_timeout_s);
  for (const auto& [id, peer] : asked) {
    const Pending& p = pending_.at(id);
    if (p.reply) {
      rtt_.forget(peer);
      rtt_.observe(peer, std::max(0.0, p.answered_at - p.sent_at));
    }
    pending_.erase(id);
  }
}

core::RoutePlanned SwarmClient::plan_route(const core::PlanRoute& plan, core::Routing configured, core::Rng& rng) {
  const bool reads = plan.read_directory && has_directory();
  if (reads) {
    take_directory_read(0);  // an earlier read's answer, if it is in
    start_directory_read();
  }
  auto planned = [&] {
    const auto known = records();
    return core::plan_route(core::routing_for(plan, configured), known, plan,
                            core::PlannerContext{clock_.now(), &rtt_, &speeds_, &rng});
  };
  auto chain = planned();
  if (reads && core::waits_for_directory(plan, chain) && take_directory_read(kDirectoryReadWaitS)) chain = planned();
  return core::RoutePlanned{plan.route_id, std::move(chain)};
}

void SwarmClient::start_directory_read() {
  if (!config_.directory || reading_.valid()) return;
  reading_ = std::async(std::launch::async, config_.directory);
}

bool SwarmClient::take_directory_read(double wait_s) {
  if (!reading_.valid()) return false;
  if (reading_.wait_for(std::chrono::duration<double>(wait_s)) != std::future_status::ready) {
    if (wait_s > 0) {
      fmt::print(stderr, "bouquet: the directory did not answer within {:.0f} s; routing with what is known\n", wait_s);
    }
    return false;
  }
  std::vector<core::ServerRecord> fresh;
  try {
    fresh = reading_.get();  // the future is empty from here on: the next read may start
  } catch (const std::exception& e) {
    fmt::print(stderr, "bouquet: could not read the directory ({}); routing with what is known\n", e.what());
    return false;
  }
  std::vector<core::ServerRecord> spelled;  // addresses as peers_ spell them, as pins_ are keyed
  for (core::ServerRecord& record : fresh) {
    try {
      record.address = parse_host_port(record.address).to_string();
    } catch (const std::exception&) {
      continue;  // the directory already skips malformed records; an odd address is not routable
    }
    spelled.push_back(std::move(record));
  }
  std::vector<core::ServerRecord> mapped;
  for (core::ServerRecord& record : keep_pinned(std::move(spelled))) {
    const std::string& text = record.address;
    auto it = std::find_if(peers_.begin(), peers_.end(), [&](const PeerStatus& p) { return p.address == text; });
    if (it == peers_.end()) {
      peers_.push_back(PeerStatus{network_.add_peer(parse_host_port(text)), text, std::nullopt, ""});
      it = std::prev(peers_.end());
    }
    // Never asked who it is (new to this client): ask now, so that the next read is filtered too;
    // until then the challenge at session open guards it.
    if (config_.challenge_identity && !pins_.contains(text)) ask_to_pin(it->peer);
    identities_[text].insert(record.peer);
    record.peer = it->peer;
    mapped.push_back(std::move(record));
  }
  directory_records_ = std::move(mapped);
  return true;
}

std::vector<core::ServerRecord> SwarmClient::records() const {
  if (directory_records_) return *directory_records_;
  std::vector<core::ServerRecord> records;
  for (const PeerStatus& status : peers_) {
    if (!status.info) continue;
    const core::InfoReply& info = *status.info;
    // What a server said about itself is what a directory record would say; an answer is the
    // proof it is online now.
    records.push_back(core::ServerRecord{status.peer, status.address, info.span, core::ServerState::online,
                                         info.throughput_rps, info.inference_rps, info.cache_tokens_free, info.model_id,
                                         info.version, info.adapters, core::kNever,
                                         core::ServerLoad{}});  // no load in an answer
  }
  return records;
}

core::Message SwarmClient::call(PeerId peer, core::Message request, double timeout_s) {
  const uint64_t id = next_request_id();
  std::visit(
      [&](auto& m) {
        using M = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<M, core::InfoRequest> || std::is_same_v<M, core::ForwardRequest> ||
                      std::is_same_v<M, core::BackwardRequest>) {
          m.request_id = id;
        } else {
          BOUQUET_CHECK(false, "SwarmClient::call takes info, forward and backward requests");
        }
      },
      request);
  const std::string what(core::to_string(core::message_type(request)));
  pending_[id] = Pending{peer, std::nullopt, std::nullopt, clock_.now(), 0};
  send(peer, std::move(request));
  run_until([&] { return pending_.at(id).reply || pending_.at(id).error; }, timeout_s);
  Pending p = std::move(pending_.at(id));
  pending_.erase(id);
  challenges_.erase({peer, id});  // unanswered: its proof, should it come, is moot
  const std::string who = fmt::format("server {}", address_of(peer));
  if (p.error) throw RemoteError(Error{p.error->code, fmt::format("{}: {}", who, p.error->message)});
  if (!p.reply) {
    throw RemoteError(Error{ErrorCode::timeout, fmt::format("{}: no answer to {} within {} s", who, what, timeout_s)});
  }
  return std::move(*p.reply);
}

size_t SwarmClient::add_listener(Listener listener) {
  listeners_[next_listener_] = std::move(listener);
  return next_listener_++;
}

void SwarmClient::remove_listener(size_t id) { listeners_.erase(id); }

bool SwarmClient::run_until(const std::function<bool()>& done, double timeout_s) {
  const auto deadline = clock_.at(clock_.now() + timeout_s);
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    if (io_.stopped()) io_.restart();
    // Bounded waits: the loop re-checks the deadline even when no event comes.
    const size_t ran =
        io_.run_one_until(std::min(deadline, std::chrono::steady_clock::now() + std::chrono::milliseconds(200)));
    if (ran == 0 && io_.stopped()) return done();  // nothing in flight: nothing can change
  }
  return true;
}

void SwarmClient::on_message(PeerId peer, core::Message message) {
  if (auto why = check_proof(peer, message)) return refuse(peer, *why);
  uint64_t request_id = 0;
  if (auto* info = std::get_if<core::InfoReply>(&message)) request_id = info->request_id;
  if (auto* fwd = std::get_if<core::ForwardResult>(&message)) request_id = fwd->request_id;
  if (auto* bwd = std::get_if<core::BackwardResult>(&message)) request_id = bwd->request_id;
  if (auto* err = std::get_if<core::ErrorReply>(&message)) request_id = err->request_id;
  if (pinning_.erase(request_id) > 0) return;  // ask_to_pin's: check_proof pinned the address
  if (auto it = pending_.find(request_id); it != pending_.end() && it->second.peer == peer) {
    it->second.answered_at = clock_.now();
    if (auto* err = std::get_if<core::ErrorReply>(&message))
      it->second.error = err->error;
    else
      it->second.reply = std::move(message);
    return;
  }
  const core::Input input = core::MessageReceived{peer, std::move(message)};
  for (auto& [id, listener] : std::map<size_t, Listener>(listeners_)) listener(input);
}

void SwarmClient::on_lost(PeerId peer, const std::string& reason) {
  challenges_.erase(challenges_.lower_bound({peer, 0}), challenges_.upper_bound({peer, UINT64_MAX}));
  for (auto& [id, p] : pending_) {
    if (p.peer == peer && !p.reply && !p.error) p.error = Error{ErrorCode::peer_unreachable, reason};
  }
  const core::Input input = core::PeerUnreachable{peer, reason};
  for (auto& [id, listener] : std::map<size_t, Listener>(listeners_)) listener(input);
}

}  // namespace bouquet::net
