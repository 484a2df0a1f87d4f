// Chat templates recognized from their text, rendered as the models were trained to read them.
#include "gpu/chat_template.h"
#include "gpu/errors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace bouquet::gpu {
namespace {

using ::testing::HasSubstr;

// SmolLM2-135M-Instruct's template, as its GGUF metadata carries it.
constexpr const char* kSmolTemplate =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou "
    "are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + "
    "message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt "
    "%}{{ '<|im_start|>assistant\\n' }}{% endif %}";

TEST(ChatTemplate, ChatMlKeepsTheTemplatesDefaultSystemMessage) {
  const ChatTemplate chat = recognize_chat_template(kSmolTemplate, "smol");
  EXPECT_EQ(chat.format, ChatFormat::chatml);
  EXPECT_EQ(render_chat(chat, {{"user", "Hi"}}),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(render_chat(chat, {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Bye"}}),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
            "Hello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplate, Llama3AndLlama2AreRecognizedAndRendered) {
  const ChatTemplate l3 =
      recognize_chat_template("{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}", "l3");
  EXPECT_EQ(l3.format, ChatFormat::llama3);
  EXPECT_EQ(render_chat(l3, {{"system", "S"}, {"user", "U"}}),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user"
            "<|end_header_id|>\n\nU<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
  const ChatTemplate l2 = recognize_chat_template("{{ bos_token + '[INST] ' + content + ' [/INST]' }}", "l2");
  EXPECT_EQ(l2.format, ChatFormat::llama2);
  EXPECT_EQ(render_chat(l2, {{"system", "S"}, {"user", "U1"}, {"assistant", "A1"}, {"user", "U2"}}),
            "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nU1 [/INST] A1 </s><s>[INST] U2 [/INST]");
}

TEST(ChatTemplate, AnUnrecognizedTemplateNamesTheFlagThatChoosesOne) {
  EXPECT_THAT(
      [] { recognize_chat_template("{{ messages | tojson }}", "model.gguf"); },
      ::testing::ThrowsMessage<InputError>(::testing::AllOf(HasSubstr("model.gguf"), HasSubstr("--chat-template"))));
  EXPECT_THAT([] { load_chat_template("/nonexistent", "vicuna"); },
              ::testing::ThrowsMessage<InputError>(HasSubstr("'vicuna'")));
  EXPECT_EQ(load_chat_template("/nonexistent", "llama3").format, ChatFormat::llama3);
}

}  // namespace
}  // namespace bouquet::gpu
