#include "net/rpc/address.h"

#include <fmt/core.h>

#include <algorithm>
#include <charconv>
#include <stdexcept>

namespace bouquet::net {
namespace {

template <class T>
bool parse_number(std::string_view text, T& value) {
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc() && end == text.data() + text.size() && !text.empty();
}

}  // namespace

std::string HostPort::to_string() const {
  if (host.find(':') != std::string::npos) return fmt::format("[{}]:{}", host, port);
  return fmt::format("{}:{}", host, port);
}

HostPort parse_host_port(std::string_view text, bool allow_port_zero) {
  const auto bad = [&](std::string_view why) {
    return std::invalid_argument(fmt::format("'{}' is not HOST:PORT ({})", text, why));
  };
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) throw bad("no port");
  std::string_view host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty()) throw bad("no host");
  uint32_t port = 0;
  if (!parse_number(text.substr(colon + 1), port) || port > 65535) throw bad("bad port");
  if (port == 0 && !allow_port_zero) throw bad("port 0");
  return HostPort{std::string(host), static_cast<uint16_t>(port)};
}

core::BlockSpan parse_block_span(std::string_view text) {
  const size_t colon = text.find(':');
  uint32_t begin = 0, end = 0;
  if (colon == std::string_view::npos || !parse_number(text.substr(0, colon), begin) ||
      !parse_number(text.substr(colon + 1), end) || begin >= end) {
    throw std::invalid_argument(fmt::format("'{}' is not a block span A:B with A < B (blocks A to B-1)", text));
  }
  return core::BlockSpan{begin, end};
}

std::vector<std::string> split_list(std::string_view text) {
  std::vector<std::string> items;
  size_t at = 0;
  while (at <= text.size()) {
    const size_t end = std::min(text.find(',', at), text.size());
    if (end > at) items.emplace_back(text.substr(at, end - at));
    at = end + 1;
  }
  return items;
}

}  // namespace bouquet::net
