// Parsing the command line's network and span notations, with errors that name the flag value.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/block_span.h"

namespace bouquet::net {

struct HostPort {
  std::string host;
  uint16_t port = 0;
  std::string to_string() const;  // "HOST:PORT", "[::1]:PORT" for IPv6 literals
};

// "HOST:PORT" or "[IPV6]:PORT"; port 0 allowed when `allow_port_zero` (listen on any free port).
// Throws std::invalid_argument naming the text.
HostPort parse_host_port(std::string_view text, bool allow_port_zero = false);
// "a,b,,c" -> {"a", "b", "c"}: a comma-separated flag value (peers, model names); empty items are
// dropped.
std::vector<std::string> split_list(std::string_view text);
// "A:B" -> [A, B) with A < B. Throws std::invalid_argument naming the text.
core::BlockSpan parse_block_span(std::string_view text);

}  // namespace bouquet::net
