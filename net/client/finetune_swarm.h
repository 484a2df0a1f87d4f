// `bouquet finetune`: prompt tuning or deep prompt tuning of a model whose blocks run on servers
// (--peers, or found in the DHT with --initial-peers as generate does; through net/client/remote_chain.h) or in this
// process (--local, for comparisons). The client loads only its head and the tokenizer for --peers.
#pragma once

#include "gpu/generate_local.h"
#include "gpu/prompt_tuning.h"
#include "net/client/generate_swarm.h"

#include <functional>
#include <string>
#include <string_view>

namespace bouquet::net {

// Trains and writes config.out; prints a progress line with the loss per step (stderr) and a
// summary: loss and greedy exact-match accuracy before and after, the route. Throws RemoteError,
// gpu::InputError (bad flags, malformed data naming file and line) or gpu::ModelFileError.
// `swarm`: --peers or --initial-peers (and --model-name), --compression.
gpu::FinetuneReport finetune_command(const gpu::FinetuneConfig& config, const SwarmGenerateOptions& swarm = {});

// The command: runs finetune_command and returns the exit status.
int run_finetune(const gpu::FinetuneConfig& config, const SwarmGenerateOptions& swarm = {});

// `bouquet generate --prompts FILE` with --local, --peers or --initial-peers: generation with trained prompts
// (gpu/prompt_generation.h), blocks in this process or through the servers' forward calls.
// Prompts made for another model: gpu::InputError naming both fingerprints.
gpu::GenerationResult generate_with_prompts_command(const gpu::GenerateConfig& config, const std::string& prompts,
                                                    const SwarmGenerateOptions& swarm = {},
                                                    const std::function<void(std::string_view)>& on_text = {});
// The command: streams the text (or prints generate's JSON object with --json). Exit status.
int run_generate_with_prompts(const gpu::GenerateConfig& config, const std::string& prompts,
                              const SwarmGenerateOptions& swarm = {});

}  // namespace bouquet::net
