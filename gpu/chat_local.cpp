#include "gpu/chat_local.h"

#include "gpu/client_head.h"
#include "gpu/errors.h"
#include "gpu/span_runner.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>

namespace bouquet::gpu {
namespace {

constexpr SessionId kSession = 1;

}  // namespace

LocalChat::LocalChat(const GenerateConfig& config, const std::string& chat_template) : config_(config) {
  if (config_.threads > 0) at::set_num_threads(config_.threads);
  template_ = load_chat_template(config_.model, chat_template);
  tokenizer_ = load_tokenizer(config_.model);
  head_ = std::make_unique<ClientHead>(ClientHeadConfig{config_.model, config_.dtype, config_.device});
  span_ = std::make_unique<SpanRunner>(
      SpanRunnerConfig{config_.model, 0, -1, config_.dtype, config_.device, config_.quant});
  max_length_ = std::min<int64_t>(head_->model_config().max_position_embeddings, 8192);
  span_->open_session(kSession, 1, max_length_);
}

LocalChat::~LocalChat() = default;

int64_t LocalChat::cached_tokens() const { return span_->session_length(kSession); }

std::string LocalChat::reply(std::string_view user_message, const std::function<void(std::string_view)>& on_text) {
  std::vector<ChatMessage> conversation = messages_;
  conversation.push_back({"user", std::string(user_message)});
  std::vector<TokenId> prompt;
  if (tokenizer_->add_bos && tokenizer_->bos_id) prompt.push_back(*tokenizer_->bos_id);
  const std::vector<TokenId> encoded = tokenizer_->encode(render_chat(template_, conversation));
  prompt.insert(prompt.end(), encoded.begin(), encoded.end());
  if (static_cast<int64_t>(prompt.size()) + config_.max_new_tokens > max_length_) {
    throw InputError(fmt::format("the conversation ({} tokens) and {} new ones exceed the {} positions this chat "
                                 "holds; start a new chat", prompt.size(), config_.max_new_tokens, max_length_));
  }
  // Keep the cache for the longest prefix it shares with this prompt; feed only the rest.
  size_t common = 0;
  while (common < cached_ids_.size() && common < prompt.size() && cached_ids_[common] == prompt[common]) ++common;
  if (common == prompt.size()) --common;  // at least one token to feed, to get logits
  span_->truncate_session(kSession, static_cast<int64_t>(common));
  cached_ids_.resize(common);
  const std::vector<TokenId> fresh(prompt.begin() + static_cast<std::ptrdiff_t>(common), prompt.end());
  last_fed_ = static_cast<int64_t>(fresh.size());

  Sampler sampler({config_.temperature, config_.top_k, config_.top_p, config_.repetition_penalty, config_.seed});
  std::vector<TokenId> eos = head_->model_config().eos_token_ids;
  if (tokenizer_->eos_id) eos.push_back(*tokenizer_->eos_id);
  StreamDecoder stream(*tokenizer_);
  std::vector<TokenId> history = prompt;
  std::vector<TokenId> answer;
  at::NoGradGuard no_grad;
  at::Tensor out = span_->step(kSession, head_->embed(fresh));
  cached_ids_.insert(cached_ids_.end(), fresh.begin(), fresh.end());
  for (int64_t n = 0; n < config_.max_new_tokens; ++n) {
    const TokenId next = sampler.next(head_->last_logits(out), history);
    history.push_back(next);
    if (std::find(eos.begin(), eos.end(), next) != eos.end()) break;
    answer.push_back(next);
    if (on_text) on_text(stream.push(next));
    out = span_->step(kSession, head_->embed(std::vector<TokenId>{next}));
    cached_ids_.push_back(next);
  }
  if (on_text) on_text(stream.finish());
  std::string text = tokenizer_->decode(answer);
  messages_ = std::move(conversation);
  messages_.push_back({"assistant", text});
  return text;
}

}  // namespace bouquet::gpu
