// Helpers shared by the gpu tests: scratch folders, tiny checkpoints, and the independent numpy
// reference of ../shared/reference (used only when that folder is present).
#pragma once

#include "gpu/tiny_model.h"
#include "tokenizer/tokenizer.h"

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace bouquet::gpu::testing {

// An empty folder for one test, under the GoogleTest temp dir.
std::filesystem::path fresh_dir(std::string_view name);

// Runs a shell command; returns its stdout and stderr. `status` gets the exit status.
std::string run_command(const std::string& command, int* status = nullptr);

std::filesystem::path reference_dir();  // BOUQUET_SOURCE_DIR/../shared/reference
// Empty when the reference can run here; otherwise why not (for GTEST_SKIP).
std::string reference_unavailable();

// Trains `dir/tokenizer.model` of `vocab` pieces with spm_train on text this helper writes.
void train_spm_tokenizer(const std::filesystem::path& dir, int64_t vocab);

// A tokenizer.model of 512 pieces trained once per test process.
std::filesystem::path shared_test_tokenizer();

// Writes a checkpoint with make_tiny_llama.py (dtype F32, F16 or BF16), tokenizer included.
void write_reference_model(const std::filesystem::path& dir, std::string_view dtype);

struct ReferenceRun {
  std::vector<TokenId> greedy_ids;
  std::vector<std::pair<TokenId, double>> first_top3;  // first step's best logits (4 decimals)
};

// ref_llama.py on `prompt_ids` (forced with IDS=...).
ReferenceRun run_reference(const std::filesystem::path& model_dir, const std::vector<TokenId>& prompt_ids,
                           int64_t count);

// Checks Bouquet on `engine_dir` against ref_llama.py on `reference_dir` (the same weights, in
// a layout the reference reads): the same greedy ids, and the first step's top-3 logits within
// `tolerance`.
void expect_matches_reference(const std::filesystem::path& engine_dir, const std::filesystem::path& reference_dir,
                              const std::vector<TokenId>& prompt_ids, int64_t count, double tolerance = 2e-3);

// Bouquet's greedy ids: client head plus one span of every block, or `spans` chained spans.
std::vector<TokenId> engine_greedy_ids(const std::filesystem::path& model_dir, const std::vector<TokenId>& prompt_ids,
                                       int64_t count, std::string_view dtype = "f32", int64_t spans = 1);

// A small tiny-model config for `dir` (4 layers so tests stay fast).
TinyModelConfig small_tiny(const std::filesystem::path& dir);

}  // namespace bouquet::gpu::testing
