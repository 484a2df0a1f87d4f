// A model's hyper-parameters as read from a Hugging Face `config.json`. The family named by
// `model_type` reads its own field names (see family.h); this header holds the family-neutral
// result and the reader that turns a missing or mistyped field into a ModelFileError naming the
// file and the field.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bouquet::gpu {

// Llama-3 style frequency-dependent RoPE scaling (`rope_scaling` with rope_type "llama3").
struct RopeScaling {
  std::string type = "llama3";
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string family;  // config.json's model_type
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t vocab_size = 0;
  double norm_eps = 1e-5;
  double rope_theta = 10000.0;
  std::optional<RopeScaling> rope_scaling;
  bool tie_word_embeddings = false;
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;
  int64_t max_position_embeddings = 2048;
  std::string torch_dtype;     // "float32" | "float16" | "bfloat16", or "" when config.json has none
  std::filesystem::path file;  // the config.json this came from (empty when built in memory)
};

// Bounds on config.json sizes: far above any released model, far below sizes whose products
// overflow an allocation. A value outside them is a corrupt or hostile config, refused by name.
inline constexpr int64_t kMaxConfigWidth = int64_t{1} << 20;  // hidden, intermediate, heads, head_dim
inline constexpr int64_t kMaxConfigVocab = int64_t{1} << 24;
inline constexpr int64_t kMaxConfigLayers = 65536;
inline constexpr int64_t kMaxConfigPositions = int64_t{1} << 30;

// Reads typed fields of one config.json; every failure names the file and the field.
class ConfigReader {
 public:
  ConfigReader(const nlohmann::json& json, std::filesystem::path file);

  bool has(std::string_view field) const;  // present and not null
  int64_t integer(std::string_view field) const;
  int64_t integer(std::string_view field, int64_t fallback) const;
  // An integer in [lo, hi]: "field 'x' is 1e9, outside [0, 31999]" otherwise.
  int64_t integer_in(std::string_view field, int64_t lo, int64_t hi) const;
  int64_t integer_in(std::string_view field, int64_t fallback, int64_t lo, int64_t hi) const;
  double number(std::string_view field) const;
  // A finite number in [lo, hi].
  double number_in(std::string_view field, double lo, double hi) const;
  double number_in(std::string_view field, double fallback, double lo, double hi) const;
  double number(std::string_view field, double fallback) const;
  bool boolean(std::string_view field, bool fallback) const;
  std::string string(std::string_view field) const;
  std::string string(std::string_view field, std::string fallback) const;
  // An id or a list of ids (Llama 3 lists several eos ids); empty when absent.
  std::vector<int64_t> id_list(std::string_view field) const;
  // A nested object as its own reader (fields named "outer.inner" in messages).
  ConfigReader object(std::string_view field) const;

  [[noreturn]] void fail(std::string_view field, std::string_view what) const;
  const std::filesystem::path& file() const { return file_; }

 private:
  ConfigReader(const nlohmann::json& json, std::filesystem::path file, std::string prefix);
  const nlohmann::json& at(std::string_view field) const;

  const nlohmann::json* json_;  // not owned: a reader lives while its document is parsed
  std::filesystem::path file_;
  std::string prefix_;
};

// Parses `model_dir/config.json` with the reader of the family its model_type names; for a
// `.gguf` file, the config its metadata gives (see gguf_checkpoint.h).
ModelConfig load_model_config(const std::filesystem::path& model_dir);
// Same, from text; `file` is only used in messages.
ModelConfig parse_model_config(std::string_view text, const std::filesystem::path& file);

}  // namespace bouquet::gpu
