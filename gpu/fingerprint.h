// A model's fingerprint: what a server and a client compare before they trust each other's
// activations. Two checkpoints have the same fingerprint when their hyper-parameters are equal and
// they hold the same tensor names, shapes, stored dtypes and every byte of every tensor: a copy with
// other weights anywhere (a fine-tune, or a rogue's negated middle weights) is another model; a
// GGUF file converted from a folder without quantizing it (F32, F16 or BF16 kept) is the same model.
//
// The fingerprint (version 2) is the first 8 bytes of a SHA-256, as 16 hex digits, over a
// canonical text:
//   "bouquet-fingerprint-v2\n" <hyper-parameters, one "key value" line each: family, widths,
//   heads, vocabulary, norm epsilon and rope base as the float32 they round to, positions, tied
//   embeddings, rope scaling> then, per tensor sorted by Hugging Face name,
//   <name> " " <dtype> " " <shape as [a, b]> "\n" <every byte of the tensor's data>
// where a GGUF tensor's dtype is its ggml type (F32, F16, BF16 as in safetensors; Q8_0 and the
// other quantized types are other weights than any folder's) and its Q and K rows are taken in the
// folder's order (llama.cpp's converter interleaves each head's rotary halves). Config.json fields
// that do not change what is computed (token ids, torch_dtype, formatting) are not part of it.
// How the checkpoint is split into shards does not matter. Reading every byte costs a pass over
// the checkpoint, so the result is cached in <$BOUQUET_CACHE_DIR or $HOME/.cache/bouquet>/
// fingerprints/, keyed by the folder and valid while config.json, the index and every shard keep
// their size, modification time and inode: a restart, or a client beside a server, does not
// re-read the weights. Without either variable nothing is cached.
//
// Version 1 (before 2026-12-07) hashed config.json's bytes and a GGUF's stored row order, so a
// GGUF never equalled its folder; legacy_model_fingerprint() still computes it, for prompts files
// trained then.
#pragma once

#include <filesystem>
#include <string>

namespace bouquet::net {

// Throws gpu::ModelFileError naming the file when config.json or a checkpoint header is missing
// or unreadable.
std::string model_fingerprint(const std::filesystem::path& model_dir);

// The version-1 fingerprint (config.json's bytes or, for a GGUF, "gguf\n" and the config its
// metadata gives, then the tensors as stored): read a prompts file trained before version 2.
// Never cached: it is computed only when such a file is loaded.
std::string legacy_model_fingerprint(const std::filesystem::path& model_dir);

// Where model_fingerprint caches the fingerprint of `model_dir` ("" when no cache dir is set).
std::filesystem::path fingerprint_cache_file(const std::filesystem::path& model_dir);

}  // namespace bouquet::net
