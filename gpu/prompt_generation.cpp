#include "gpu/prompt_generation.h"

#include "gpu/client_head.h"
#include "gpu/errors.h"
#include "gpu/prompt_tuning.h"
#include "gpu/sampling.h"

#include <ATen/ATen.h>

namespace bouquet::gpu {

namespace {

// Every step runs the whole sequence so far, after the prompt prefix, with the deep prompts.
class PromptedSteps final : public GenerationSteps {
 public:
  PromptedSteps(PassChain& chain, const TunedPrompts& prompts)
      : chain_(chain),
        prefix_(prompts.input_prompts.to(at::kFloat).unsqueeze(0)),
        deep_(prompts.deep_prompts.defined() ? prompts.deep_prompts.to(at::kFloat).unsqueeze(1) : at::Tensor()) {}

  at::Tensor step(const at::Tensor& hidden) override {
    at::NoGradGuard no_grad;
    const at::Tensor x = hidden.to(at::kCPU, at::kFloat);
    embeds_ = embeds_.defined() ? at::cat({embeds_, x}, 1) : x;
    return chain_.forward(at::cat({prefix_, embeds_}, 1), deep_);
  }

 private:
  PassChain& chain_;
  at::Tensor prefix_, deep_, embeds_;
};

}  // namespace

GenerationResult generate_with_prompts(const ClientHead& head, PassChain& chain, const TunedPrompts& prompts,
                                       const GenerationRequest& request, const std::function<void(TokenId)>& on_token) {
  check_request(request);
  PromptedSteps steps(chain, prompts);
  return run_generation(head, steps, request, every_token(on_token));
}

}  // namespace bouquet::gpu
