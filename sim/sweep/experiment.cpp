#include "sim/sweep/experiment.h"

#include "core/peer_id.h"
#include "sim/scenario.h"
#include "sim/sweep/metrics.h"
#include "sim/yaml_fields.h"

#include <fmt/core.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>

namespace bouquet::sim::sweep {
namespace {

// Column names the CSVs use for themselves.
const std::set<std::string> kReservedColumns = {"run_id", "seed", "status", "error", "wall_s", "runs", "failed"};
constexpr size_t kMaxPanels = 16;

// A value as --set takes it: a scalar as written, anything else in YAML flow style.
std::string value_text(const YAML::Node& node) {
  if (node.IsScalar()) return node.Scalar();
  YAML::Emitter out;
  out.SetMapFormat(YAML::Flow);
  out.SetSeqFormat(YAML::Flow);
  out << node;
  return out.c_str();
}

std::vector<std::string> read_assignments(const YamlValue& value) {
  if (!value.node.IsMap()) value.fail("expected a mapping of key.path: value");
  std::vector<std::string> out;
  for (auto it = value.node.begin(); it != value.node.end(); ++it) {
    out.push_back(fmt::format("{}={}", it->first.as<std::string>(), value_text(it->second)));
  }
  return out;
}

std::vector<uint64_t> read_seeds(const YamlValue& value) {
  std::vector<uint64_t> seeds;
  if (value.node.IsMap()) {
    YamlMap map(value);
    const int64_t count = read_count(map.required("count"));
    int64_t first = 1;
    if (auto v = map.optional("first")) first = read_int(*v);
    map.finish();
    if (first < 0) map.required("first").fail("seeds are not negative");
    for (int64_t i = 0; i < count; ++i) seeds.push_back(static_cast<uint64_t>(first + i));
    return seeds;
  }
  for (const auto& item : read_list(value)) {
    const int64_t seed = read_int(item);
    if (seed < 0) item.fail("seeds are not negative");
    if (std::find(seeds.begin(), seeds.end(), static_cast<uint64_t>(seed)) != seeds.end()) {
      item.fail("this seed is listed twice");
    }
    seeds.push_back(static_cast<uint64_t>(seed));
  }
  if (seeds.empty()) value.fail("give at least one seed");
  return seeds;
}

struct AxisSource {
  YamlValue node;
  std::vector<YamlValue> values;
};

// (YamlValues are only ever constructed, never assigned: assigning a YAML::Node rewrites the
// tree it points into.)
Axis read_axis(const YamlValue& value, std::vector<AxisSource>& sources) {
  YamlMap map(value);
  Axis axis;
  axis.name = read_string(map.required("name"));
  if (auto key = map.optional("key")) axis.key = read_string(*key);
  const AxisSource& source = sources.emplace_back(AxisSource{value, read_list(map.required("values"))});
  if (source.values.empty()) map.required("values").fail("an axis needs at least one value");
  for (const auto& item : source.values) {
    AxisValue v;
    if (!axis.key.empty()) {
      const YAML::Node& node = item.node;  // const access never inserts the key
      if (node.IsMap() && node["label"]) {
        YamlMap entry(item);
        v.label = read_string(entry.required("label"));
        v.set.push_back(fmt::format("{}={}", axis.key, value_text(entry.required("value").node)));
        entry.finish();
      } else {
        v.label = value_text(item.node);
        v.set.push_back(fmt::format("{}={}", axis.key, v.label));
      }
    } else {
      YamlMap entry(item);
      v.label = read_string(entry.required("label"));
      v.set = read_assignments(entry.required("set"));
      entry.finish();
    }
    for (const auto& other : axis.values) {
      if (other.label == v.label) item.fail(fmt::format("axis '{}' has the label '{}' twice", axis.name, v.label));
    }
    axis.values.push_back(std::move(v));
  }
  map.finish();
  return axis;
}

PlotConfig read_plot(const YamlValue& value) {
  YamlMap map(value);
  PlotConfig plot;
  plot.metric = read_string(map.required("metric"));
  plot.x = read_string(map.required("x"));
  if (auto v = map.optional("series")) plot.series = read_string(*v);
  if (auto v = map.optional("log_x")) plot.log_x = read_bool(*v);
  if (auto v = map.optional("log_y")) plot.log_y = read_bool(*v);
  if (auto v = map.optional("title")) plot.title = read_string(*v);
  map.finish();
  return plot;
}

const Axis* find_axis(const Experiment& e, const std::string& name) {
  for (const auto& axis : e.grid) {
    if (axis.name == name) return &axis;
  }
  return nullptr;
}

void check_names(const Experiment& e, const std::vector<AxisSource>& axes, const YamlValue& metrics_value) {
  std::set<std::string> seen;
  for (size_t i = 0; i < e.grid.size(); ++i) {
    const std::string& name = e.grid[i].name;
    YamlMap map(axes[i].node);
    if (name.empty() || kReservedColumns.count(name)) {
      map.required("name").fail(
          fmt::format("'{}' is not a usable column name (taken: {})", name, fmt::join(kReservedColumns, ", ")));
    }
    if (!seen.insert(name).second) map.required("name").fail("another axis has this name");
  }
  for (size_t i = 0; i < e.metrics.size(); ++i) {
    YamlValue item{metrics_value.node.IsSequence() ? metrics_value.node[i] : metrics_value.node,
                   fmt::format("metrics.{}", i), metrics_value.source};
    bool known = false;
    find_metric(e.metrics[i], &known);
    if (!known) {
      std::vector<std::string> names;
      for (const auto& m : known_metrics()) names.push_back(m.name);
      item.fail(fmt::format("unknown metric '{}' (known: {}, rows.<row name>)", e.metrics[i], fmt::join(names, ", ")));
    }
    if (seen.count(e.metrics[i])) item.fail("a metric and an axis share this name, or it is listed twice");
    seen.insert(e.metrics[i]);
  }
}

void check_plots(const Experiment& e, const std::vector<YamlValue>& plot_values) {
  for (size_t i = 0; i < e.plots.size(); ++i) {
    const PlotConfig& p = e.plots[i];
    YamlMap map(plot_values[i]);
    if (std::find(e.metrics.begin(), e.metrics.end(), p.metric) == e.metrics.end()) {
      map.required("metric").fail(fmt::format("'{}' is not one of this experiment's metrics", p.metric));
    }
    if (!find_axis(e, p.x)) map.required("x").fail(fmt::format("no axis named '{}'", p.x));
    if (!p.series.empty() && (!find_axis(e, p.series) || p.series == p.x)) {
      map.required("series").fail(fmt::format("'{}' is not another axis of the grid", p.series));
    }
    size_t panels = 1;
    for (const auto& axis : e.grid) {
      if (axis.name != p.x && axis.name != p.series) panels *= axis.values.size();
    }
    if (panels > kMaxPanels) {
      plot_values[i].fail(
          fmt::format("{} panels (one per combination of the other axes); at most {}: "
                      "plot another axis as series or split the experiment",
                      panels, kMaxPanels));
    }
  }
}

// The scenario loader on the base with `overrides`; its complaint becomes `where`'s.
ScenarioFile dry_run(const Experiment& e, const std::vector<std::string>& overrides, const YamlValue& where,
                     const std::string& what) {
  try {
    return load_scenario_file(e.scenario_path, overrides);
  } catch (const ScenarioError& error) {
    where.fail(fmt::format("{}{}", what, error.what()));
  }
}

void check_rows(const Experiment& e, const ScenarioFile& file, const YamlValue& metrics_value) {
  for (size_t i = 0; i < e.metrics.size(); ++i) {
    const std::string& name = e.metrics[i];
    const bool is_row = name.starts_with("rows.");
    const std::string row = is_row ? name.substr(5) : "";
    const bool exists = std::any_of(file.rows.begin(), file.rows.end(), [&](const auto& r) { return r.name == row; });
    YamlValue item{metrics_value.node.IsSequence() ? metrics_value.node[i] : metrics_value.node,
                   fmt::format("metrics.{}", i), metrics_value.source};
    if (is_row && !exists) item.fail(fmt::format("the scenario has no row named '{}'", row));
    if (!is_row && !file.rows.empty()) {
      item.fail(fmt::format("the scenario has rows, so each run reports rows: use rows.<name> ({})", name));
    }
  }
}

void dry_run_everything(const Experiment& e, const YamlValue& top, const std::vector<AxisSource>& axes,
                        const YamlValue& metrics_value) {
  YamlMap map(top);
  const YamlValue scenario_value = map.required("scenario");
  const YamlValue set_value = map.optional("set").value_or(scenario_value);
  const ScenarioFile base = dry_run(e, e.set, set_value, "");
  check_rows(e, base, metrics_value);
  // Each value alone first, so a bad one is named by its own line.
  for (size_t a = 0; a < e.grid.size(); ++a) {
    for (size_t v = 0; v < e.grid[a].values.size(); ++v) {
      std::vector<std::string> overrides = e.set;
      for (const auto& s : e.grid[a].values[v].set) overrides.push_back(s);
      dry_run(e, overrides, axes[a].values[v],
              fmt::format("value '{}' of axis '{}': ", e.grid[a].values[v].label, e.grid[a].name));
    }
  }
  const YamlValue grid_value = map.optional("grid").value_or(scenario_value);
  std::set<std::string> ids;
  for (const Point& point : expand_points(e)) {
    if (!ids.insert(run_id(point, 0)).second) {
      grid_value.fail(fmt::format("two points set exactly the same keys ({})", fmt::join(point.labels, ", ")));
    }
    std::vector<std::string> labels;
    for (size_t a = 0; a < e.grid.size(); ++a) labels.push_back(fmt::format("{}={}", e.grid[a].name, point.labels[a]));
    dry_run(e, point.overrides, grid_value, fmt::format("point {}: ", fmt::join(labels, " ")));
  }
}

}  // namespace

Experiment load_experiment_text(const std::string& text, const std::string& name, const std::string& directory) {
  auto source = std::make_shared<YamlSource>(YamlSource{name, {}});
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    throw ScenarioError(fmt::format("{}:{}:{}: not valid YAML: {}", name, e.mark.line + 1, e.mark.column + 1, e.msg));
  }
  const YamlValue top{root, "", source.get()};
  YamlMap map(top);
  Experiment e;
  e.file = name;
  const YamlValue version = map.required("version");
  e.version = read_int(version);
  if (e.version != 1) version.fail(fmt::format("this build reads experiment version 1, not {}", e.version));
  e.name = read_string(map.required("name"));
  if (auto v = map.optional("description")) e.description = read_string(*v);
  e.scenario = read_string(map.required("scenario"));
  e.scenario_path = (std::filesystem::path(directory) / e.scenario).lexically_normal().string();
  e.seeds = read_seeds(map.required("seeds"));
  if (auto v = map.optional("set")) e.set = read_assignments(*v);
  std::vector<AxisSource> axes;
  if (auto v = map.optional("grid")) {
    for (const auto& item : read_list(*v)) e.grid.push_back(read_axis(item, axes));
  }
  const std::optional<YamlValue> metrics_node = map.optional("metrics");
  const YamlValue metrics_value = metrics_node.value_or(top);
  if (const auto& v = metrics_node) {
    for (const auto& item : read_list(*v)) e.metrics.push_back(read_string(item));
    if (e.metrics.empty()) v->fail("list at least one metric");
  } else {
    for (const auto& m : known_metrics()) e.metrics.push_back(m.name);
  }
  if (auto v = map.optional("timeout_s")) e.timeout_s = read_non_negative(*v);
  const std::optional<YamlValue> plots_node = map.optional("plots");
  std::vector<YamlValue> plot_values = plots_node ? read_list(*plots_node) : std::vector<YamlValue>{};
  if (plots_node) {
    for (const auto& item : plot_values) e.plots.push_back(read_plot(item));
  } else if (!e.grid.empty()) {
    for (const auto& metric : e.metrics) {
      e.plots.push_back({metric, e.grid[0].name, e.grid.size() > 1 ? e.grid[1].name : "", false, false, ""});
      plot_values.push_back(top);
    }
  }
  map.finish();
  check_names(e, axes, metrics_value);
  check_plots(e, plot_values);
  dry_run_everything(e, top, axes, metrics_value);
  return e;
}

Experiment load_experiment_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ScenarioError(fmt::format("{}: cannot read the experiment file", path));
  std::stringstream text;
  text << in.rdbuf();
  return load_experiment_text(text.str(), path, std::filesystem::path(path).parent_path().string());
}

std::vector<Point> expand_points(const Experiment& e) {
  std::vector<Point> points(1);
  points[0].overrides = e.set;
  for (const Axis& axis : e.grid) {
    std::vector<Point> next;
    for (const Point& p : points) {
      for (size_t v = 0; v < axis.values.size(); ++v) {
        Point q = p;
        q.value_index.push_back(v);
        q.labels.push_back(axis.values[v].label);
        for (const auto& s : axis.values[v].set) q.overrides.push_back(s);
        next.push_back(std::move(q));
      }
    }
    points = std::move(next);
  }
  return points;
}

std::string run_id(const Point& point, uint64_t seed) {
  std::string key;
  for (const auto& o : point.overrides) key += o + "\n";
  key += fmt::format("seed={}", seed);
  return fmt::format("{:016x}", core::fnv1a(key));
}

std::vector<RunSpec> expand_runs(const Experiment& e, const std::vector<Point>& points) {
  std::vector<RunSpec> runs;
  for (size_t p = 0; p < points.size(); ++p) {
    for (uint64_t seed : e.seeds) runs.push_back({p, seed, run_id(points[p], seed)});
  }
  return runs;
}

}  // namespace bouquet::sim::sweep
