// What a sweep measures in each run: figures computed from the JSON that `bouquet sim --out`
// writes (sim/run_result.h), so the sweep never links the simulation itself.
//
// Client figures are over every client instance of the scenario. Work cut off by the scenario's
// duration still counts what it measured up to then; a client that never measured counts 0.
// A scenario with `rows` (published comparisons) also offers `rows.<row name>`: that row's
// simulated figure, missing (NaN) when its work did not finish.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace bouquet::sim::sweep {

struct MetricInfo {
  std::string name;
  std::string unit;
  std::string what;  // one line for the report
  bool higher_is_better = true;
};

const std::vector<MetricInfo>& known_metrics();
// The metric named `name`; "rows.X" gives a generic entry (the caller checks X is a row).
MetricInfo find_metric(std::string_view name, bool* known);

// The values of `names`, in order, from the text of a `bouquet sim --out` file. NaN where the run
// produced no value. Throws std::runtime_error when the text is not such a file.
std::vector<double> extract_metrics(const std::string& json_text, const std::vector<std::string>& names);

}  // namespace bouquet::sim::sweep
