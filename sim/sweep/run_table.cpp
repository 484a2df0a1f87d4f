#include "sim/sweep/run_table.h"

#include <fmt/core.h>
#include <fmt/ranges.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>

#include <fcntl.h>
#include <unistd.h>

namespace bouquet::sim::sweep {
namespace {

void write_fd(int fd, std::string_view bytes, const std::string& path) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::runtime_error(fmt::format("{}: cannot write: {}", path, std::strerror(errno)));
    bytes.remove_prefix(static_cast<size_t>(n));
  }
}

RunRow row_from_cells(const std::vector<std::string>& cells, const Experiment& e, const std::string& path,
                      size_t line) {
  const size_t axes = e.grid.size();
  if (cells.size() != run_columns(e).size()) {
    throw std::runtime_error(
        fmt::format("{}:{}: {} cells, expected {}", path, line, cells.size(), run_columns(e).size()));
  }
  RunRow row;
  size_t i = 0;
  row.run_id = cells[i++];
  for (size_t a = 0; a < axes; ++a) row.labels.push_back(cells[i++]);
  row.seed = std::strtoull(cells[i++].c_str(), nullptr, 10);
  row.status = cells[i++];
  row.error = cells[i++];
  for (size_t m = 0; m < e.metrics.size(); ++m) row.metrics.push_back(parse_number(cells[i++]));
  row.wall_s = parse_number(cells[i++]);
  if (row.status != "ok" && row.status != "failed") {
    throw std::runtime_error(fmt::format("{}:{}: status '{}' is neither ok nor failed", path, line, row.status));
  }
  return row;
}

}  // namespace

std::vector<std::string> run_columns(const Experiment& e) {
  std::vector<std::string> columns = {"run_id"};
  for (const auto& axis : e.grid) columns.push_back(axis.name);
  for (const char* c : {"seed", "status", "error"}) columns.emplace_back(c);
  for (const auto& m : e.metrics) columns.push_back(m);
  columns.emplace_back("wall_s");
  return columns;
}

std::string csv_line(const std::vector<std::string>& cells) {
  std::string out;
  for (size_t i = 0; i < cells.size(); ++i) {
    if (i) out += ',';
    std::string cell = cells[i];
    for (char& c : cell) {
      if (c == '\n' || c == '\r') c = ' ';
    }
    if (cell.find_first_of(",\"") == std::string::npos) {
      out += cell;
      continue;
    }
    out += '"';
    for (char c : cell) {
      if (c == '"') out += '"';
      out += c;
    }
    out += '"';
  }
  return out;
}

std::vector<std::string> parse_csv_line(std::string_view line) {
  std::vector<std::string> cells(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c != '"') {
        cells.back() += c;
      } else if (i + 1 < line.size() && line[i + 1] == '"') {
        cells.back() += '"';
        ++i;
      } else {
        quoted = false;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      cells.emplace_back();
    } else {
      cells.back() += c;
    }
  }
  if (quoted) throw std::runtime_error("a quoted cell is not closed");
  return cells;
}

std::string format_number(double value) {
  if (std::isnan(value)) return "";
  return fmt::format("{}", value);
}

double parse_number(const std::string& cell) {
  if (cell.empty()) return std::numeric_limits<double>::quiet_NaN();
  return std::strtod(cell.c_str(), nullptr);
}

std::string format_row(const RunRow& row) {
  std::vector<std::string> cells = {row.run_id};
  for (const auto& label : row.labels) cells.push_back(label);
  cells.push_back(std::to_string(row.seed));
  cells.push_back(row.status);
  cells.push_back(row.error);
  for (double v : row.metrics) cells.push_back(format_number(v));
  cells.push_back(fmt::format("{:.3f}", row.wall_s));
  return csv_line(cells) + "\n";
}

std::vector<RunRow> read_run_table(const std::string& path, const Experiment& e) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("{}: cannot read", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  // Only lines that end in a newline were written whole.
  const size_t whole = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
  std::vector<RunRow> rows;
  size_t start = 0;
  size_t line = 0;
  while (start < whole) {
    const size_t end = text.find('\n', start);
    const std::string_view content(text.data() + start, end - start);
    ++line;
    std::vector<std::string> cells;
    try {
      cells = parse_csv_line(content);
    } catch (const std::runtime_error& error) {
      throw std::runtime_error(fmt::format("{}:{}: {}", path, line, error.what()));
    }
    if (line == 1) {
      if (cells != run_columns(e)) {
        throw std::runtime_error(
            fmt::format("{}: written by another experiment (columns {}; this one has {}): use another --out", path,
                        fmt::join(cells, ","), fmt::join(run_columns(e), ",")));
      }
    } else {
      rows.push_back(row_from_cells(cells, e, path, line));
    }
    start = end + 1;
  }
  if (whole < text.size()) std::filesystem::resize_file(path, whole);
  if (whole == 0 && !text.empty()) std::filesystem::remove(path);
  return rows;
}

void append_run_row(const std::string& path, const Experiment& e, const RunRow& row) {
  const bool fresh = !std::filesystem::exists(path);
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  try {
    // One write per line: an interruption leaves whole lines and at most one torn last line.
    if (fresh) write_fd(fd, csv_line(run_columns(e)) + "\n", path);
    write_fd(fd, format_row(row), path);
    ::fsync(fd);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
}

void write_run_table(const std::string& path, const Experiment& e, const std::vector<RunRow>& rows) {
  const std::string aside = path + ".tmp";
  {
    std::ofstream out(aside, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error(fmt::format("{}: cannot write", aside));
    out << csv_line(run_columns(e)) << "\n";
    for (const auto& row : rows) out << format_row(row);
    if (!out.flush()) throw std::runtime_error(fmt::format("{}: cannot write", aside));
  }
  std::filesystem::rename(aside, path);
}

}  // namespace bouquet::sim::sweep
