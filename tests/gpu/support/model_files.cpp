#include "tests/gpu/support/model_files.h"

#include "core/rng.h"
#include "gpu/client_head.h"
#include "gpu/generation.h"
#include "gpu/span_runner.h"

#include <ATen/ATen.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>

namespace bouquet::gpu::testing {
namespace fs = std::filesystem;
namespace {

fs::path process_dir() { return fs::path(::testing::TempDir()) / fmt::format("bouquet-gpu-{}", ::getpid()); }

// Removes this process's scratch folders after the last test, unless BOUQUET_KEEP_TEST_FILES is
// set (to look at a failing test's model folder).
class RemoveScratch : public ::testing::Environment {
 public:
  void TearDown() override {
    if (std::getenv("BOUQUET_KEEP_TEST_FILES") == nullptr) fs::remove_all(process_dir());
  }
};

[[maybe_unused]] const auto* const remove_scratch = ::testing::AddGlobalTestEnvironment(new RemoveScratch);

}  // namespace

fs::path fresh_dir(std::string_view name) {
  const fs::path dir = process_dir() / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string run_command(const std::string& command, int* status) {
  std::string output;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) {
    if (status) *status = -1;
    return "popen failed";
  }
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) output.append(buffer.data(), n);
  const int rc = ::pclose(pipe);
  if (status) *status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  return output;
}

fs::path reference_dir() { return fs::path(BOUQUET_SOURCE_DIR) / ".." / "shared" / "reference"; }

std::string reference_unavailable() {
  if (!fs::exists(reference_dir() / "ref_llama.py")) return "../shared/reference is absent";
  int status = 0;
  run_command("/usr/bin/python3 -c 'import numpy, sentencepiece' && command -v spm_train", &status);
  if (status != 0) return "needs /usr/bin/python3 with numpy and sentencepiece, and spm_train";
  return "";
}

void train_spm_tokenizer(const fs::path& dir, int64_t vocab) {
  // Pseudo-words from a fixed syllable set: enough distinct pairs for a few hundred BPE merges.
  static const char* syllables[] = {"ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "pa",
                                    "qu", "st", "th", "er", "an", "in", "on", "ol", "ar", "en"};
  core::Rng rng(7);
  std::ostringstream text;
  for (int line = 0; line < 3000; ++line) {
    for (int word = 0; word < 8; ++word) {
      const int length = 1 + static_cast<int>(rng.below(4));
      for (int s = 0; s < length; ++s) text << syllables[rng.below(std::size(syllables))];
      text << (word == 7 ? ".\n" : " ");
    }
  }
  const fs::path corpus = dir / "corpus.txt";
  std::ofstream(corpus) << text.str();
  int status = 0;
  const std::string out =
      run_command(fmt::format("cd '{}' && spm_train --input=corpus.txt --model_prefix=tokenizer --vocab_size={} "
                              "--model_type=bpe --byte_fallback=true --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1",
                              dir.string(), vocab),
                  &status);
  ASSERT_EQ(status, 0) << out;
  fs::remove(corpus);
  fs::remove(dir / "tokenizer.vocab");
}

fs::path shared_test_tokenizer() {
  static const fs::path tok = [] {
    const fs::path dir = fresh_dir("spm_512");
    train_spm_tokenizer(dir, 512);
    return dir / "tokenizer.model";
  }();
  return tok;
}

void write_reference_model(const fs::path& dir, std::string_view dtype) {
  int status = 0;
  const std::string out =
      run_command(fmt::format("/usr/bin/python3 '{}' '{}' '{}' {}", (reference_dir() / "make_tiny_llama.py").string(),
                              dir.string(), shared_test_tokenizer().string(), dtype),
                  &status);
  ASSERT_EQ(status, 0) << out;
}

ReferenceRun run_reference(const fs::path& model_dir, const std::vector<TokenId>& prompt_ids, int64_t count) {
  int status = 0;
  const std::string out =
      run_command(fmt::format("IDS='{}' /usr/bin/python3 '{}' '{}' unused {}", fmt::join(prompt_ids, " "),
                              (reference_dir() / "ref_llama.py").string(), model_dir.string(), count),
                  &status);
  EXPECT_EQ(status, 0) << out;
  ReferenceRun run;
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("greedy ids:", 0) == 0) {
      std::istringstream ids(line.substr(11));
      TokenId id;
      while (ids >> id) run.greedy_ids.push_back(id);
    } else if (line.rfind("first-step top3:", 0) == 0) {
      // [(id, logit), (id, logit), (id, logit)]
      std::string rest = line.substr(16);
      for (char& c : rest) {
        if (c == '[' || c == ']' || c == '(' || c == ')' || c == ',') c = ' ';
      }
      std::istringstream pairs(rest);
      TokenId id;
      double logit;
      while (pairs >> id >> logit) run.first_top3.emplace_back(id, logit);
    }
  }
  EXPECT_EQ(run.greedy_ids.size(), static_cast<size_t>(count)) << out;
  EXPECT_EQ(run.first_top3.size(), 3u) << out;
  return run;
}

void expect_matches_reference(const fs::path& engine_dir, const fs::path& reference_dir,
                              const std::vector<TokenId>& prompt_ids, int64_t count, double tolerance) {
  const ReferenceRun reference = run_reference(reference_dir, prompt_ids, count);
  const std::string reproduce =
      fmt::format("reproduce: IDS='{}' /usr/bin/python3 {} {} x {}", fmt::join(prompt_ids, " "),
                  (testing::reference_dir() / "ref_llama.py").string(), reference_dir.string(), count);
  EXPECT_EQ(engine_greedy_ids(engine_dir, prompt_ids, count), reference.greedy_ids) << reproduce;
  const ClientHead head({engine_dir, "f32", "cpu"});
  const SpanRunner span({engine_dir, 0, -1, "f32", "cpu"});
  at::NoGradGuard no_grad;
  const std::vector<float> logits = head.last_logits(span.forward(head.embed(prompt_ids)));
  for (const auto& [id, logit] : reference.first_top3) {
    EXPECT_NEAR(logits.at(id), logit, tolerance) << "first-step logit of token " << id << "; " << reproduce;
  }
}

std::vector<TokenId> engine_greedy_ids(const fs::path& model_dir, const std::vector<TokenId>& prompt_ids, int64_t count,
                                       std::string_view dtype, int64_t spans) {
  const ClientHead head({model_dir, std::string(dtype), "cpu"});
  const int64_t layers = head.model_config().num_layers;
  std::vector<std::unique_ptr<SpanRunner>> runners;
  std::vector<SpanRunner*> chain;
  for (int64_t s = 0; s < spans; ++s) {
    runners.push_back(std::make_unique<SpanRunner>(
        SpanRunnerConfig{model_dir, layers * s / spans, layers * (s + 1) / spans, std::string(dtype), "cpu"}));
    chain.push_back(runners.back().get());
  }
  GenerationRequest request;
  request.prompt_ids = prompt_ids;
  request.max_new_tokens = count;
  request.ignore_eos = true;
  return generate_ids(head, chain, request).ids;
}

TinyModelConfig small_tiny(const fs::path& dir) {
  TinyModelConfig config;
  config.out = dir;
  config.layers = 4;
  config.seed = 11;
  return config;
}

}  // namespace bouquet::gpu::testing
