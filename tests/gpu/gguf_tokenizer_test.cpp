// The tokenizer of a GGUF file's metadata, on SmolLM2 (fetched once by scripts/fetch-smollm2.sh;
// skipped, saying why, when it cannot be had): the ids Hugging Face transformers gives for the same
// file (recorded from tests/reference/hf_gguf_ref.py), special tokens found in the text, bos/eos.
#include "gpu/gguf_tokenizer.h"
#include "tests/gpu/support/model_files.h"
#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

namespace bouquet::gpu {
namespace {

std::string smollm2(std::string& why) {
  int status = 0;
  std::string out = testing::run_command(std::string(BOUQUET_SOURCE_DIR) + "/scripts/fetch-smollm2.sh 2>&1", &status);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  if (status != 0) {
    why = "SmolLM2 cannot be fetched here: " + out;
    return "";
  }
  return out.substr(out.rfind('\n') + 1);
}

TEST(GgufTokenizer, SmolLM2GivesTransformersIds) {
  std::string why;
  const std::string model = smollm2(why);
  if (model.empty()) GTEST_SKIP() << why;
  const auto tokenizer = load_model_tokenizer(model);
  EXPECT_EQ(tokenizer->vocab_size(), 49152);
  EXPECT_EQ(tokenizer->bos_id, 1);
  EXPECT_EQ(tokenizer->eos_id, 2);
  EXPECT_FALSE(tokenizer->add_bos) << "tokenizer.ggml.add_bos_token is false";
  EXPECT_EQ(tokenizer->encode("The capital of France is"), (std::vector<TokenId>{504, 3575, 282, 4649, 314}));
  EXPECT_EQ(tokenizer->encode("Once upon a time, a little fox"),
            (std::vector<TokenId>{6403, 1980, 253, 655, 28, 253, 1838, 16438}));
  EXPECT_EQ(tokenizer->encode("<|im_start|>user\nWhat is the largest planet in the solar system?<|im_end|>\n"
                              "<|im_start|>assistant\n"),
            (std::vector<TokenId>{1, 4093, 198, 1780, 314, 260, 3995, 3925, 281, 260, 3693, 817, 47, 2, 198, 1, 520,
                                  9531, 198}));
  EXPECT_EQ(tokenizer->encode("def fibonacci(n):"), (std::vector<TokenId>{1604, 3987, 46477, 24, 94, 727}));
  const std::string text = "Héllo, wörld! 12345 \xF0\x9F\x98\x80";
  EXPECT_EQ(tokenizer->decode(tokenizer->encode(text)), text);
  EXPECT_EQ(tokenizer->decode({1, 504, 3575, 2}), "The capital") << "special tokens are skipped";
}

}  // namespace
}  // namespace bouquet::gpu
