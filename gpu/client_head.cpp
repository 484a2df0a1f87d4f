#include "gpu/client_head.h"

#include "gpu/checkpoint.h"
#include "gpu/errors.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

namespace bouquet::gpu {

ClientHead::ClientHead(const ClientHeadConfig& config)
    : model_config_(load_model_config(config.model_dir)),
      compute_(resolve_compute(config.dtype, config.device, config.quant)) {
  const Checkpoint checkpoint(config.model_dir);
  head_ = load_head(model_config_, checkpoint, compute_);
  checkpoint_bytes_read_ = checkpoint.bytes_read();
  tensors_read_ = checkpoint.tensors_read();
}

ClientHead::~ClientHead() = default;

at::Tensor ClientHead::embed(const at::Tensor& ids) const {
  if (!ids.defined() || ids.dim() != 2 || ids.is_floating_point() || ids.is_complex()) {
    throw InputError("token ids must be an integer [batch, tokens] tensor");
  }
  const at::Tensor as_long = ids.to(at::kLong);
  if (as_long.numel() > 0) {
    const int64_t low = as_long.min().item<int64_t>();
    const int64_t high = as_long.max().item<int64_t>();
    if (low < 0 || high >= model_config_.vocab_size) {
      throw InputError(
          fmt::format("token id {} is outside the vocabulary [0, {})", low < 0 ? low : high, model_config_.vocab_size));
    }
  }
  at::NoGradGuard no_grad;
  return head_->embed(as_long);
}

at::Tensor ClientHead::embed(const std::vector<TokenId>& ids) const {
  return embed(at::tensor(ids, at::TensorOptions().dtype(at::kLong)).unsqueeze(0));
}

at::Tensor ClientHead::logits(const at::Tensor& hidden) const {
  if (!hidden.defined() || hidden.dim() != 3 || hidden.size(2) != model_config_.hidden_size) {
    throw InputError(fmt::format("logits need [batch, tokens, {}] hidden states", model_config_.hidden_size));
  }
  at::NoGradGuard no_grad;
  return head_->logits(hidden);
}

at::Tensor ClientHead::logits_with_grad(const at::Tensor& hidden) const {
  if (!hidden.defined() || hidden.dim() != 3 || hidden.size(2) != model_config_.hidden_size) {
    throw InputError(fmt::format("logits need [batch, tokens, {}] hidden states", model_config_.hidden_size));
  }
  at::AutoGradMode grad_on(true);
  return head_->logits(hidden);
}

std::vector<float> ClientHead::last_logits(const at::Tensor& hidden) const {
  if (!hidden.defined() || hidden.dim() != 3 || hidden.size(0) == 0 || hidden.size(1) == 0) {
    throw InputError("last_logits needs non-empty [batch, tokens, hidden] hidden states");
  }
  const at::Tensor last = hidden.select(0, 0).narrow(0, hidden.size(1) - 1, 1).unsqueeze(0);
  const at::Tensor row = logits(last).reshape({-1}).to(at::kCPU).contiguous();
  return std::vector<float>(row.data_ptr<float>(), row.data_ptr<float>() + row.numel());
}

}  // namespace bouquet::gpu
