// Reading a device file (devices.h): every problem names the file and the key's path.
#include "sim/devices.h"

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

namespace bouquet::sim {
namespace {

using nlohmann::json;

class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  [[noreturn]] void fail(const std::string& path, const std::string& problem) const {
    throw DeviceFileError(fmt::format("device file {}: {}: {}", file_, path, problem));
  }
  const json& need(const json& parent, const std::string& parent_path, const std::string& key) const {
    const std::string path = parent_path.empty() ? key : parent_path + "." + key;
    if (!parent.is_object() || !parent.contains(key)) fail(path, "missing");
    return parent[key];
  }
  double number(const json& parent, const std::string& parent_path, const std::string& key, double lo,
                bool inclusive = true) const {
    const json& value = need(parent, parent_path, key);
    const std::string path = parent_path.empty() ? key : parent_path + "." + key;
    if (!value.is_number()) fail(path, fmt::format("{} is not a number", value.dump()));
    const double x = value.get<double>();
    if (!std::isfinite(x) || x < lo || (!inclusive && x == lo)) {
      fail(path, fmt::format("{} is not a finite number {} {:g}", value.dump(), inclusive ? ">=" : ">", lo));
    }
    return x;
  }
  int64_t integer(const json& parent, const std::string& parent_path, const std::string& key, int64_t lo) const {
    const json& value = need(parent, parent_path, key);
    const std::string path = parent_path.empty() ? key : parent_path + "." + key;
    if (!value.is_number_integer() || value.get<int64_t>() < lo) {
      fail(path, fmt::format("{} is not an integer >= {}", value.dump(), lo));
    }
    return value.get<int64_t>();
  }
  const json& array(const json& parent, const std::string& parent_path, const std::string& key) const {
    const json& value = need(parent, parent_path, key);
    if (!value.is_array()) fail(parent_path + "." + key, "not a list");
    return value;
  }

 private:
  std::string file_;
};

ModelShape read_shape(const Reader& r, const json& model) {
  ModelShape shape;
  const json& family = r.need(model, "model", "family");
  if (!family.is_string()) r.fail("model.family", "not a string");
  shape.name = "profiled " + family.get<std::string>();
  shape.hidden = r.integer(model, "model", "hidden", 1);
  shape.intermediate = r.integer(model, "model", "intermediate", 1);
  shape.heads = r.integer(model, "model", "heads", 1);
  shape.kv_heads = r.integer(model, "model", "kv_heads", 1);
  shape.vocab = r.integer(model, "model", "vocab", 1);
  shape.num_blocks = r.integer(model, "model", "blocks", 1);
  const bool bloom = family.get<std::string>() == "bloom";  // gpu/ knows llama and bloom
  shape.gated_mlp = !bloom;
  shape.linear_bias = bloom;
  shape.layer_norm = bloom;
  shape.tied_embeddings = bloom;
  return shape;
}

MeasuredFormat read_format(const Reader& r, const json& figures, const std::string& path) {
  MeasuredFormat out;
  const json& decode = r.array(figures, path, "decode");
  if (decode.empty()) r.fail(path + ".decode", "no figures");
  std::set<int64_t> batches, caches;
  std::set<std::pair<int64_t, int64_t>> points;
  for (size_t i = 0; i < decode.size(); ++i) {
    const std::string at = fmt::format("{}.decode.{}", path, i);
    MeasuredFormat::Decode d{r.integer(decode[i], at, "batch", 1), r.integer(decode[i], at, "cache_tokens", 0),
                             r.number(decode[i], at, "step_s", 0, false)};
    if (!points.insert({d.batch, d.cache_tokens}).second) r.fail(at, "the same batch and cache length twice");
    batches.insert(d.batch);
    caches.insert(d.cache_tokens);
    out.decode.push_back(d);
  }
  if (points.size() != batches.size() * caches.size()) {
    r.fail(path + ".decode", "not a full grid: every batch must be measured at every cache length");
  }
  // Prefill and backward points alike: batch, new tokens (at least `min_tokens`), seconds.
  const auto read_steps = [&](const char* key, int64_t min_tokens) {
    std::vector<MeasuredFormat::Prefill> steps;
    const json& list = r.array(figures, path, key);
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string at = fmt::format("{}.{}.{}", path, key, i);
      steps.push_back({r.integer(list[i], at, "batch", 1), r.integer(list[i], at, "new_tokens", min_tokens),
                       r.number(list[i], at, "step_s", 0, false)});
    }
    return steps;
  };
  out.prefill = read_steps("prefill", 2);
  if (figures.contains("backward")) out.backward = read_steps("backward", 1);
  return out;
}

}  // namespace

DeviceSpec read_device_file(const std::string& path) {
  const Reader r(path);
  std::ifstream in(path);
  if (!in) throw DeviceFileError(fmt::format("device file {}: cannot be read", path));
  std::stringstream text;
  text << in.rdbuf();
  json root;
  try {
    root = json::parse(text.str());
  } catch (const json::parse_error& e) {
    throw DeviceFileError(fmt::format("device file {}: not JSON ({})", path, e.what()));
  }
  if (!root.is_object()) throw DeviceFileError(fmt::format("device file {}: not a JSON object", path));
  const int64_t version = r.integer(root, "", "version", 0);
  if (version != kDeviceFileVersion) {
    r.fail("version", fmt::format("{} is not {} (the version this bouquet reads)", version, kDeviceFileVersion));
  }
  auto measured = std::make_shared<MeasuredDevice>();
  measured->file = path;
  measured->shape = read_shape(r, r.need(root, "", "model"));
  measured->read_bandwidth_bytes_per_s = r.number(root, "", "read_bandwidth_bytes_per_s", 0, false);
  measured->request_overhead_s = r.number(root, "", "request_overhead_s", 0);
  measured->block_overhead_s = r.number(root, "", "block_overhead_s", 0);
  const json& formats = r.need(root, "", "formats");
  if (!formats.is_object() || formats.empty()) r.fail("formats", "no weight format measured");
  for (const auto& [name, figures] : formats.items()) {
    if (name != "f32" && name != "bf16" && name != "int8") r.fail("formats." + name, "not one of f32, bf16, int8");
    measured->formats[name] = read_format(r, figures, "formats." + name);
  }

  DeviceSpec device;
  device.name = "file:" + path;
  device.is_gpu = false;
  device.memory_bytes = r.number(r.need(root, "", "machine"), "machine", "memory_bytes", 0, false);
  device.memory_bandwidth_bytes_per_s = measured->read_bandwidth_bytes_per_s;
  // The rate the longest prefill of the first format reached: a CPU's half and int8 types run
  // at its f32 rate (devices.h).
  const MeasuredFormat& rate_format =
      measured->formats.count("f32") ? measured->formats.at("f32") : measured->formats.begin()->second;
  double flops = 0;
  const double params = static_cast<double>(measured->shape.params_per_block());
  for (const auto& p : rate_format.prefill) flops = std::max(flops, 2.0 * params * p.batch * p.new_tokens / p.step_s);
  for (const auto& d : rate_format.decode) flops = std::max(flops, 2.0 * params * d.batch / d.step_s);
  device.f32_flops = device.f16_flops = device.int8_ops = flops;
  device.measured = std::move(measured);
  return device;
}

}  // namespace bouquet::sim
