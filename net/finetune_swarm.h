// `bouquet finetune`: prompt tuning or deep prompt tuning of a model whose blocks run on servers
// (--peers, through net/remote_chain.h) or in this process (--local, for comparisons). The client
// loads only its head and the tokenizer for --peers.
#pragma once

#include "gpu/prompt_tuning.h"

namespace bouquet::net {

// Trains and writes config.out; prints a progress line with the loss per step (stderr) and a
// summary: loss and greedy exact-match accuracy before and after, the route. Throws RemoteError,
// gpu::InputError (bad flags, malformed data naming file and line) or gpu::ModelFileError.
gpu::FinetuneReport finetune_command(const gpu::FinetuneConfig& config);

// The command: runs finetune_command and returns the exit status.
int run_finetune(const gpu::FinetuneConfig& config);

}  // namespace bouquet::net
