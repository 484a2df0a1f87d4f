// A model's fingerprint: what a server and a client compare before they trust each other's
// activations. Two folders have the same fingerprint when their config.json files are identical
// byte for byte and their checkpoints hold the same tensor names, shapes, stored dtypes and every
// byte of every tensor: a copy with other weights anywhere (a fine-tune, or a rogue's negated
// middle weights) is another model.
//
// The fingerprint is the first 8 bytes of a SHA-256, as 16 hex digits, over a canonical text:
//   "config.json\n" <config.json bytes> "\n" then, per tensor sorted by name,
//   <name> " " <dtype> " " <shape as [a, b]> "\n" <every byte of the tensor's data>
// How the checkpoint is split into shards does not matter. Reading every byte costs a pass over
// the checkpoint, so the result is cached in <$BOUQUET_CACHE_DIR or $HOME/.cache/bouquet>/
// fingerprints/, keyed by the folder and valid while config.json, the index and every shard keep
// their size, modification time and inode: a restart, or a client beside a server, does not
// re-read the weights. Without either variable nothing is cached.
//
// A `.gguf` file's fingerprint hashes "gguf\n", the config.json its metadata gives, then per tensor
// (sorted by Hugging Face name) name, ggml type, shape and its stored bytes: two copies of one file
// agree, and a GGUF never equals the folder it was converted from (its weights are quantized or
// permuted bytes, not the folder's).
#pragma once

#include <filesystem>
#include <string>

namespace bouquet::net {

// Throws gpu::ModelFileError naming the file when config.json or a checkpoint header is missing
// or unreadable.
std::string model_fingerprint(const std::filesystem::path& model_dir);

// Where model_fingerprint caches the fingerprint of `model_dir` ("" when no cache dir is set).
std::filesystem::path fingerprint_cache_file(const std::filesystem::path& model_dir);

}  // namespace bouquet::net
