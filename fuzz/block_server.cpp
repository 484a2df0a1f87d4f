// Sequences of inputs to the core's BlockServer as hostile and clumsy clients make them: opens,
// steps, closes, forwards, backwards and info from four peers with colliding ids, disconnects,
// timers, and computations that finish (with the right shape or not) or fail. Every message
// goes through the wire first, as a real client's would. A BOUQUET_CHECK that fires is a crash:
// the server must answer anything a peer sends and keep its books.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "core/block_server.h"
#include "fuzz/support.h"

using namespace bouquet;
using namespace bouquet::core;

namespace {

constexpr uint32_t kHidden = 4;

Message client_message(FuzzedDataProvider& in) {
  const uint64_t id = in.ConsumeIntegralInRange<uint64_t>(0, 5);
  const std::string model = in.ConsumeBool() ? "m" : in.ConsumeRandomLengthString(4);
  switch (in.ConsumeIntegralInRange<int>(0, 5)) {
    case 0: {
      OpenSession o;
      o.session_id = id;
      o.model_id = model;
      o.span = fuzz::span(in, 4);
      o.max_length = in.ConsumeIntegralInRange<uint32_t>(0, 40);
      o.batch = in.ConsumeIntegralInRange<uint32_t>(0, 3);
      o.reply_compression = fuzz::compression(in);
      o.cache_wait_timeout_s = in.ConsumeFloatingPoint<double>();
      o.adapter = in.ConsumeBool() ? "" : in.ConsumeRandomLengthString(3);
      return o;
    }
    case 1: {
      StepRequest s;
      s.session_id = id;
      s.step_id = in.ConsumeIntegral<uint8_t>();
      s.start_position = in.ConsumeIntegralInRange<uint32_t>(0, 42);
      s.hidden_states = fuzz::activation(in, in.ConsumeIntegralInRange<uint32_t>(1, 2),
                                         in.ConsumeIntegralInRange<uint32_t>(1, 4), kHidden);
      return s;
    }
    case 2:
      return CloseSession{id};
    case 3: {
      ForwardRequest f;
      f.request_id = id;
      f.model_id = model;
      f.span = fuzz::span(in, 4);
      f.reply_compression = fuzz::compression(in);
      f.hidden_states = fuzz::activation(in, 1, in.ConsumeIntegralInRange<uint32_t>(1, 6), kHidden);
      return f;
    }
    case 4: {
      BackwardRequest b;
      b.request_id = id;
      b.model_id = model;
      b.span = fuzz::span(in, 4);
      const uint32_t tokens = in.ConsumeIntegralInRange<uint32_t>(1, 4);
      b.hidden_states = fuzz::activation(in, 1, tokens, kHidden);
      b.grad_outputs = fuzz::activation(in, 1, tokens, kHidden);
      return b;
    }
    default:
      return InfoRequest{id};
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  BlockServerConfig c;
  c.model_id = "m";
  c.span = {0, 4};
  c.hidden_size = kHidden;
  c.cache_tokens = in.ConsumeIntegralInRange<uint64_t>(0, 64);
  c.session_idle_timeout_s = in.ConsumeIntegralInRange<int>(1, 300);
  c.cache_wait_max_s = in.ConsumeIntegralInRange<int>(0, 60);
  c.max_length_limit = in.ConsumeIntegralInRange<uint32_t>(1, 64);
  c.compute_slots = in.ConsumeIntegralInRange<uint32_t>(1, 3);
  c.adapters = {"a"};
  if (in.ConsumeBool()) {  // the limits `bouquet serve` sets, small
    c.request_tokens_max = in.ConsumeIntegralInRange<uint32_t>(1, 8);
    c.client_cache_tokens_max = in.ConsumeIntegralInRange<uint64_t>(1, 64);
    c.client_opens_waiting_max = in.ConsumeIntegralInRange<uint32_t>(1, 3);
    c.client_tasks_queued_max = in.ConsumeIntegralInRange<uint32_t>(1, 3);
    c.tasks_queued_max = in.ConsumeIntegralInRange<uint32_t>(1, 5);
    c.session_idle_contended_s = in.ConsumeIntegralInRange<int>(1, 30);
  }
  BlockServer server(c);
  Time now = 0;
  std::map<TaskId, ComputeRequest> running;
  std::map<TimerId, Time> timers;
  std::vector<Effect> out;
  auto feed = [&](const Input& input) {
    out.clear();
    server.handle(now, input, out);
    for (auto& e : out) {
      if (auto* s = std::get_if<StartCompute>(&e))
        running[s->request.task_id] = s->request;
      else if (auto* t = std::get_if<SetTimer>(&e))
        timers[t->timer] = t->at;
      else if (auto* x = std::get_if<CancelTimer>(&e))
        timers.erase(x->timer);
    }
  };
  while (in.remaining_bytes() > 0) {
    const PeerId peer{in.ConsumeIntegralInRange<uint64_t>(1, 4)};
    switch (in.ConsumeIntegralInRange<int>(0, 4)) {
      case 0:
      case 1:
        if (auto m = fuzz::through_wire(client_message(in))) feed(MessageReceived{peer, std::move(*m)});
        break;
      case 2:
        feed(PeerUnreachable{peer, "fuzz"});
        break;
      case 3: {
        if (running.empty()) break;
        auto it = std::next(running.begin(), in.ConsumeIntegralInRange<size_t>(0, running.size() - 1));
        const ComputeRequest request = it->second;
        running.erase(it);
        ComputeFinished done{request.task_id};
        if (in.ConsumeBool()) {
          ComputeOutput output;
          output.outputs = request.inputs;  // the right shape: what a driver returns
          done.result = std::move(output);
        } else {
          done.result = Error{ErrorCode::compute_failed, "fuzz"};
        }
        feed(done);
        break;
      }
      default: {
        now += in.ConsumeIntegralInRange<int>(0, 400);
        std::vector<TimerId> due;
        for (const auto& [id, at] : timers) {
          if (at <= now) due.push_back(id);
        }
        for (TimerId id : due) {
          timers.erase(id);
          feed(TimerFired{id});
        }
      }
    }
  }
  return 0;
}
