// Fine-tuning data: JSON lines of {"prompt": ..., "completion": ...}, tokenized into
// right-padded batches whose targets cover the completion tokens only.
//
// Promises: load_finetune_data() reads every non-blank line; a line that is not a JSON object with
// string "prompt" and non-empty string "completion" fields is an InputError naming the file and the
// line number (a file with no example too). make_batch() puts the prompt (with BOS when the
// tokenizer adds one) then the completion in each row, pads on the right (causal attention: padding
// never changes an earlier position), and sets targets[b][t] to the token at t + 1 when that token
// is part of the completion, else kIgnoreTarget.
#pragma once

#include "tokenizer/tokenizer.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace bouquet::gpu {

struct FinetuneExample {
  std::string prompt;
  std::string completion;
};

inline constexpr int64_t kIgnoreTarget = -100;

std::vector<FinetuneExample> load_finetune_data(const std::filesystem::path& path);

struct TokenizedExample {
  std::vector<TokenId> prompt_ids;      // BOS included when the tokenizer adds one
  std::vector<TokenId> completion_ids;  // never empty
};

// InputError when a completion encodes to no token.
std::vector<TokenizedExample> tokenize_examples(const Tokenizer& tokenizer,
                                                const std::vector<FinetuneExample>& examples);

struct TrainingBatch {
  at::Tensor ids;      // [batch, tokens] int64, right-padded
  at::Tensor targets;  // [batch, tokens] int64: next completion token, or kIgnoreTarget
};

TrainingBatch make_batch(const std::vector<TokenizedExample>& examples, const std::vector<size_t>& rows,
                         TokenId pad_id);

}  // namespace bouquet::gpu
