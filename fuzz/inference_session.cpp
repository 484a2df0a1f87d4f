// Sequences of inputs to the core's InferenceSession as lying, slow and vanishing servers make
// them: replies for the right or a wrong session and step, of the right or a wrong shape, errors,
// disconnects, deadlines, and routes (valid chains over up to 5 peers, or no route) for every
// plan the session asks, under each recovery policy. The generation loop's side keeps the API's
// preconditions (a step only when ready, within max_length), as a real driver does; every
// server message goes through the wire first. A BOUQUET_CHECK that fires is a crash.
#include <fuzzer/FuzzedDataProvider.h>

#include <map>
#include <vector>

#include "core/inference_session.h"
#include "fuzz/support.h"

using namespace bouquet;
using namespace bouquet::core;

namespace {

constexpr uint32_t kBlocks = 6, kHidden = 4, kMaxLength = 12;

Chain chain_over(FuzzedDataProvider& in, BlockSpan blocks) {
  Chain chain;
  uint32_t at = blocks.begin;
  while (at < blocks.end) {
    const uint32_t end = in.ConsumeIntegralInRange<uint32_t>(at + 1, blocks.end);
    chain.push_back(Hop{PeerId{in.ConsumeIntegralInRange<uint64_t>(1, 5)}, BlockSpan{at, end}});
    at = end;
  }
  return chain;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  InferenceSessionConfig c;
  c.session_id = 1000;
  c.model_id = "m";
  c.num_blocks = kBlocks;
  c.hidden_size = kHidden;
  c.max_length = kMaxLength;
  c.batch = in.ConsumeIntegralInRange<uint32_t>(1, 2);
  c.compression = fuzz::compression(in);
  c.recovery = static_cast<RecoveryPolicy>(in.ConsumeIntegralInRange<int>(0, 3));
  c.max_step_tokens = in.ConsumeIntegralInRange<uint32_t>(0, 3);
  c.cache_wait_timeout_s = 5;
  c.reply_timeout_s = 2;
  c.recovery_deadline_s = in.ConsumeIntegralInRange<int>(0, 30);
  RttEstimator rtt;
  ServerSpeeds speeds(rtt);
  c.speeds = &speeds;
  InferenceSession session(c);
  Time now = 0;
  Time timer_at = kNever;
  std::vector<PlanRoute> plans;
  std::vector<std::pair<PeerId, Message>> sent;  // what the session sent, for plausible replies
  std::vector<Effect> out;
  auto feed = [&](const Input& input) {
    out.clear();
    session.handle(now, input, out);
    for (auto& e : out) {
      if (auto* p = std::get_if<PlanRoute>(&e))
        plans.push_back(*p);
      else if (auto* s = std::get_if<SendMessage>(&e))
        sent.emplace_back(s->to, s->message);
      else if (auto* t = std::get_if<SetTimer>(&e))
        timer_at = t->at;
      else if (std::holds_alternative<CancelTimer>(e))
        timer_at = kNever;
    }
  };
  feed(OpenRequested{});
  while (in.remaining_bytes() > 0) {
    const auto phase = session.phase();
    if (phase == InferenceSession::Phase::closed || phase == InferenceSession::Phase::failed) break;
    switch (in.ConsumeIntegralInRange<int>(0, 7)) {
      case 0: {  // a planner answers one of the plans asked
        if (plans.empty()) break;
        const PlanRoute plan = plans[in.ConsumeIntegralInRange<size_t>(0, plans.size() - 1)];
        RoutePlanned r{plan.route_id};
        if (in.ConsumeIntegralInRange<int>(0, 5) > 0) r.chain = chain_over(in, plan.blocks);
        feed(r);
        break;
      }
      case 1:
      case 2: {  // a server answers something the session sent, faithfully or not
        if (sent.empty()) break;
        const auto& [peer, message] = sent[in.ConsumeIntegralInRange<size_t>(0, sent.size() - 1)];
        const PeerId from =
            in.ConsumeIntegralInRange<int>(0, 7) > 0 ? peer : PeerId{in.ConsumeIntegralInRange<uint64_t>(1, 5)};
        Message reply = InfoRequest{0};
        if (auto* open = std::get_if<OpenSession>(&message)) {
          if (in.ConsumeBool())
            reply = SessionOpened{open->session_id};
          else
            reply = ErrorReply{open->session_id, 0, Error{ErrorCode::cache_full, "fuzz"}};
        } else if (auto* step = std::get_if<StepRequest>(&message)) {
          const uint32_t tokens = step->hidden_states.shape.size() == 3 ? step->hidden_states.shape[1] : 1;
          switch (in.ConsumeIntegralInRange<int>(0, 3)) {
            case 0:
              reply = ErrorReply{step->session_id, step->step_id, Error{ErrorCode::timeout, "fuzz"}};
              break;
            case 1:
              reply = StepResult{step->session_id, in.ConsumeIntegralInRange<uint64_t>(0, 9),
                                 in.ConsumeIntegralInRange<uint32_t>(0, kMaxLength),
                                 fuzz::activation(in, c.batch, tokens, kHidden)};
              break;
            default:
              reply = StepResult{step->session_id, step->step_id, step->start_position,
                                 fuzz::activation(in, c.batch, tokens, kHidden)};
          }
        } else {
          break;
        }
        if (auto m = fuzz::through_wire(reply)) feed(MessageReceived{from, std::move(*m)});
        break;
      }
      case 3:
        feed(PeerUnreachable{PeerId{in.ConsumeIntegralInRange<uint64_t>(1, 5)}, "fuzz"});
        break;
      case 4:  // time passes; the armed deadline fires
        now += in.ConsumeIntegralInRange<int>(0, 40);
        if (timer_at <= now) {
          timer_at = kNever;
          feed(TimerFired{InferenceSession::kDeadlineTimer});
        }
        break;
      case 5:
      case 6: {  // the generation loop asks a step, rewinding or not, within max_length
        if (phase != InferenceSession::Phase::ready) break;
        const uint32_t start =
            in.ConsumeBool() ? session.length() : in.ConsumeIntegralInRange<uint32_t>(0, session.length());
        if (start >= kMaxLength) break;
        const uint32_t tokens = in.ConsumeIntegralInRange<uint32_t>(1, kMaxLength - start);
        std::vector<float> values(size_t{c.batch} * tokens * kHidden, 0.5f);
        feed(StepRequested{make_activation({c.batch, tokens, kHidden}, values), start});
        break;
      }
      default:
        feed(CloseRequested{});
    }
  }
  return 0;
}
