#include "gpu/chat.h"

#include "gpu/client_head.h"
#include "gpu/errors.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>

namespace bouquet::gpu {

Chat::Chat(const ClientHead& head, const Tokenizer& tokenizer, ChatTemplate chat_template, ChatSteps& steps,
           ChatOptions options)
    : head_(head), tokenizer_(tokenizer), template_(std::move(chat_template)), steps_(steps), options_(options) {}

std::string Chat::reply(std::string_view user_message, const std::function<void(std::string_view)>& on_text) {
  std::vector<ChatMessage> conversation = messages_;
  conversation.push_back({"user", std::string(user_message)});
  std::vector<TokenId> prompt;
  if (tokenizer_.add_bos && tokenizer_.bos_id) prompt.push_back(*tokenizer_.bos_id);
  const std::vector<TokenId> encoded = tokenizer_.encode(render_chat(template_, conversation));
  prompt.insert(prompt.end(), encoded.begin(), encoded.end());
  if (static_cast<int64_t>(prompt.size()) + options_.max_new_tokens > options_.max_length) {
    throw InputError(
        fmt::format("the conversation ({} tokens) and {} new ones exceed the {} positions this chat "
                    "holds; start a new chat",
                    prompt.size(), options_.max_new_tokens, options_.max_length));
  }
  // Keep the cache for the longest prefix it shares with this prompt; feed only the rest.
  size_t common = 0;
  while (common < cached_ids_.size() && common < prompt.size() && cached_ids_[common] == prompt[common]) ++common;
  if (common == prompt.size()) --common;  // at least one token to feed, to get logits
  steps_.truncate(static_cast<int64_t>(common));
  cached_ids_.resize(common);  // true even if this turn fails halfway: the session holds at least these
  last_fed_ = static_cast<int64_t>(prompt.size() - common);
  last_prompt_ = static_cast<int64_t>(prompt.size());

  GenerationRequest request;
  request.prompt_ids = prompt;
  request.prompt_cached = static_cast<int64_t>(common);
  request.max_new_tokens = options_.max_new_tokens;
  request.sampling = options_.sampling;
  request.eos_ids = head_.model_config().eos_token_ids;
  if (tokenizer_.eos_id) request.eos_ids.push_back(*tokenizer_.eos_id);
  const auto& eos = request.eos_ids;
  StreamDecoder stream(tokenizer_);
  std::vector<TokenId> answer;
  at::NoGradGuard no_grad;
  const GenerationResult result = run_generation(head_, steps_, request, [&](TokenId next) {
    if (std::find(eos.begin(), eos.end(), next) != eos.end()) return true;  // the loop ends on it
    answer.push_back(next);
    if (on_text) on_text(stream.push(next));
    return true;
  });
  // The session holds the prompt and every generated token but the last, which was never fed.
  cached_ids_ = prompt;
  if (!result.ids.empty()) cached_ids_.insert(cached_ids_.end(), result.ids.begin(), result.ids.end() - 1);
  if (on_text) on_text(stream.finish());
  std::string text = tokenizer_.decode(answer);
  last_ids_ = std::move(answer);
  messages_ = std::move(conversation);
  messages_.push_back({"assistant", text});
  return text;
}

}  // namespace bouquet::gpu
