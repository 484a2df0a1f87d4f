// `bouquet chat --local` on SmolLM2 (fetched once by scripts/fetch-smollm2.sh; skipped, saying why,
// when it cannot be had): the second turn feeds only its new tokens, and its answer is the one a
// fresh generation over the whole conversation gives.
#include "gpu/chat_local.h"
#include "gpu/client_head.h"
#include "gpu/gguf_tokenizer.h"
#include "gpu/span_runner.h"
#include "tests/gpu/support/model_files.h"

#include <gtest/gtest.h>

namespace bouquet::gpu {
namespace {

std::string smollm2(std::string& why) {
  int status = 0;
  std::string out = testing::run_command(std::string(BOUQUET_SOURCE_DIR) + "/scripts/fetch-smollm2.sh 2>&1", &status);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  if (status != 0) why = "SmolLM2 cannot be fetched here: " + out;
  return status == 0 ? out.substr(out.rfind('\n') + 1) : "";
}

TEST(LocalChat, SecondTurnFeedsOnlyItsNewTokensAndAnswersAsAFreshGeneration) {
  std::string why;
  const std::string model = smollm2(why);
  if (model.empty()) GTEST_SKIP() << why;
  GenerateConfig config;
  config.model = model;
  config.max_new_tokens = 24;
  config.device = "cpu";
  LocalChat chat(config);
  const std::string first = chat.reply("What is the capital of France?");
  EXPECT_NE(first.find("Paris"), std::string::npos) << first;
  const int64_t after_first = chat.cached_tokens();
  const std::string second = chat.reply("And of Germany?");
  EXPECT_LT(chat.last_fed_tokens(), after_first) << "the first turn stays cached";
  EXPECT_GT(chat.cached_tokens(), after_first);

  // The same conversation as one prompt, generated from scratch.
  const auto tokenizer = load_model_tokenizer(model);
  std::vector<ChatMessage> messages = chat.messages();
  messages.pop_back();
  const auto ids = tokenizer->encode(render_chat(load_chat_template(model), messages));
  const ClientHead head({model, "f32", "cpu"});
  SpanRunner span({model, 0, -1, "f32", "cpu"});
  SpanRunner* chain[] = {&span};
  GenerationRequest request;
  request.prompt_ids = ids;
  request.max_new_tokens = 24;
  request.eos_ids = {*tokenizer->eos_id};
  auto fresh = generate_ids(head, chain, request).ids;
  if (!fresh.empty() && fresh.back() == *tokenizer->eos_id) fresh.pop_back();
  EXPECT_EQ(second, tokenizer->decode(fresh));
}

}  // namespace
}  // namespace bouquet::gpu
