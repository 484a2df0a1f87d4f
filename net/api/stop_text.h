// Stop sequences over streamed text: OpenAI's `stop` ends a completion before the first place one
// of the texts appears, and that text is never returned. Pieces arrive token by token, so a stop
// text can straddle pieces; StopText holds back the tail that could still start one and releases
// it once it cannot.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace bouquet::net::api {

class StopText {
 public:
  explicit StopText(std::vector<std::string> stops) : stops_(std::move(stops)) {}

  // Appends `piece`; returns the text now safe to show (before any stop text, and not a tail that
  // may begin one). After a stop text was found, stopped() holds and later pieces are dropped.
  std::string push(std::string_view piece);
  // The end of the stream: whatever is still held back (nothing after a stop).
  std::string finish();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace bouquet::net::api
