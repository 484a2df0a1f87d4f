#include "sim/node_loop.h"

#include "sim/platform.h"

#include <simgrid/Exception.hpp>
#include <simgrid/s4u/Activity.hpp>
#include <simgrid/s4u/Actor.hpp>
#include <simgrid/s4u/Comm.hpp>
#include <simgrid/s4u/Engine.hpp>
#include <simgrid/s4u/Exec.hpp>
#include <simgrid/s4u/Mailbox.hpp>

#include <algorithm>
#include <memory>

namespace bouquet::sim {
namespace sg4 = simgrid::s4u;

namespace {
// SimGrid may wake a timed wait a hair before the deadline it was given.
constexpr double kClockSlack_s = 1e-9;
}  // namespace

NodeLoop::NodeLoop(Transport& transport, std::string host)
    : transport_(transport), host_(std::move(host)), self_(Transport::peer_of(host_)) {}

core::Time NodeLoop::now() { return sg4::Engine::get_clock(); }

void NodeLoop::set_timer(uint32_t component, uint64_t timer, core::Time when) {
  const auto key = std::make_pair(component, timer);
  const uint64_t seq = ++seq_;
  auto [it, fresh] = armed_.try_emplace(key, seq);
  if (!fresh) {
    it->second = seq;
    ++stale_;  // the deadline it had stays in the heap until it comes up or a compaction
  }
  push_deadline({when, seq, true, key, nullptr});
}

void NodeLoop::cancel_timer(uint32_t component, uint64_t timer) {
  stale_ += armed_.erase(std::make_pair(component, timer));
}

void NodeLoop::at(core::Time when, std::function<void()> fn) {
  push_deadline({when, ++seq_, false, {}, std::move(fn)});
}

bool NodeLoop::later(const Deadline& a, const Deadline& b) { return a.at != b.at ? a.at > b.at : a.seq > b.seq; }

bool NodeLoop::is_stale(const Deadline& d) const {
  if (!d.is_timer) return false;
  auto it = armed_.find(d.timer);
  return it == armed_.end() || it->second != d.seq;
}

void NodeLoop::push_deadline(Deadline deadline) {
  deadlines_.push_back(std::move(deadline));
  std::push_heap(deadlines_.begin(), deadlines_.end(), later);
  // Timers re-armed far ahead (a reply deadline moved at every step) would otherwise pile up.
  if (stale_ > 64 && 2 * stale_ > deadlines_.size()) {
    std::erase_if(deadlines_, [&](const Deadline& d) { return is_stale(d); });
    std::make_heap(deadlines_.begin(), deadlines_.end(), later);
    stale_ = 0;
  }
}

void NodeLoop::pop_stale() {
  while (!deadlines_.empty() && is_stale(deadlines_.front())) {
    std::pop_heap(deadlines_.begin(), deadlines_.end(), later);
    deadlines_.pop_back();
    if (stale_ > 0) --stale_;
  }
}

void NodeLoop::when_done(sg4::ActivityPtr activity, std::function<void()> on_done) {
  activities_.push_back(std::move(activity));
  on_done_.push_back(std::move(on_done));
}

void NodeLoop::compute(double seconds, std::function<void()> on_done) {
  when_done(sg4::this_actor::exec_async(std::max(0.0, seconds) * kHostSpeed), std::move(on_done));
}

void NodeLoop::fire_due() {
  for (;;) {
    // The earliest deadline (ties: the first scheduled) of a timer still armed as it was, or of a
    // function: a min-heap on (at, seq), deadlines of cancelled or moved timers skipped.
    pop_stale();
    if (deadlines_.empty() || deadlines_.front().at > now() + kClockSlack_s) return;
    std::pop_heap(deadlines_.begin(), deadlines_.end(), later);
    Deadline deadline = std::move(deadlines_.back());
    deadlines_.pop_back();
    if (deadline.is_timer) {
      armed_.erase(deadline.timer);
      on_timer(deadline.timer.first, deadline.timer.second);
    } else {
      deadline.fn();
    }
  }
}

void NodeLoop::run() {
  sg4::Mailbox* mailbox = sg4::Mailbox::by_name(host_);
  // A permanent receiver lets several messages flow in at once, sharing the down link, instead
  // of each waiting for the previous one to be taken.
  mailbox->set_receiver(sg4::Actor::self());
  Envelope* incoming = nullptr;
  sg4::CommPtr receive = mailbox->get_async<Envelope>(&incoming);
  on_start();
  fire_due();
  while (!finished()) {
    // fire_due() left the earliest deadline live on top.
    const core::Time next = deadlines_.empty() ? core::kNever : deadlines_.front().at;
    // Refilled in place: its capacity stays, so waiting allocates nothing per message.
    waiting_.clear();
    waiting_.push_back(receive);
    waiting_.insert(waiting_.end(), activities_.begin(), activities_.end());
    const double timeout = next == core::kNever ? -1.0 : std::max(0.0, next - now());
    ssize_t index = -1;
    try {
      index = sg4::Activity::wait_any_for(waiting_, timeout);
    } catch (const simgrid::NetworkFailureException&) {
      // A message whose sender's host went off mid-transfer (only the receive can fail: the other
      // activities run on this host, which is on): lost, and the sender's detached send frees
      // it. Listen again; whoever waited for it finds out by a timeout.
      incoming = nullptr;
      receive = mailbox->get_async<Envelope>(&incoming);
      fire_due();
      continue;
    }
    if (index == 0) {
      std::unique_ptr<Envelope> envelope(incoming);
      receive = mailbox->get_async<Envelope>(&incoming);
      if (envelope->reset) {
        on_reset(envelope->from);
      } else {
        on_message(envelope->from, envelope->message);
      }
    } else if (index > 0) {
      const size_t i = static_cast<size_t>(index - 1);
      std::function<void()> done = std::move(on_done_[i]);
      activities_.erase(activities_.begin() + static_cast<std::ptrdiff_t>(i));
      on_done_.erase(on_done_.begin() + static_cast<std::ptrdiff_t>(i));
      done();
    }
    fire_due();
  }
  receive->cancel();
  mailbox->set_receiver(nullptr);
}

}  // namespace bouquet::sim
