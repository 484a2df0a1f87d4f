// A model family (Llama, BLOOM, ...) behind one small interface, llama.cpp-style: read the
// hyper-parameters from config.json, name and shape the tensors of a block and of the client head,
// and build runnable blocks and heads from loaded tensors. Each family lives in one file
// (gpu/<family>.cpp); adding one touches that file and one line of the registry in family.cpp.
//
// load_block() and load_head() are the family-neutral loaders: they read exactly the tensors the
// family names, check each one's shape against config.json and its dtype against config.json's
// torch_dtype (ModelFileError naming the file and the tensor), and convert it to the compute
// dtype and device once. Loaded weights never require gradients.
#pragma once

#include "gpu/compute_options.h"
#include "gpu/model_config.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace bouquet::gpu {

class TensorSource;

// A tensor a family expects in a checkpoint, and how make-tiny-model draws it at random
// (normal with this mean and standard deviation). Checkpoints of one family do not always agree on
// names (BLOOM's come with and without a "transformer." prefix): the loader takes the first of
// `name`, then `other_names`, that the checkpoint holds, and files it under `name` either way.
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  double init_mean = 0.0;
  double init_std = 0.02;
  std::vector<std::string> other_names = {};
};

using TensorMap = std::map<std::string, at::Tensor>;

// One block's attention keys and values for `batch` sequences, preallocated to a capacity:
// [batch, kv_heads, capacity, head_dim] each. The caller tracks how many positions are filled.
struct KvCache {
  at::Tensor key;
  at::Tensor value;
};

// One session's part of a batched step (Block::forward_batch).
struct BatchPart {
  at::Tensor hidden;           // [batch, new_tokens, hidden_size]
  int64_t start_position = 0;  // of its first new token
  KvCache* cache = nullptr;    // this session's cache (nullptr: attends only among its new tokens)
};

// A transformer block in three stages: row-wise work before attention (norm and the fused query,
// key and value projection), attention (per sequence, against its cache), and row-wise work after
// it (output projection, residuals, MLP). Row-wise stages read the weights; attention reads a
// session's cache. forward() chains them for one request; forward_batch() runs the row-wise
// stages once over every part's rows, so a batch of sessions reads the weights once.
class Block {
 public:
  virtual ~Block() = default;
  // `hidden` is [batch, new_tokens, hidden_size] in the compute dtype and device; token i sits at
  // absolute position start_position + i. With a cache, this call's keys and values are written
  // at [start_position, start_position + new_tokens) and attention covers every position up to
  // each token's own; the cache must hold start_position valid positions already. Without one,
  // the new tokens attend only among themselves (causally). Autograd flows unless the caller
  // turns it off.
  at::Tensor forward(const at::Tensor& hidden, int64_t start_position, KvCache* cache) const;
  // Every part as forward() would compute it alone (equal within floating-point rounding: the
  // row-wise products see all parts' rows at once), each part's keys and values written to its
  // own cache at its own positions. Returns the parts' outputs in order, each of its input's shape.
  std::vector<at::Tensor> forward_batch(const std::vector<BatchPart>& parts) const;
  virtual KvCache make_cache(int64_t batch, int64_t capacity) const = 0;
  // Bytes of this block's weights as held in memory (in the compute dtype).
  virtual uint64_t weight_bytes() const = 0;

 protected:
  // [..., hidden_size] -> [..., projected width]: what attention needs of each row.
  virtual at::Tensor project(const at::Tensor& hidden) const = 0;
  // `projected` [batch, new_tokens, width] of one request -> [batch, new_tokens, attention width],
  // writing its keys and values to `cache` (when given) as forward() describes.
  virtual at::Tensor attend(const at::Tensor& projected, int64_t start_position, KvCache* cache) const = 0;
  // The block's output rows from its input rows and their attention outputs ([..., width] each).
  virtual at::Tensor finish(const at::Tensor& hidden, const at::Tensor& attended) const = 0;
};

// The client's part of a model: token embeddings in, logits out.
class Head {
 public:
  virtual ~Head() = default;
  // [batch, tokens] int64 ids (already range-checked) -> [batch, tokens, hidden_size].
  virtual at::Tensor embed(const at::Tensor& ids) const = 0;
  // [batch, tokens, hidden_size] last block outputs -> [batch, tokens, vocab_size] f32 logits
  // (final norm and LM head).
  virtual at::Tensor logits(const at::Tensor& hidden) const = 0;
};

class Family {
 public:
  virtual ~Family() = default;
  virtual std::string_view model_type() const = 0;
  // Fills `config` (whose `family` and `file` are already set) from the family's field names;
  // missing or inconsistent fields throw through reader.fail().
  virtual void read_config(const ConfigReader& reader, ModelConfig& config) const = 0;
  // config.json text a Hugging Face loader accepts for `config` (used by make-tiny-model).
  virtual std::string write_config(const ModelConfig& config) const = 0;
  virtual std::vector<TensorSpec> block_tensors(const ModelConfig& config, int64_t block) const = 0;
  virtual std::vector<TensorSpec> head_tensors(const ModelConfig& config) const = 0;
  virtual std::unique_ptr<Block> make_block(const ModelConfig& config, int64_t block, TensorMap weights,
                                            const ComputeOptions& options) const = 0;
  virtual std::unique_ptr<Head> make_head(const ModelConfig& config, TensorMap weights,
                                          const ComputeOptions& options) const = 0;
};

// nullptr when no family has this model_type.
const Family* lookup_family(std::string_view model_type);
std::vector<std::string_view> family_names();
// The family of config.family (a config from load_model_config always has one).
const Family& family_of(const ModelConfig& config);

std::unique_ptr<Block> load_block(const ModelConfig& config, const TensorSource& source, int64_t block,
                                  const ComputeOptions& options);
std::unique_ptr<Head> load_head(const ModelConfig& config, const TensorSource& source, const ComputeOptions& options);

}  // namespace bouquet::gpu
