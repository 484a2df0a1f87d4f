#include "gpu/chat_local.h"

#include "gpu/client_head.h"
#include "gpu/errors.h"
#include "gpu/gguf_tokenizer.h"
#include "gpu/span_runner.h"

#include <unistd.h>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>

namespace bouquet::gpu {
namespace {

constexpr SessionId kSession = 1;

// The chat's steps on the one session of the span that holds every block.
class LocalChatSteps final : public ChatSteps {
 public:
  explicit LocalChatSteps(SpanRunner& span) : span_(span) {}
  at::Tensor step(const at::Tensor& hidden) override { return span_.step(kSession, hidden); }
  void truncate(int64_t length) override { span_.truncate_session(kSession, length); }

 private:
  SpanRunner& span_;
};

}  // namespace

int64_t chat_max_length(const ModelConfig& model, int64_t requested, int64_t cap) {
  if (requested < 0) throw InputError(fmt::format("--max-length {} must be >= 0 (0 = the model's)", requested));
  const int64_t positions = model.max_position_embeddings;
  if (requested > positions) {
    throw InputError(fmt::format("--max-length {} exceeds the model's {} positions", requested, positions));
  }
  return requested > 0 ? requested : std::min(positions, cap);
}

LocalChat::LocalChat(const GenerateConfig& config, const std::string& chat_template, int64_t max_length) {
  if (config.threads > 0) at::set_num_threads(config.threads);
  ChatTemplate format = load_chat_template(config.model, chat_template);
  tokenizer_ = load_model_tokenizer(config.model);
  head_ = std::make_unique<ClientHead>(ClientHeadConfig{config.model, config.dtype, config.device, config.quant});
  const int64_t positions = chat_max_length(head_->model_config(), max_length, 8192);
  span_ = std::make_unique<SpanRunner>(SpanRunnerConfig{
      config.model, 0, -1, config.dtype, config.device, config.quant, {}, ::isatty(STDERR_FILENO) != 0});
  span_->open_session(kSession, 1, positions);
  steps_ = std::make_unique<LocalChatSteps>(*span_);
  chat_ = std::make_unique<Chat>(
      *head_, *tokenizer_, std::move(format), *steps_,
      ChatOptions{config.max_new_tokens,
                  {config.temperature, config.top_k, config.top_p, config.repetition_penalty, config.seed},
                  positions});
}

LocalChat::~LocalChat() = default;

int64_t LocalChat::cached_tokens() const { return span_->session_length(kSession); }

std::string LocalChat::reply(std::string_view user_message, const std::function<void(std::string_view)>& on_text) {
  return chat_->reply(user_message, on_text);
}

}  // namespace bouquet::gpu
