// Generation with tuned prompts (`bouquet generate --prompts FILE`). Every step runs the
// whole sequence — the pre_seq_len prompt positions, the prompt's tokens and those generated so
// far — through a PassChain with the deep prompts, without caches: the same computation the
// prompts were trained with, in this process or through the swarm's forward calls. Quadratic in
// the length, which suits the short completions prompt tuning is for.
//
// Promises: the same ids as the trained model's argmax wherever greedy (temperature 0), so an
// example the tuner counted as an exact match generates its completion; sampling, EOS and the
// result's fields as in gpu/generation.h.
#pragma once

#include "gpu/generation.h"
#include "gpu/prompt_file.h"

#include <functional>

namespace bouquet::gpu {

class ClientHead;
class PassChain;

GenerationResult generate_with_prompts(const ClientHead& head, PassChain& chain, const TunedPrompts& prompts,
                                       const GenerationRequest& request,
                                       const std::function<void(TokenId)>& on_token = {});

}  // namespace bouquet::gpu
