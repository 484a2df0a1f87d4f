#include "gpu/prompt_generation.h"

#include "gpu/client_head.h"
#include "gpu/errors.h"
#include "gpu/prompt_tuning.h"
#include "gpu/sampling.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>

namespace bouquet::gpu {

GenerationResult generate_with_prompts(const ClientHead& head, PassChain& chain, const TunedPrompts& prompts,
                                       const GenerationRequest& request,
                                       const std::function<void(TokenId)>& on_token) {
  if (request.prompt_ids.empty()) throw InputError("the prompt has no tokens");
  if (request.max_new_tokens < 0) throw InputError("max new tokens must be >= 0");
  GenerationResult result;
  result.prompt_ids = request.prompt_ids;
  result.stop_reason = "max_new_tokens";
  if (request.max_new_tokens == 0) return result;

  at::NoGradGuard no_grad;
  Sampler sampler(request.sampling);
  const at::Tensor prefix = prompts.input_prompts.to(at::kFloat).unsqueeze(0);
  const at::Tensor deep = prompts.deep_prompts.defined() ? prompts.deep_prompts.to(at::kFloat).unsqueeze(1) : at::Tensor();
  std::vector<TokenId> history = request.prompt_ids;
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  auto first_token = start;
  for (int64_t n = 0; n < request.max_new_tokens; ++n) {
    const at::Tensor embeds = head.embed(history).to(at::kCPU, at::kFloat);
    const at::Tensor out = chain.forward(at::cat({prefix, embeds}, 1), deep);
    const TokenId next = sampler.next(head.last_logits(out), history);
    if (n == 0) first_token = Clock::now();
    history.push_back(next);
    result.ids.push_back(next);
    if (on_token) on_token(next);
    if (std::find(request.eos_ids.begin(), request.eos_ids.end(), next) != request.eos_ids.end() &&
        !request.ignore_eos) {
      result.stop_reason = "eos";
      break;
    }
  }
  const auto end = Clock::now();
  result.prefill_s = std::chrono::duration<double>(first_token - start).count();
  result.decode_s = std::chrono::duration<double>(end - first_token).count();
  const double total_s = result.prefill_s + result.decode_s;
  result.tokens_per_s = total_s > 0 ? static_cast<double>(result.ids.size()) / total_s : 0.0;
  return result;
}

}  // namespace bouquet::gpu
