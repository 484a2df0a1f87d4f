#include "sim/yaml_fields.h"

#include <fmt/core.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

namespace bouquet::sim {
namespace {

std::string child_path(const std::string& parent, std::string_view key) {
  return parent.empty() ? std::string(key) : fmt::format("{}.{}", parent, key);
}

std::string describe(const YAML::Node& node) {
  if (node.IsScalar()) return fmt::format("'{}'", node.Scalar());
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a mapping";
  return "nothing";
}

}  // namespace

std::string YamlSource::locate(const YAML::Node& node) const {
  for (const auto& [replaced, assignment] : overridden) {
    if (replaced.is(node)) return fmt::format("--set {}", assignment);
  }
  YAML::Mark mark = node.Mark();
  if (mark.is_null()) return file;
  return fmt::format("{}:{}:{}", file, mark.line + 1, mark.column + 1);
}

void YamlValue::fail(std::string_view message) const {
  std::string where = source ? source->locate(node) : std::string("<yaml>");
  throw ScenarioError(fmt::format("{}: {}: {}", where, path.empty() ? "(top level)" : path, message));
}

YamlMap::YamlMap(const YamlValue& value) : value_(value) {
  if (!value_.node.IsMap()) value_.fail(fmt::format("expected a mapping, got {}", describe(value_.node)));
}

bool YamlMap::has(std::string_view key) const {
  const YAML::Node& node = value_.node;  // const access never inserts the key
  return static_cast<bool>(node[std::string(key)]);
}

std::optional<YamlValue> YamlMap::optional(std::string_view key) {
  read_.emplace_back(key);
  const YAML::Node& node = value_.node;
  YAML::Node child = node[std::string(key)];
  if (!child || child.IsNull()) return std::nullopt;
  return YamlValue{child, child_path(value_.path, key), value_.source};
}

YamlValue YamlMap::required(std::string_view key) {
  std::optional<YamlValue> child = optional(key);
  if (!child) value_.fail(fmt::format("missing required key '{}'", key));
  return *child;
}

void YamlMap::finish() const {
  for (auto it = value_.node.begin(); it != value_.node.end(); ++it) {
    const std::string key = it->first.as<std::string>();
    if (std::find(read_.begin(), read_.end(), key) == read_.end()) {
      YamlValue unknown{it->first, child_path(value_.path, key), value_.source};
      unknown.fail(fmt::format("unknown key (known here: {})", fmt::join(read_, ", ")));
    }
  }
}

double read_double(const YamlValue& value) {
  if (!value.node.IsScalar()) value.fail(fmt::format("expected a number, got {}", describe(value.node)));
  const std::string& text = value.node.Scalar();
  if (text == ".inf" || text == "inf") return std::numeric_limits<double>::infinity();
  double out = 0;
  if (!YAML::convert<double>::decode(value.node, out) || std::isnan(out)) {
    value.fail(fmt::format("expected a number, got '{}'", text));
  }
  return out;
}

int64_t read_int(const YamlValue& value) {
  double number = read_double(value);
  if (number != std::floor(number) || std::abs(number) > 9.0e15) {
    value.fail(fmt::format("expected an integer, got '{}'", value.node.Scalar()));
  }
  return static_cast<int64_t>(number);
}

bool read_bool(const YamlValue& value) {
  bool out = false;
  if (!value.node.IsScalar() || !YAML::convert<bool>::decode(value.node, out)) {
    value.fail(fmt::format("expected true or false, got {}", describe(value.node)));
  }
  return out;
}

std::string read_string(const YamlValue& value) {
  if (!value.node.IsScalar()) value.fail(fmt::format("expected text, got {}", describe(value.node)));
  return value.node.Scalar();
}

std::vector<YamlValue> read_list(const YamlValue& value) {
  if (!value.node.IsSequence()) value.fail(fmt::format("expected a list, got {}", describe(value.node)));
  std::vector<YamlValue> items;
  for (size_t i = 0; i < value.node.size(); ++i) {
    items.push_back({value.node[i], child_path(value.path, std::to_string(i)), value.source});
  }
  return items;
}

std::vector<std::pair<std::string, std::string>> read_string_map(const YamlValue& value) {
  if (!value.node.IsMap()) value.fail(fmt::format("expected a mapping, got {}", describe(value.node)));
  std::vector<std::pair<std::string, std::string>> entries;
  for (auto it = value.node.begin(); it != value.node.end(); ++it) {
    YamlValue entry{it->second, child_path(value.path, it->first.as<std::string>()), value.source};
    if (!it->second.IsScalar()) entry.fail("expected a single value");
    entries.emplace_back(it->first.as<std::string>(), it->second.Scalar());
  }
  return entries;
}

double read_number_in(const YamlValue& value, double lo, double hi, Infinity infinity) {
  const double number = read_double(value);
  if (infinity == Infinity::allowed && number == std::numeric_limits<double>::infinity()) return number;
  if (!(std::isfinite(number) && number >= lo && number <= hi)) {
    value.fail(fmt::format("must be {}in [{:g}, {:g}]{}, got {}",
                           infinity == Infinity::allowed ? "" : "a finite number ", lo, hi,
                           infinity == Infinity::allowed ? " or .inf" : "", value.node.Scalar()));
  }
  return number;
}

int64_t read_int_in(const YamlValue& value, int64_t lo, int64_t hi) {
  const int64_t number = read_int(value);
  if (number < lo || number > hi) {
    value.fail(fmt::format("must be an integer in [{}, {}], got {}", lo, hi, value.node.Scalar()));
  }
  return number;
}

double read_non_negative(const YamlValue& value) {
  return read_number_in(value, 0, std::numeric_limits<double>::max());
}

double read_probability(const YamlValue& value) { return read_number_in(value, 0, 1); }

int64_t read_count(const YamlValue& value) { return read_int_in(value, 1, std::numeric_limits<int64_t>::max()); }

namespace {

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= path.size()) {
    size_t dot = path.find('.', start);
    if (dot == std::string_view::npos) dot = path.size();
    parts.emplace_back(path.substr(start, dot - start));
    start = dot + 1;
  }
  return parts;
}

void set_at(YAML::Node node, const std::vector<std::string>& parts, size_t i, const std::string& assignment,
            YamlSource& source) {
  const std::string& part = parts[i];
  const bool last = i + 1 == parts.size();
  if (node.IsSequence()) {
    std::vector<size_t> indices;
    if (part == "*") {
      for (size_t k = 0; k < node.size(); ++k) indices.push_back(k);
    } else {
      size_t index = 0;
      auto [end, error] = std::from_chars(part.data(), part.data() + part.size(), index);
      if (error != std::errc() || end != part.data() + part.size() || index >= node.size()) {
        throw ScenarioError(
            fmt::format("--set {}: '{}' is not an index of a list of {}", assignment, part, node.size()));
      }
      indices.push_back(index);
    }
    for (size_t k : indices) {
      if (last) {
        YAML::Node replacement = YAML::Load(assignment.substr(assignment.find('=') + 1));
        node[k] = replacement;
        source.overridden.emplace_back(node[k], assignment);
      } else {
        set_at(node[k], parts, i + 1, assignment, source);
      }
    }
    return;
  }
  if (!node.IsMap() && node.IsDefined() && !node.IsNull()) {
    throw ScenarioError(fmt::format("--set {}: '{}' is inside a single value", assignment, part));
  }
  if (last) {
    node[part] = YAML::Load(assignment.substr(assignment.find('=') + 1));
    source.overridden.emplace_back(node[part], assignment);
    return;
  }
  // (Never assign one YAML::Node variable to another: yaml-cpp would rewrite the tree.)
  const YAML::Node& view = node;
  if (!view[part] || view[part].IsNull()) node[part] = YAML::Node(YAML::NodeType::Map);
  set_at(node[part], parts, i + 1, assignment, source);
}

}  // namespace

void apply_override(YAML::Node root, std::string_view assignment, YamlSource& source) {
  const size_t eq = assignment.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    throw ScenarioError(fmt::format("--set {}: expected key.path=value", assignment));
  }
  std::vector<std::string> parts = split_path(assignment.substr(0, eq));
  for (const auto& part : parts) {
    if (part.empty()) throw ScenarioError(fmt::format("--set {}: empty key in the path", assignment));
  }
  try {
    set_at(root, parts, 0, std::string(assignment), source);
  } catch (const YAML::Exception& e) {
    throw ScenarioError(fmt::format("--set {}: the value is not valid YAML ({})", assignment, e.msg));
  }
}

}  // namespace bouquet::sim
