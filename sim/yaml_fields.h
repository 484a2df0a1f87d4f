// Strict reading of YAML into config structs: every key of a mapping must be known, every required
// key present, every value of the right type and range. A failure throws ScenarioError naming the
// file, line and the key's full path (as `--set` spells it: "servers.0.up_bps"), before anything
// runs. Values set with `--set` are named as such instead of a line.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace bouquet::sim {

class ScenarioError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Where the YAML came from, to phrase errors: the file name and the nodes replaced by --set.
struct YamlSource {
  std::string file;
  std::vector<std::pair<YAML::Node, std::string>> overridden;  // node, "key=value" as given

  std::string locate(const YAML::Node& node) const;  // "file:12:5" or "--set key=value"
};

// A node together with its path and source, the unit errors are reported against.
struct YamlValue {
  YAML::Node node;
  std::string path;
  const YamlSource* source = nullptr;

  [[noreturn]] void fail(std::string_view message) const;
};

// One mapping, read key by key. Call finish() after the last key: it rejects unknown keys.
class YamlMap {
 public:
  explicit YamlMap(const YamlValue& value);

  // The value at `key`, or a "missing" error naming it.
  YamlValue required(std::string_view key);
  std::optional<YamlValue> optional(std::string_view key);
  bool has(std::string_view key) const;
  void finish() const;

  const YamlValue& value() const { return value_; }

 private:
  YamlValue value_;
  std::vector<std::string> read_;
};

// Scalar readers; each fails with the value's location on a wrong type.
double read_double(const YamlValue& value);
int64_t read_int(const YamlValue& value);
bool read_bool(const YamlValue& value);
std::string read_string(const YamlValue& value);
std::vector<YamlValue> read_list(const YamlValue& value);
// A mapping of string keys to scalars kept as text (row overrides).
std::vector<std::pair<std::string, std::string>> read_string_map(const YamlValue& value);

// The range check of every number a scenario holds: a finite number in [lo, hi], or also .inf
// where Infinity::allowed says "never" is meaningful (a lifetime). Anything else fails naming the
// key, the range and the value given. Bounds are inclusive: a quantity that must be positive takes
// the smallest value that still means something as `lo` (1 bit/s, not 1e-300).
enum class Infinity { refused, allowed };
double read_number_in(const YamlValue& value, double lo, double hi, Infinity infinity = Infinity::refused);
// An integer in [lo, hi].
int64_t read_int_in(const YamlValue& value, int64_t lo, int64_t hi);

// Checks that fail with the value's location.
double read_non_negative(const YamlValue& value);  // >= 0, finite
double read_probability(const YamlValue& value);   // in [0, 1]
int64_t read_count(const YamlValue& value);        // integer >= 1

// Applies "a.b.0.c=value" to `root`: each dotted part is a map key or a list index ("*" means
// every element). The value is parsed as YAML, so numbers, lists and maps work. Missing map keys
// are created (the strict reader then rejects unknown ones); a bad index or a path through a
// scalar is an error. The replaced nodes are recorded in `source`.
void apply_override(YAML::Node root, std::string_view assignment, YamlSource& source);

}  // namespace bouquet::sim
