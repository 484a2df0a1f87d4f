// A conversation with every block in this process (`bouquet chat --local`): one session stays open
// on the span across turns, so each turn feeds only the tokens its rendered prompt adds to what the
// cache already holds (the new user message and the template's markers), never the whole
// conversation again. The reply to a turn is what generate_ids would answer given the whole
// conversation's prompt at once.
#pragma once

#include "gpu/chat_template.h"
#include "gpu/generate_local.h"

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace bouquet::gpu {

class ClientHead;
class SpanRunner;

class LocalChat {
 public:
  // `config.model`, dtype, device, quant, threads and sampling are used; `chat_template` forces a
  // format ("" = the model's own). Throws InputError / ModelFileError like generate --local.
  LocalChat(const GenerateConfig& config, const std::string& chat_template = "");
  ~LocalChat();

  // Adds the user's message, generates the assistant's answer (streamed to on_text as it comes)
  // and keeps it in the conversation.
  std::string reply(std::string_view user_message, const std::function<void(std::string_view)>& on_text = {});

  // Tokens the last reply() fed before generating (the part of the prompt not cached yet).
  int64_t last_fed_tokens() const { return last_fed_; }
  // Positions held in the span's cache.
  int64_t cached_tokens() const;
  const std::vector<ChatMessage>& messages() const { return messages_; }

 private:
  GenerateConfig config_;
  ChatTemplate template_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<ClientHead> head_;
  std::unique_ptr<SpanRunner> span_;
  std::vector<ChatMessage> messages_;
  std::vector<TokenId> cached_ids_;  // the ids whose keys and values the session holds, in order
  int64_t last_fed_ = 0;
  int64_t max_length_ = 0;
};

}  // namespace bouquet::gpu
