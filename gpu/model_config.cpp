#include "gpu/model_config.h"

#include "gpu/errors.h"
#include "gpu/family.h"
#include "gpu/gguf.h"
#include "gpu/gguf_checkpoint.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <sstream>

namespace bouquet::gpu {

ConfigReader::ConfigReader(const nlohmann::json& json, std::filesystem::path file)
    : ConfigReader(json, std::move(file), "") {}

ConfigReader::ConfigReader(const nlohmann::json& json, std::filesystem::path file, std::string prefix)
    : json_(&json), file_(std::move(file)), prefix_(std::move(prefix)) {}

void ConfigReader::fail(std::string_view field, std::string_view what) const {
  throw ModelFileError(fmt::format("{}: field '{}{}' {}", file_.string(), prefix_, field, what));
}

bool ConfigReader::has(std::string_view field) const {
  const auto it = json_->find(field);
  return it != json_->end() && !it->is_null();
}

const nlohmann::json& ConfigReader::at(std::string_view field) const {
  if (!has(field)) fail(field, "is missing");
  return *json_->find(field);
}

int64_t ConfigReader::integer(std::string_view field) const {
  const auto& v = at(field);
  if (!v.is_number_integer()) fail(field, fmt::format("is not an integer ({})", v.dump()));
  return v.get<int64_t>();
}

int64_t ConfigReader::integer(std::string_view field, int64_t fallback) const {
  return has(field) ? integer(field) : fallback;
}

int64_t ConfigReader::integer_in(std::string_view field, int64_t lo, int64_t hi) const {
  const auto& v = at(field);
  if (!v.is_number_integer()) fail(field, fmt::format("is not an integer ({})", v.dump()));
  // An unsigned value above int64's range is out of range, not the negative number a cast makes.
  const bool huge = v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX);
  if (huge || v.get<int64_t>() < lo || v.get<int64_t>() > hi) {
    fail(field, fmt::format("is {}, outside [{}, {}]", v.dump(), lo, hi));
  }
  return v.get<int64_t>();
}

int64_t ConfigReader::integer_in(std::string_view field, int64_t fallback, int64_t lo, int64_t hi) const {
  return has(field) ? integer_in(field, lo, hi) : fallback;
}

double ConfigReader::number_in(std::string_view field, double lo, double hi) const {
  const double v = number(field);
  if (!std::isfinite(v) || v < lo || v > hi) {
    fail(field, fmt::format("is {:g}, outside [{:g}, {:g}]", v, lo, hi));
  }
  return v;
}

double ConfigReader::number_in(std::string_view field, double fallback, double lo, double hi) const {
  return has(field) ? number_in(field, lo, hi) : fallback;
}

double ConfigReader::number(std::string_view field) const {
  const auto& v = at(field);
  if (!v.is_number()) fail(field, fmt::format("is not a number ({})", v.dump()));
  return v.get<double>();
}

double ConfigReader::number(std::string_view field, double fallback) const {
  return has(field) ? number(field) : fallback;
}

bool ConfigReader::boolean(std::string_view field, bool fallback) const {
  if (!has(field)) return fallback;
  const auto& v = at(field);
  if (!v.is_boolean()) fail(field, fmt::format("is not true or false ({})", v.dump()));
  return v.get<bool>();
}

std::string ConfigReader::string(std::string_view field) const {
  const auto& v = at(field);
  if (!v.is_string()) fail(field, fmt::format("is not a string ({})", v.dump()));
  return v.get<std::string>();
}

std::string ConfigReader::string(std::string_view field, std::string fallback) const {
  return has(field) ? string(field) : fallback;
}

std::vector<int64_t> ConfigReader::id_list(std::string_view field) const {
  if (!has(field)) return {};
  const auto& v = at(field);
  if (v.is_null()) return {};  // "pad_token_id": null, as many Hugging Face configs write "none"
  if (v.is_number_integer()) return {v.get<int64_t>()};
  std::vector<int64_t> ids;
  if (v.is_array()) {
    for (const auto& id : v) {
      if (!id.is_number_integer()) fail(field, "holds a value that is not a token id");
      ids.push_back(id.get<int64_t>());
    }
    return ids;
  }
  fail(field, fmt::format("is neither a token id nor a list of them ({})", v.dump()));
}

ConfigReader ConfigReader::object(std::string_view field) const {
  const auto& v = at(field);
  if (!v.is_object()) fail(field, fmt::format("is not an object ({})", v.dump()));
  return ConfigReader(v, file_, fmt::format("{}{}.", prefix_, field));
}

namespace {

// Token ids index the embedding: one outside the vocabulary would read past it. The field names are
// the same in every family's config.json; pad_token_id is checked though unused, as a sign of a
// config that does not belong to these weights (null and -1, which real configs use for "none",
// pass).
void check_token_ids(const ConfigReader& reader, const ModelConfig& c) {
  const auto check = [&](std::string_view field, int64_t id) {
    if (id < 0 || id >= c.vocab_size) {
      reader.fail(field, fmt::format("is {}, outside [0, vocab_size {})", id, c.vocab_size));
    }
  };
  if (c.bos_token_id) check("bos_token_id", *c.bos_token_id);
  for (int64_t id : c.eos_token_ids) check("eos_token_id", id);
  for (int64_t id : reader.id_list("pad_token_id")) {
    if (id != -1) check("pad_token_id", id);  // -1: "no padding token" in older Llama configs
  }
}

}  // namespace

ModelConfig parse_model_config(std::string_view text, const std::filesystem::path& file) {
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for 1e400
    throw ModelFileError(fmt::format("{}: not valid JSON ({})", file.string(), e.what()));
  }
  if (!json.is_object()) throw ModelFileError(fmt::format("{}: not a JSON object", file.string()));
  const ConfigReader reader(json, file);
  ModelConfig config;
  config.family = reader.string("model_type");
  config.file = file;
  const Family* family = lookup_family(config.family);
  if (family == nullptr) {
    reader.fail("model_type", fmt::format("is '{}', which Bouquet cannot run (it knows: {})", config.family,
                                          fmt::join(family_names(), ", ")));
  }
  family->read_config(reader, config);
  check_token_ids(reader, config);
  // Every family stores weights in one of the dtypes the loader converts from.
  if (!config.torch_dtype.empty() && config.torch_dtype != "float32" && config.torch_dtype != "float16" &&
      config.torch_dtype != "bfloat16") {
    reader.fail("torch_dtype", fmt::format("is '{}' (expected float32, float16 or bfloat16)", config.torch_dtype));
  }
  return config;
}

ModelConfig load_model_config(const std::filesystem::path& model_dir) {
  if (is_gguf_path(model_dir)) return load_gguf_model_config(model_dir);
  const auto file = model_dir / "config.json";
  std::ifstream in(file);
  if (!in) throw ModelFileError(fmt::format("{}: cannot open", file.string()));
  std::stringstream text;
  text << in.rdbuf();
  return parse_model_config(text.str(), file);
}

}  // namespace bouquet::gpu
