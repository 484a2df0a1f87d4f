#include "sim/profile.h"

#include "sim/yaml_fields.h"

#include <fmt/core.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

namespace bouquet::sim {
namespace {

constexpr double kMinEfficiency = 1e-6;  // a share of a roof; 0 would divide by zero
constexpr double kMaxOverheadS = 60;
constexpr double kMaxFailureS = 600;

std::string read_text(const std::string& path, const char* what) {
  std::ifstream in(path);
  if (!in) throw ScenarioError(fmt::format("{}: cannot read the {}", path, what));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

ProfileParameter read_parameter(const YamlValue& value, const std::string& key, double lo, double hi) {
  ProfileParameter p;
  p.key = key;
  p.lo = lo;
  p.hi = hi;
  YamlMap map(value);
  YamlValue number = map.required("value");
  p.value = read_number_in(number, lo, hi);
  p.line = number.node.Mark().line + 1;
  p.column = number.node.Mark().column + 1;
  auto source = map.optional("source");
  auto fitted = map.optional("fitted");
  if (source && fitted) value.fail("a parameter is either a cited fact (source) or fitted, not both");
  if (!source && !fitted) value.fail("say where the value comes from: source (a citation) or fitted (its rows)");
  if (source) {
    p.source = read_string(*source);
    if (p.source.empty()) source->fail("cite the fact");
  } else {
    for (const auto& row : read_list(*fitted)) {
      std::string name = read_string(row);
      if (std::count(name.begin(), name.end(), '/') != 1 || name.front() == '/' || name.back() == '/') {
        row.fail(fmt::format("'{}' is not SCENARIO/ROW", name));
      }
      p.rows.push_back(std::move(name));
    }
    if (p.rows.empty()) fitted->fail("a fitted parameter names at least one calibration row");
  }
  map.finish();
  return p;
}

}  // namespace

const ProfileParameter* Profile::find(const std::string& key) const {
  for (const auto& p : parameters) {
    if (p.key == key || std::find(p.aliases.begin(), p.aliases.end(), key) != p.aliases.end()) return &p;
  }
  return nullptr;
}

namespace {

// Adds `p`, or makes its key an alias of the parameter already read from the same node.
void add_parameter(Profile& profile, ProfileParameter p) {
  for (auto& known : profile.parameters) {
    if (known.line == p.line && known.column == p.column) {
      known.aliases.push_back(p.key);
      return;
    }
  }
  profile.parameters.push_back(std::move(p));
}

}  // namespace

std::vector<std::string> Profile::calibration_rows() const {
  std::vector<std::string> rows;
  for (const auto& p : parameters) {
    for (const auto& row : p.rows) {
      if (std::find(rows.begin(), rows.end(), row) == rows.end()) rows.push_back(row);
    }
  }
  return rows;
}

bool Profile::is_calibration_row(const std::string& scenario, const std::string& row) const {
  const auto rows = calibration_rows();
  return std::find(rows.begin(), rows.end(), scenario + "/" + row) != rows.end();
}

Profile load_profile(const std::string& path) {
  const std::string text = read_text(path, "profile file");
  YamlSource source{path, {}};
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    throw ScenarioError(fmt::format("{}:{}:{}: not valid YAML: {}", path, e.mark.line + 1, e.mark.column + 1, e.msg));
  }
  Profile profile;
  profile.path = path;
  YamlMap map(YamlValue{root, "", &source});
  YamlValue version = map.required("version");
  if (read_int(version) != 1) version.fail("this build reads profile version 1");
  profile.name = read_string(map.required("name"));
  if (auto v = map.optional("description")) read_string(*v);
  if (auto v = map.optional("procedure")) {
    profile.procedure = read_string(*v);
    profile.lines["procedure"] = v->node.Mark().line + 1;
  }
  profile.lines["(top level)"] = 1;
  if (auto v = map.optional("formats")) {
    profile.lines["formats"] = v->node.Mark().line + 1;
    YamlMap formats(*v);
    for (WeightFormat format : kWeightFormats) {
      auto f = formats.optional(format_name(format));
      if (!f) continue;
      profile.lines[f->path] = f->node.Mark().line + 1;
      YamlMap params(*f);
      for (const char* name : kFormatParameters) {
        auto p = params.optional(name);
        if (!p) continue;
        const bool share = std::string_view(name).ends_with("_eff");
        add_parameter(profile, read_parameter(*p, fmt::format("{}.{}", format_name(format), name),
                                              share ? kMinEfficiency : 0.0, share ? 1.0 : kMaxOverheadS));
      }
      params.finish();
    }
    formats.finish();
  }
  if (auto v = map.optional("client")) {
    YamlMap client(*v);
    for (const char* name : kClientParameters) {
      if (auto p = client.optional(name)) {
        add_parameter(profile, read_parameter(*p, fmt::format("client.{}", name), 0.0, 1e13));
      }
    }
    client.finish();
  }
  if (auto v = map.optional("failure")) {
    profile.lines["failure"] = v->node.Mark().line + 1;
    YamlMap failure(*v);
    for (const char* name : kFailureParameters) {
      if (auto p = failure.optional(name)) {
        add_parameter(profile, read_parameter(*p, fmt::format("failure.{}", name), 0.0, kMaxFailureS));
      }
    }
    failure.finish();
  }
  map.finish();
  const bool fits = std::any_of(profile.parameters.begin(), profile.parameters.end(),
                                [](const ProfileParameter& p) { return p.fitted(); });
  if (fits && profile.procedure.empty()) {
    map.value().fail("a profile with fitted parameters says how they are fitted (procedure)");
  }
  return profile;
}

std::string profile_path(const std::string& scenario_path, const std::string& name) {
  const std::filesystem::path folder = std::filesystem::path(scenario_path).parent_path();
  return (folder / "profiles" / (name + ".yaml")).string();
}

void set_parameter(const std::string& key, double value, CostModelConfig& cost, FailureCost& failure) {
  const auto dot = key.find('.');
  const std::string group = key.substr(0, dot);
  const std::string name = key.substr(dot + 1);
  if (group == "client") {
    if (name == "history_copy_bytes_per_s") cost.client_history_copy_bytes_per_s = value;
    if (name == "hop_overhead_s") cost.client_hop_overhead_s = value;
    return;
  }
  if (group == "failure") {
    if (name == "detection_s") failure.detection_s = value;
    if (name == "reconnect_s") failure.reconnect_s = value;
    if (name == "reroute_s") failure.reroute_s = value;
    if (name == "replay_s_per_position") failure.replay_s_per_position = value;
    return;
  }
  FormatCost& f = cost.of(*parse_weight_format(group));
  if (name == "compute_eff") f.compute_eff = value;
  if (name == "memory_eff") f.memory_eff = value;
  if (name == "block_overhead_s") f.block_overhead_s = value;
  if (name == "request_overhead_s") f.request_overhead_s = value;
}

void write_profile_values(const Profile& profile, const std::map<std::string, double>& values) {
  std::vector<std::string> lines;
  {
    std::istringstream in(read_text(profile.path, "profile file"));
    for (std::string line; std::getline(in, line);) lines.push_back(line);
  }
  const std::regex number(R"(value:\s*[-+0-9.eE]+)");
  for (const auto& [key, value] : values) {
    const ProfileParameter* p = profile.find(key);
    if (!p || p->line < 1 || p->line > static_cast<int>(lines.size())) continue;
    std::string& line = lines[static_cast<size_t>(p->line - 1)];
    line =
        std::regex_replace(line, number, fmt::format("value: {:.4g}", value), std::regex_constants::format_first_only);
  }
  std::ofstream out(profile.path);
  if (!out) throw ScenarioError(fmt::format("{}: cannot write the profile file", profile.path));
  for (const auto& line : lines) out << line << "\n";
}

}  // namespace bouquet::sim
