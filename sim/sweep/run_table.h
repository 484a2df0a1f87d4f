// runs.csv: one row per finished run (its point's labels, seed, status, error, metrics, wall
// time), appended and flushed to disk as each run ends, so an interrupted sweep loses only the
// runs in flight. Numbers are written in their shortest exact form, so a row read back and
// written again is the same text.
#pragma once

#include "sim/sweep/experiment.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace bouquet::sim::sweep {

struct RunRow {
  std::string run_id;
  std::vector<std::string> labels;  // per axis
  uint64_t seed = 0;
  std::string status;           // ok | failed
  std::string error;            // why it failed (one line), "" when ok
  std::vector<double> metrics;  // per experiment metric; NaN: no value
  double wall_s = 0;

  bool ok() const { return status == "ok"; }
};

// run_id, each axis, seed, status, error, each metric, wall_s.
std::vector<std::string> run_columns(const Experiment& experiment);

// RFC 4180: cells with commas, quotes or line breaks are quoted (line breaks become spaces).
std::string csv_line(const std::vector<std::string>& cells);
// One line back into cells; throws std::runtime_error when a quote is left open.
std::vector<std::string> parse_csv_line(std::string_view line);
std::string format_number(double value);  // "" for NaN, else shortest round-trip
double parse_number(const std::string& cell);

std::string format_row(const RunRow& row);  // a CSV line with its newline

// The rows of an existing runs.csv written for `experiment`. A last line cut short by an
// interruption is dropped (and the file truncated to the rows that are whole). Throws
// std::runtime_error naming the file when its header is another experiment's.
std::vector<RunRow> read_run_table(const std::string& path, const Experiment& experiment);
// Appends one row and flushes it to disk; creates the file with its header first.
void append_run_row(const std::string& path, const Experiment& experiment, const RunRow& row);
// Replaces the file with these rows (written aside, then renamed: never half a file).
void write_run_table(const std::string& path, const Experiment& experiment, const std::vector<RunRow>& rows);

}  // namespace bouquet::sim::sweep
