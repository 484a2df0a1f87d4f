// `bouquet api`: an OpenAI-compatible HTTP server in front of a swarm (cpp-httplib, Debian's
// libcpp-httplib-dev). GET /v1/models, GET /v1/models/{name}, POST /v1/completions and
// POST /v1/chat/completions, with `stream: true` as server-sent events.
//
// Promises:
// - Every request runs on its own thread of a fixed pool with its own swarm session
//   (api_swarm.h); a slow or vanished client holds only its own thread.
// - Every failure answers with OpenAI's error JSON: 400 bad JSON / bad field / too many tokens
//   (code context_length_exceeded), 401 a missing or wrong `Authorization: Bearer KEY` when
//   api_key is set, 404 an unknown model (model_not_found) or URL, 413 a body over
//   max_body_bytes, 503 when the swarm cannot serve the request (code swarm_unavailable, the
//   reason in the message). A failure after a stream started ends it with an error event.
// - A streaming client that disconnects stops its generation at the next token; its session is
//   closed on the servers.
// - One line per request on stderr: method, path, status, tokens, seconds, finish reason.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "net/api/api_swarm.h"

namespace httplib {
class Server;
}

namespace bouquet::net::api {

struct ApiServerConfig {
  std::string listen = "127.0.0.1:8000";  // HOST:PORT (port 0: any free port)
  std::string api_key;                    // "" = no authentication
  size_t threads = 64;                    // requests served at once; more wait in a queue
  size_t max_body_bytes = size_t{8} << 20;
};

class ApiServer {
 public:
  ApiServer(ApiServerConfig config, ApiSwarm& swarm);
  ~ApiServer();
  // Binds the socket; returns the port (throws std::runtime_error when it cannot bind).
  uint16_t bind();
  // Serves until stop(); call bind() first.
  void run();
  void stop();

 private:
  void add_routes();
  ApiServerConfig config_;
  ApiSwarm& swarm_;
  std::unique_ptr<httplib::Server> http_;
};

// The command: loads the swarm side, binds, prints "api: listening on http://HOST:PORT", serves
// until SIGINT/SIGTERM. Exit status.
int run_api(const ApiSwarmConfig& swarm, const ApiServerConfig& server);

}  // namespace bouquet::net::api
