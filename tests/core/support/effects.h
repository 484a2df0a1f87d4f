// What a core state machine asked for, picked out of its effects by kind: the test harnesses of
// the server, the sessions and the balancer read them the same way.
#pragma once

#include <utility>
#include <variant>
#include <vector>

#include "core/effect.h"

namespace bouquet::test {

// Every effect of kind T, in order.
template <class T>
std::vector<T> effects_of(const std::vector<core::Effect>& effects) {
  std::vector<T> out;
  for (const auto& e : effects) {
    if (auto* x = std::get_if<T>(&e)) out.push_back(*x);
  }
  return out;
}

// Every message of kind M sent, with its addressee, in order.
template <class M>
std::vector<std::pair<core::PeerId, M>> sent_of(const std::vector<core::Effect>& effects) {
  std::vector<std::pair<core::PeerId, M>> out;
  for (const auto& s : effects_of<core::SendMessage>(effects)) {
    if (auto* m = std::get_if<M>(&s.message)) out.emplace_back(s.to, *m);
  }
  return out;
}

}  // namespace bouquet::test
