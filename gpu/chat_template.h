// Chat prompts in the formats instruct models are trained on, recognized from the model's own
// chat template text (GGUF metadata tokenizer.chat_template, or tokenizer_config.json's
// chat_template) rather than run as Jinja: ChatML (<|im_start|>role ... <|im_end|>), Llama-2
// ([INST] ... [/INST], <<SYS>> blocks) and Llama-3 (<|start_header_id|>role<|end_header_id|> ...
// <|eot_id|>). A ChatML template that writes a default system message when the conversation has
// none (SmolLM2's) keeps doing so. A model without a template may be given the plain format
// ("role: content" lines, then "assistant:"), which `bouquet api` uses for the tiny random models.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bouquet::gpu {

enum class ChatFormat { chatml, llama2, llama3, plain };

struct ChatMessage {
  std::string role;  // "system" | "user" | "assistant"
  std::string content;
};

struct ChatTemplate {
  ChatFormat format = ChatFormat::chatml;
  std::string default_system;  // written first when the conversation has no system message
};

// "chatml" | "llama2" | "llama3" | "plain" -> the format; nullopt for another name.
std::optional<ChatFormat> parse_chat_format(std::string_view name);
std::string_view to_string(ChatFormat format);

// The format of a template's text. Throws InputError naming `source` and `--chat-template NAME`
// when the text matches none of them.
ChatTemplate recognize_chat_template(std::string_view template_text, std::string_view source);

// The model's chat template: `forced` (a format name) when given, else recognized from the GGUF
// metadata or the folder's tokenizer_config.json. Throws InputError when it is not recognized,
// naming --chat-template, and when there is none, unless `plain_without_template`.
ChatTemplate load_chat_template(const std::filesystem::path& model, std::string_view forced = "",
                                bool plain_without_template = false);

// The prompt text of `messages`, ending with the assistant's turn opened when
// `add_generation_prompt`. Special tokens appear as their text (the tokenizer finds them).
std::string render_chat(const ChatTemplate& chat, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt = true);

}  // namespace bouquet::gpu
