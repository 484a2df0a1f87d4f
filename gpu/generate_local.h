// `bouquet generate --local`: every block in this process. The command's model and sampling flags
// live in one GenerateConfig (field names are the flag names); the networked client adds its own
// (servers, DHT, wire, recovery) in net::SwarmGenerateOptions.
#pragma once

#include "gpu/generation.h"
#include "gpu/model_config.h"

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace bouquet::gpu {

struct GenerateConfig {
  std::string model;       // Hugging Face folder
  bool local = false;      // run every block in-process
  std::string prompt;      // text, tokenized with the folder's tokenizer (BOS as it says)
  std::string prompt_ids;  // or ids: "1,2,3" (taken as given, no BOS added)
  int64_t max_new_tokens = 32;
  bool ignore_eos = false;
  double temperature = 0.0;  // 0: greedy
  int64_t top_k = 0;
  double top_p = 1.0;
  double repetition_penalty = 1.0;
  uint64_t seed = 0;
  std::string dtype = "f32";
  std::string device = "auto";
  std::string quant = "none";  // none | int8 | nf4 | nf4-nodq: block weights; int8 also the LM head
  int threads = 0;             // 0: libtorch's default
  std::string adapter_dir;     // --local: a LoRA adapter folder (PEFT layout) to apply
  std::string adapter;         // --peers: the name of a LoRA adapter the servers hold
  bool json = false;
  // Where the blocks run when not --local, and how to reach them, are the network's flags
  // (net::SwarmGenerateOptions).
};

// "1,2,3" or "1 2 3" -> ids; InputError naming the bad entry otherwise.
std::vector<TokenId> parse_prompt_ids(std::string_view text);

// The request `config` describes: prompt ids (given, or the prompt encoded after the tokenizer's
// BOS when it adds one), length, sampling and stop ids (the model's and the tokenizer's EOS).
// `tokenizer` may be null when ids are given. The adapter is left to the caller.
GenerationRequest generation_request(const GenerateConfig& config, const Tokenizer* tokenizer,
                                     const ModelConfig& model);

// Loads the folder, runs the generation and returns it with its text; `on_text`, when given,
// receives the text as it is produced (whole UTF-8 pieces).
GenerationResult generate_local(const GenerateConfig& config,
                                const std::function<void(std::string_view)>& on_text = {});

// One JSON object: prompt_ids, ids, text, tokens_per_s, prefill_s, decode_s, stop_reason.
std::string generation_json(const GenerationResult& result);

}  // namespace bouquet::gpu
