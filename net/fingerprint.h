// A model's fingerprint: what a server and a client compare before they trust each other's
// activations. Two folders have the same fingerprint when their config.json files are identical
// byte for byte and their checkpoints hold the same tensor names with the same shapes and stored
// dtypes; no weight is read (only config.json and the safetensors headers), so a client that
// holds a folder computes it as cheaply as a server.
//
// The fingerprint is 64-bit FNV-1a over a canonical text, printed as 16 hex digits:
//   "config.json\n" <config.json bytes> "\n" then, per tensor sorted by name,
//   <name> " " <dtype> " " <shape as [a, b]> "\n"
// It guards against honest mistakes (a different model, size or conversion), not against an
// adversary.
#pragma once

#include <filesystem>
#include <string>

namespace bouquet::net {

// Throws gpu::ModelFileError naming the file when config.json or a checkpoint header is missing
// or unreadable.
std::string model_fingerprint(const std::filesystem::path& model_dir);

}  // namespace bouquet::net
