// Chat messages -> the prompt text a model was trained on. Bouquet runs no Jinja: it recognises
// the template families real checkpoints ship in tokenizer_config.json's `chat_template` by their
// marker tokens (ChatML's <|im_start|>, Llama 3's <|start_header_id|>, Llama 2's [INST]) and
// writes the same text those templates produce with add_generation_prompt. A model with no
// template (the tiny random models) gets a plain concatenation: "role: content\n" per message,
// then "assistant:".
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "net/api/api_request.h"

namespace bouquet::net::api {

enum class ChatTemplate { plain, chatml, llama3, llama2 };

// From the text of a `chat_template` ("" = none).
ChatTemplate chat_template_from_text(std::string_view jinja);
// The model folder's tokenizer_config.json template; plain when the file or field is missing.
ChatTemplate load_chat_template(const std::filesystem::path& model_dir);
std::string_view to_string(ChatTemplate kind);

// The prompt, ending where the assistant's reply starts.
std::string apply_chat_template(ChatTemplate kind, const std::vector<ChatMessage>& messages);

}  // namespace bouquet::net::api
