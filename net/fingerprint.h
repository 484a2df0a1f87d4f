// A model's fingerprint: what a server and a client compare before they trust each other's
// activations. Two folders have the same fingerprint when their config.json files are identical
// byte for byte, their checkpoints hold the same tensor names with the same shapes and stored
// dtypes, and every tensor starts and ends with the same bytes. Only config.json, the safetensors
// headers and a sample of each tensor (its first and last 64 bytes) are read, so a client that
// holds a folder computes it as cheaply as a server, while two fine-tunes of one architecture
// (same config and shapes, other weights: a base and a chat model) are told apart.
//
// The fingerprint is 64-bit FNV-1a over a canonical text, printed as 16 hex digits:
//   "config.json\n" <config.json bytes> "\n" then, per tensor sorted by name,
//   <name> " " <dtype> " " <shape as [a, b]> "\n" <first and last sample bytes>
// How the checkpoint is split into shards does not matter. It guards against honest mistakes (a
// different model, size, conversion or fine-tune), not against an adversary.
#pragma once

#include <filesystem>
#include <string>

namespace bouquet::net {

// Throws gpu::ModelFileError naming the file when config.json or a checkpoint header is missing
// or unreadable.
std::string model_fingerprint(const std::filesystem::path& model_dir);

}  // namespace bouquet::net
