#include "gpu/chat_local.h"

#include "gpu/client_head.h"
#include "gpu/errors.h"
#include "gpu/generation.h"
#include "gpu/gguf_tokenizer.h"
#include "gpu/span_runner.h"

#include <unistd.h>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>

namespace bouquet::gpu {
namespace {

constexpr SessionId kSession = 1;

// The generation loop's steps on the one session the chat keeps open.
class ChatSteps final : public GenerationSteps {
 public:
  explicit ChatSteps(SpanRunner& span) : span_(span) {}
  at::Tensor step(const at::Tensor& hidden) override { return span_.step(kSession, hidden); }

 private:
  SpanRunner& span_;
};

}  // namespace

LocalChat::LocalChat(const GenerateConfig& config, const std::string& chat_template) : config_(config) {
  if (config_.threads > 0) at::set_num_threads(config_.threads);
  template_ = load_chat_template(config_.model, chat_template);
  tokenizer_ = load_model_tokenizer(config_.model);
  head_ = std::make_unique<ClientHead>(ClientHeadConfig{config_.model, config_.dtype, config_.device});
  span_ = std::make_unique<SpanRunner>(SpanRunnerConfig{
      config_.model, 0, -1, config_.dtype, config_.device, config_.quant, {}, ::isatty(STDERR_FILENO) != 0});
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
    throw InputError(
        fmt::format("the conversation ({} tokens) and {} new ones exceed the {} positions this chat "
                    "holds; start a new chat",
                    prompt.size(), config_.max_new_tokens, max_length_));
  }
  // Keep the cache for the longest prefix it shares with this prompt; feed only the rest.
  size_t common = 0;
  while (common < cached_ids_.size() && common < prompt.size() && cached_ids_[common] == prompt[common]) ++common;
  if (common == prompt.size()) --common;  // at least one token to feed, to get logits
  span_->truncate_session(kSession, static_cast<int64_t>(common));
  cached_ids_.resize(common);
  const std::vector<TokenId> fresh(prompt.begin() + static_cast<std::ptrdiff_t>(common), prompt.end());
  last_fed_ = static_cast<int64_t>(fresh.size());

  GenerationRequest request;
  request.prompt_ids = prompt;
  request.prompt_cached = static_cast<int64_t>(common);
  request.max_new_tokens = config_.max_new_tokens;
  request.sampling = {config_.temperature, config_.top_k, config_.top_p, config_.repetition_penalty, config_.seed};
  request.eos_ids = head_->model_config().eos_token_ids;
  if (tokenizer_->eos_id) request.eos_ids.push_back(*tokenizer_->eos_id);
  const auto& eos = request.eos_ids;
  StreamDecoder stream(*tokenizer_);
  std::vector<TokenId> answer;
  at::NoGradGuard no_grad;
  ChatSteps steps(*span_);
  const GenerationResult result = run_generation(*head_, steps, request, [&](TokenId next) {
    if (std::find(eos.begin(), eos.end(), next) != eos.end()) return true;  // the loop ends on it
    answer.push_back(next);
    if (on_text) on_text(stream.push(next));
    return true;
  });
  // The session holds the prompt and every generated token but the last, which was never fed.
  cached_ids_ = prompt;
  if (!result.ids.empty()) cached_ids_.insert(cached_ids_.end(), result.ids.begin(), result.ids.end() - 1);
  if (on_text) on_text(stream.finish());
  std::string text = tokenizer_->decode(answer);
  messages_ = std::move(conversation);
  messages_.push_back({"assistant", text});
  return text;
}

}  // namespace bouquet::gpu
