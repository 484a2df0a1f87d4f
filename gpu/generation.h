// Autoregressive generation in one process: the client head embeds, a chain of span runners that
// together cover every block computes, the head turns the last output into logits, a Sampler picks
// the next token. The prompt goes through in one prefill step, then one token per step, each
// reusing the spans' KV caches.
#pragma once

#include "gpu/sampling.h"
#include "tokenizer/tokenizer.h"

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

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
};

struct GenerationResult {
  std::vector<TokenId> prompt_ids;
  std::vector<TokenId> ids;  // generated, an EOS that stopped it included
  std::string text;          // filled by callers that have a tokenizer
  std::string stop_reason;   // "eos" or "max_new_tokens"
  double prefill_s = 0.0;    // prompt through every block, up to the first generated token
  double decode_s = 0.0;     // the remaining tokens
  double tokens_per_s = 0.0; // generated tokens per second of prefill + decode time
};

// `spans` must chain (each starts where the previous ends) from block 0 to the model's last.
// on_token, when given, sees each generated id as soon as it is chosen.
GenerationResult generate_ids(const ClientHead& head, std::span<SpanRunner* const> spans,
                              const GenerationRequest& request,
                              const std::function<void(TokenId)>& on_token = {});

}  // namespace bouquet::gpu
