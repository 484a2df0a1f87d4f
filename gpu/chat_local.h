// A conversation with every block in this process (`bouquet chat --local`): a gpu::Chat (chat.h)
// whose one session stays open on a span of every block across turns, so each turn feeds only the
// tokens its rendered prompt adds to what the cache already holds (the new user message and the
// template's markers), never the whole conversation again. The reply to a turn is what
// generate_ids would answer given the whole conversation's prompt at once.
#pragma once

#include "gpu/chat.h"
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

// The default of --max-length: the model's positions, at most `cap`.
int64_t chat_max_length(const ModelConfig& model, int64_t requested, int64_t cap);

class LocalChat {
 public:
  // `config.model`, dtype, device, quant, threads and sampling are used; `chat_template` forces a
  // format ("" = the model's own); `max_length` bounds the conversation (0 = the model's
  // positions, at most 8192). Throws InputError / ModelFileError like generate --local.
  LocalChat(const GenerateConfig& config, const std::string& chat_template = "", int64_t max_length = 0);
  ~LocalChat();

  // Chat::reply.
  std::string reply(std::string_view user_message, const std::function<void(std::string_view)>& on_text = {});

  // Tokens the last reply() fed before generating (the part of the prompt not cached yet).
  int64_t last_fed_tokens() const { return chat_->last_fed_tokens(); }
  // Positions held in the span's cache.
  int64_t cached_tokens() const;
  const std::vector<ChatMessage>& messages() const { return chat_->messages(); }
  const std::vector<TokenId>& last_ids() const { return chat_->last_ids(); }
  const Chat& chat() const { return *chat_; }

 private:
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<ClientHead> head_;
  std::unique_ptr<SpanRunner> span_;
  std::unique_ptr<ChatSteps> steps_;
  std::unique_ptr<Chat> chat_;
};

}  // namespace bouquet::gpu
