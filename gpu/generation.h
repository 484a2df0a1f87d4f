// Autoregressive generation: the client head embeds, something that runs every block computes
// (span runners in this process, a session through the swarm, a chain with tuned prompts), the
// head turns the last output into logits, a Sampler picks the next token. One loop,
// run_generation, serves all of them: the prompt goes through in one prefill step, then one token
// per step.
#pragma once

#include "gpu/sampling.h"
#include "tokenizer/tokenizer.h"

#include <cstdint>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace at {
class Tensor;
}

namespace bouquet::gpu {

// Declared only: this header stays free of torch headers for the command-line layer.
class ClientHead;
class SpanRunner;

struct GenerationRequest {
  std::vector<TokenId> prompt_ids;
  int64_t max_new_tokens = 32;
  SamplingConfig sampling;
  bool ignore_eos = false;
  std::vector<TokenId> eos_ids;  // generation stops after producing one of these
  std::string adapter;           // the LoRA adapter every span applies ("" = none)
  // The steps already hold the first this many prompt positions (a chat's earlier turns): the
  // first step feeds only the rest. In [0, prompt size); a restart feeds the whole prompt again.
  int64_t prompt_cached = 0;
};

struct GenerationResult {
  std::vector<TokenId> prompt_ids;
  std::vector<TokenId> ids;   // generated, an EOS that stopped it included
  std::string text;           // filled by callers that have a tokenizer
  std::string stop_reason;    // "eos", "max_new_tokens" or "stopped" (the token sink said so)
  double prefill_s = 0.0;     // prompt through every block, up to the first generated token
  double decode_s = 0.0;      // the remaining tokens
  double tokens_per_s = 0.0;  // generated tokens per second of prefill + decode time
};

// What runs a generation's blocks: given the embedded new tokens [1, n, hidden] (the prompt, then
// one token at a time), the last block's outputs for them (at least the last position's).
class GenerationSteps {
 public:
  virtual ~GenerationSteps() = default;
  virtual at::Tensor step(const at::Tensor& hidden) = 0;
};

// Thrown by GenerationSteps::step when everything computed so far is lost and the steps start
// over at position 0 (a swarm session under restart_from_scratch): the loop generates again from
// the prompt, with the same sampler seed, and hands on_token only tokens it has not handed before.
class GenerationRestart : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws InputError for an empty prompt or a negative max_new_tokens.
void check_request(const GenerationRequest& request);
// What a request for no new tokens gets: nothing runs (callers skip opening sessions).
GenerationResult empty_generation(const GenerationRequest& request);

// Sees each generated id as soon as it is chosen (after a restart, only ids it has not seen);
// returning false ends the generation there, with stop_reason "stopped" (a stop text, a client
// that left).
using TokenSink = std::function<bool(TokenId)>;

// A sink that sees every token and never stops the generation.
TokenSink every_token(const std::function<void(TokenId)>& on_token);

// The one generation loop.
GenerationResult run_generation(const ClientHead& head, GenerationSteps& steps, const GenerationRequest& request,
                                const TokenSink& on_token = {});

// `spans` must chain (each starts where the previous ends) from block 0 to the model's last.
// on_token, when given, sees each generated id as soon as it is chosen.
GenerationResult generate_ids(const ClientHead& head, std::span<SpanRunner* const> spans,
                              const GenerationRequest& request, const std::function<void(TokenId)>& on_token = {});

}  // namespace bouquet::gpu
