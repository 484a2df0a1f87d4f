// The tokenizer a GGUF file carries in its metadata (tokenizer.ggml.*), as a Tokenizer.
//
// Promises: a byte-level BPE vocabulary (tokenizer.ggml.model "gpt2": tokens, merges, token types)
// becomes the same BpeTokenizer a tokenizer.json of that model gives — the pre-tokenizer chosen by
// tokenizer.ggml.pre as llama.cpp chooses it (gpt2/default, smollm/starcoder, llama-bpe), control
// tokens (type 3) as special added tokens, user-defined ones (type 4) as plain added tokens; bos,
// eos and add_bos from tokenizer.ggml.bos_token_id / eos_token_id / add_bos_token. A SentencePiece
// vocabulary (tokenizer.ggml.model "llama": pieces, scores, types) becomes the SentencePieceTokenizer
// its tokenizer.model gives (BPE by score, byte fallback when it has byte pieces, identity
// normalization with add_space_prefix, BOS added unless add_bos_token says not). Anything else
// (another model, an unknown pre-tokenizer) is a std::runtime_error naming the file and the key.
#pragma once

#include "tokenizer/tokenizer.h"

#include <filesystem>
#include <memory>

namespace bouquet::gpu {

class GgufFile;

std::unique_ptr<Tokenizer> load_gguf_tokenizer(const GgufFile& file);
std::unique_ptr<Tokenizer> load_gguf_tokenizer(const std::filesystem::path& path);

// The tokenizer of a model given as --model: a `.gguf` file's metadata, or the files of a Hugging
// Face folder (tokenizer/tokenizer.h, which reads folders only and needs no torch).
std::unique_ptr<Tokenizer> load_model_tokenizer(const std::filesystem::path& model);

}  // namespace bouquet::gpu
