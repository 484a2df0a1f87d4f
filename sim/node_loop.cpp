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
  armed_[key] = seq;
  deadlines_.push_back({when, seq, true, key, nullptr});
}

void NodeLoop::cancel_timer(uint32_t component, uint64_t timer) { armed_.erase(std::make_pair(component, timer)); }

void NodeLoop::at(core::Time when, std::function<void()> fn) {
  deadlines_.push_back({when, ++seq_, false, {}, std::move(fn)});
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
    // Drop deadlines of timers that were cancelled or moved.
    std::erase_if(deadlines_, [&](const Deadline& d) {
      if (!d.is_timer) return false;
      auto it = armed_.find(d.timer);
      return it == armed_.end() || it->second != d.seq;
    });
    auto due = std::min_element(deadlines_.begin(), deadlines_.end(), [](const auto& a, const auto& b) {
      return a.at != b.at ? a.at < b.at : a.seq < b.seq;
    });
    if (due == deadlines_.end() || due->at > now() + kClockSlack_s) return;
    Deadline deadline = std::move(*due);
    deadlines_.erase(due);
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
    core::Time next = core::kNever;
    for (const auto& d : deadlines_) next = std::min(next, d.at);
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
