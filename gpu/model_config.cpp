#include "gpu/model_config.h"

#include "gpu/errors.h"
#include "gpu/family.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

namespace bouquet::gpu {

ConfigReader::ConfigReader(const nlohmann::json& json, std::filesystem::path file)
    : ConfigReader(json, std::move(file), "") {}

ConfigReader::ConfigReader(const nlohmann::json& json, std::filesystem::path file,
                           std::string prefix)
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

ModelConfig parse_model_config(std::string_view text, const std::filesystem::path& file) {
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw ModelFileError(fmt::format("{}: not valid JSON ({})", file.string(), e.what()));
  }
  if (!json.is_object()) throw ModelFileError(fmt::format("{}: not a JSON object", file.string()));
  const ConfigReader reader(json, file);
  ModelConfig config;
  config.family = reader.string("model_type");
  config.file = file;
  const Family* family = lookup_family(config.family);
  if (family == nullptr) {
    reader.fail("model_type", fmt::format("is '{}', which Bouquet cannot run (it knows: {})",
                                          config.family, fmt::join(family_names(), ", ")));
  }
  family->read_config(reader, config);
  // Every family stores weights in one of the dtypes the loader converts from.
  if (!config.torch_dtype.empty() && config.torch_dtype != "float32" &&
      config.torch_dtype != "float16" && config.torch_dtype != "bfloat16") {
    reader.fail("torch_dtype", fmt::format("is '{}' (expected float32, float16 or bfloat16)",
                                           config.torch_dtype));
  }
  return config;
}

ModelConfig load_model_config(const std::filesystem::path& model_dir) {
  const auto file = model_dir / "config.json";
  std::ifstream in(file);
  if (!in) throw ModelFileError(fmt::format("{}: cannot open", file.string()));
  std::stringstream text;
  text << in.rdbuf();
  return parse_model_config(text.str(), file);
}

}  // namespace bouquet::gpu
