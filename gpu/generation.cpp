#include "gpu/generation.h"

#include "gpu/client_head.h"
#include "gpu/errors.h"
#include "gpu/span_runner.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>

namespace bouquet::gpu {
namespace {

void check_chain(const ClientHead& head, std::span<SpanRunner* const> spans) {
  int64_t next = 0;
  for (const SpanRunner* span : spans) {
    if (span->first_block() != next) {
      throw InputError(
          fmt::format("spans do not chain: a span starts at block {}, expected {}", span->first_block(), next));
    }
    if (span->hidden_size() != head.model_config().hidden_size) {
      throw InputError("a span's hidden size differs from the client head's");
    }
    next = span->end_block();
  }
  if (next != head.model_config().num_layers) {
    throw InputError(fmt::format("spans cover blocks [0, {}) of {}", next, head.model_config().num_layers));
  }
}

// Owns one session on every span for the length of a generation, closing it even on error.
class ChainSession final : public GenerationSteps {
 public:
  ChainSession(std::span<SpanRunner* const> spans, int64_t max_length, const std::string& adapter) : spans_(spans) {
    for (const SpanRunner* span : spans) {
      while (span->has_session(id_)) ++id_;
    }
    for (size_t i = 0; i < spans.size(); ++i) {
      try {
        spans[i]->open_session(id_, 1, max_length, adapter);
      } catch (...) {
        for (size_t j = 0; j < i; ++j) spans[j]->close_session(id_);  // e.g. an unknown adapter
        throw;
      }
    }
  }
  ~ChainSession() override {
    for (SpanRunner* span : spans_) span->close_session(id_);
  }
  at::Tensor step(const at::Tensor& hidden) override {
    at::Tensor x = hidden;
    for (SpanRunner* span : spans_) x = span->step(id_, x);
    return x;
  }

 private:
  std::span<SpanRunner* const> spans_;
  SessionId id_ = 0;
};

}  // namespace

TokenSink every_token(const std::function<void(TokenId)>& on_token) {
  if (!on_token) return {};
  return [on_token](TokenId id) {
    on_token(id);
    return true;
  };
}

void check_request(const GenerationRequest& request) {
  if (request.prompt_ids.empty()) throw InputError("the prompt has no tokens");
  if (request.max_new_tokens < 0) throw InputError("max new tokens must be >= 0");
  if (request.prompt_cached < 0 || request.prompt_cached >= static_cast<int64_t>(request.prompt_ids.size())) {
    throw InputError(fmt::format("{} cached prompt positions of {}: at least one must be fed", request.prompt_cached,
                                 request.prompt_ids.size()));
  }
}

GenerationResult empty_generation(const GenerationRequest& request) {
  check_request(request);
  GenerationResult result;
  result.prompt_ids = request.prompt_ids;
  result.stop_reason = "max_new_tokens";
  return result;
}

GenerationResult run_generation(const ClientHead& head, GenerationSteps& steps, const GenerationRequest& request,
                                const TokenSink& on_token) {
  GenerationResult result = empty_generation(request);
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  auto first_token = start;
  size_t streamed = 0;  // ids handed to on_token: a restarted generation does not repeat them
  int64_t cached = request.prompt_cached;
  for (bool done = request.max_new_tokens == 0; !done;) {
    Sampler sampler(request.sampling);
    std::vector<TokenId> history = request.prompt_ids;
    result.ids.clear();
    result.stop_reason = "max_new_tokens";
    try {
      at::Tensor hidden =
          head.embed(std::vector<TokenId>(request.prompt_ids.begin() + cached, request.prompt_ids.end()));
      for (int64_t n = 0; n < request.max_new_tokens; ++n) {
        const at::Tensor out = steps.step(hidden);
        const TokenId next = sampler.next(head.last_logits(out), history);
        if (n == 0) first_token = Clock::now();
        history.push_back(next);
        result.ids.push_back(next);
        if (on_token && result.ids.size() > streamed) {
          ++streamed;
          if (!on_token(next)) {
            result.stop_reason = "stopped";
            break;
          }
        }
        const bool eos = std::find(request.eos_ids.begin(), request.eos_ids.end(), next) != request.eos_ids.end();
        if (eos && !request.ignore_eos) {
          result.stop_reason = "eos";
          break;
        }
        hidden = head.embed(std::vector<TokenId>{next});
      }
      done = true;
    } catch (const GenerationRestart&) {
      // Everything the steps held is gone: the same prompt and seed again, all of it.
      cached = 0;
    }
  }
  if (result.ids.empty()) first_token = start;
  const auto end = Clock::now();
  result.prefill_s = std::chrono::duration<double>(first_token - start).count();
  result.decode_s = std::chrono::duration<double>(end - first_token).count();
  const double total_s = result.prefill_s + result.decode_s;
  result.tokens_per_s = total_s > 0 ? static_cast<double>(result.ids.size()) / total_s : 0.0;
  return result;
}

GenerationResult generate_ids(const ClientHead& head, std::span<SpanRunner* const> spans,
                              const GenerationRequest& request, const std::function<void(TokenId)>& on_token) {
  check_request(request);
  check_chain(head, spans);
  if (request.max_new_tokens == 0) return empty_generation(request);
  ChainSession session(spans, static_cast<int64_t>(request.prompt_ids.size()) + request.max_new_tokens,
                       request.adapter);
  return run_generation(head, session, request, every_token(on_token));
}

}  // namespace bouquet::gpu
