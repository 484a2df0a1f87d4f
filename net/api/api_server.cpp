#include "net/api/api_server.h"

#include <fmt/core.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <iostream>
#include <mutex>
#include <random>
#include <thread>

#include "gpu/errors.h"
#include "net/api/api_request.h"
#include "net/api/api_response.h"
#include "net/api/sse.h"
#include "net/rpc/address.h"

namespace bouquet::net::api {
namespace {

using Clock = std::chrono::steady_clock;

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void log_line(const std::string& line) {
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  std::cerr << "api: " << line << std::endl;
}

void send_error(httplib::Response& res, const ApiError& error) {
  res.status = error.status();
  res.set_content(error.json(), "application/json");
}

ApiError swarm_unavailable(const std::exception& e) {
  return ApiError(503, "server_error", "swarm_unavailable",
                  fmt::format("the swarm cannot serve this request: {}", e.what()));
}

// Runs `body`, answering any failure in OpenAI's error JSON; returns the failure's message.
template <class Body>
std::string answering_errors(httplib::Response& res, Body&& body) {
  auto fail = [&res](const ApiError& e) {
    send_error(res, e);
    return e.code().empty() ? std::string(e.what()) : fmt::format("{}: {}", e.code(), e.what());
  };
  try {
    body();
  } catch (const ApiError& e) {
    return fail(e);
  } catch (const RemoteError& e) {
    return fail(swarm_unavailable(e));
  } catch (const gpu::InputError& e) {
    return fail(invalid_request(e.what()));
  } catch (const std::invalid_argument& e) {
    return fail(invalid_request(e.what()));
  } catch (const std::exception& e) {
    return fail(ApiError(500, "server_error", "", e.what()));
  }
  return {};
}

std::vector<gpu::TokenId> prompt_ids(const CompletionRequest& request, const ApiSwarm& swarm) {
  const gpu::Tokenizer& tokenizer = swarm.tokenizer();
  std::vector<gpu::TokenId> ids;
  if (!request.prompt_ids.empty()) {
    const int64_t vocab = swarm.head().model_config().vocab_size;
    for (int64_t id : request.prompt_ids) {
      if (id >= vocab)
        throw invalid_request(fmt::format("token id {} is outside the vocabulary (< {})", id, vocab), "prompt");
    }
    return request.prompt_ids;
  }
  std::string text;
  if (request.chat) {
    // OpenAI's developer messages are what templates call system messages.
    std::vector<gpu::ChatMessage> messages;
    for (const ChatMessage& m : request.messages)
      messages.push_back({m.role == "developer" ? "system" : m.role, m.content});
    text = gpu::render_chat(swarm.chat_template(), messages);
  } else {
    text = *request.prompt_text;
  }
  if (tokenizer.add_bos && tokenizer.bos_id) ids.push_back(*tokenizer.bos_id);
  const auto encoded = tokenizer.encode(text);
  ids.insert(ids.end(), encoded.begin(), encoded.end());
  if (ids.empty()) throw invalid_request("the prompt has no tokens", request.chat ? "messages" : "prompt");
  return ids;
}

// max_tokens as the request asks (0: the rest of the context), refused past the context.
int64_t completion_budget(const CompletionRequest& request, int64_t prompt_tokens, int64_t context) {
  const int64_t wanted = request.max_tokens > 0 ? request.max_tokens : context - prompt_tokens;
  if (prompt_tokens + std::max<int64_t>(wanted, 1) > context) {
    throw invalid_request(
        fmt::format("This model's maximum context length is {} tokens. However, you requested {} "
                    "tokens ({} in the {}, {} in the completion). Please reduce the length of the "
                    "{} or completion.",
                    context, prompt_tokens + wanted, prompt_tokens, request.chat ? "messages" : "prompt", wanted,
                    request.chat ? "messages" : "prompt"),
        request.chat ? "messages" : "max_tokens", "context_length_exceeded");
  }
  return wanted;
}

std::string random_id(const char* prefix) {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t salt = (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
  return fmt::format("{}{:016x}{:06x}", prefix, salt, counter++ & 0xffffff);
}

// Answers one completion request; returns the log line's end (empty when a stream logs itself).
std::string serve_completion(ApiSwarm& swarm, bool chat, const httplib::Request& req, httplib::Response& res) {
  const auto start = Clock::now();
  const CompletionRequest request = chat ? parse_chat_request(req.body) : parse_completion_request(req.body);
  if (request.model != swarm.model_name()) {
    throw ApiError(
        404, "invalid_request_error", "model_not_found",
        fmt::format("The model '{}' does not exist; this server runs '{}'", request.model, swarm.model_name()),
        "model");
  }
  std::vector<gpu::TokenId> ids = prompt_ids(request, swarm);
  const auto prompt_tokens = static_cast<int64_t>(ids.size());
  const int64_t budget = completion_budget(request, prompt_tokens, swarm.context_tokens());
  ApiSampling sampling;
  sampling.sampler.temperature = request.temperature;
  sampling.sampler.top_p = request.top_p;
  sampling.sampler.seed =
      request.seed ? *request.seed : (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
  sampling.presence_penalty = request.presence_penalty;
  sampling.frequency_penalty = request.frequency_penalty;
  auto generation = std::make_shared<ApiGeneration>(swarm, std::move(ids), budget, sampling, request.stop);
  generation->open();  // a swarm that cannot serve answers 503 here, before any header went out
  const ResponseHead head{chat, random_id(chat ? "chatcmpl-" : "cmpl-"), unix_now(), swarm.model_name()};
  auto usage = [generation] { return Usage{generation->prompt_tokens(), generation->completion_tokens()}; };
  auto summary = [usage, start](const std::string& finish) {
    const Usage u = usage();
    return fmt::format("{:.2f} s {}+{} tokens {}", std::chrono::duration<double>(Clock::now() - start).count(),
                       u.prompt_tokens, u.completion_tokens, finish);
  };
  if (!request.stream) {
    std::string text;
    const std::string finish = generation->run([&](std::string_view piece) {
      text += piece;
      return true;
    });
    generation->close();
    res.set_content(completion_json(head, text, finish, usage()), "application/json");
    return fmt::format("{}+{} tokens {}", usage().prompt_tokens, usage().completion_tokens, finish);
  }
  res.set_header("Cache-Control", "no-cache");
  const bool include_usage = request.include_usage;
  const std::string what = fmt::format("{} {}", req.method, req.path);
  res.set_chunked_content_provider("text/event-stream", [generation, head, include_usage, what, usage, summary](
                                                            size_t, httplib::DataSink& sink) {
    auto write = [&](const std::string& event) { return sink.write(event.data(), event.size()); };
    std::string finish;
    try {
      if (!head.chat || write(sse_event(chunk_json(head, "", std::nullopt, /*role_chunk=*/true)))) {
        finish = generation->run([&](std::string_view piece) {
          return write(sse_event(chunk_json(head, std::string(piece), std::nullopt)));
        });
      } else {
        finish = "cancelled";
      }
    } catch (const std::exception& e) {
      // Headers are gone: the failure travels as an error event, as OpenAI's streams do.
      const ApiError error =
          dynamic_cast<const RemoteError*>(&e) ? swarm_unavailable(e) : ApiError(500, "server_error", "", e.what());
      generation->close();
      write(sse_event(error.json()));
      write(sse_done());
      sink.done();
      log_line(fmt::format("{} 200 (stream) {} error: {}", what, summary("failed"), e.what()));
      return true;
    }
    generation->close();  // the servers free the session now, whatever the client does next
    if (finish == "cancelled") {
      log_line(fmt::format("{} 200 (stream) {}: the client went away; its session is closed", what, summary(finish)));
      return false;
    }
    bool ok = write(sse_event(chunk_json(head, "", finish)));
    if (ok && include_usage) ok = write(sse_event(usage_chunk_json(head, usage())));
    if (ok) ok = write(sse_done());
    if (ok) sink.done();
    log_line(fmt::format("{} 200 (stream) {}", what, summary(finish)));
    return ok;
  });
  return {};
}

}  // namespace

ApiServer::ApiServer(ApiServerConfig config, ApiSwarm& swarm)
    : config_(std::move(config)), swarm_(swarm), http_(std::make_unique<httplib::Server>()) {
  const size_t threads = std::max<size_t>(1, config_.threads);
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http_->set_payload_max_length(config_.max_body_bytes);
  add_routes();
}

ApiServer::~ApiServer() = default;

uint16_t ApiServer::bind() {
  const HostPort where = parse_host_port(config_.listen, /*allow_port_zero=*/true);
  const int port = where.port == 0 ? http_->bind_to_any_port(where.host)
                                   : (http_->bind_to_port(where.host, where.port) ? where.port : -1);
  if (port <= 0)
    throw std::runtime_error(
        fmt::format("cannot listen on {} (in use, or not an address of this machine)", config_.listen));
  return static_cast<uint16_t>(port);
}

void ApiServer::run() { http_->listen_after_bind(); }
void ApiServer::stop() { http_->stop(); }

void ApiServer::add_routes() {
  httplib::Server& http = *http_;
  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (config_.api_key.empty()) return httplib::Server::HandlerResponse::Unhandled;
    const std::string expected = "Bearer " + config_.api_key;
    const std::string given = req.get_header_value("Authorization");
    // Compared in time independent of where they differ.
    unsigned diff = given.size() != expected.size();
    for (size_t i = 0; i < expected.size(); ++i)
      diff |= static_cast<unsigned>(expected[i] ^ (i < given.size() ? given[i] : 0));
    if (diff == 0) return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, ApiError(401, "invalid_request_error", "invalid_api_key",
                             given.empty() ? "You didn't provide an API key. Provide it in an Authorization header "
                                             "(Authorization: Bearer YOUR_KEY)."
                                           : "Incorrect API key provided."));
    log_line(fmt::format("{} {} 401", req.method, req.path));
    return httplib::Server::HandlerResponse::Handled;
  });
  http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404) {
      send_error(res, ApiError(404, "invalid_request_error", "unknown_url",
                               fmt::format("Unknown request URL: {} {}", req.method, req.path)));
    } else if (res.status == 413) {
      send_error(res, ApiError(413, "invalid_request_error", "request_too_large", "the request body is too large"));
    } else {
      send_error(res, ApiError(res.status, "invalid_request_error", "", fmt::format("HTTP status {}", res.status)));
    }
  });
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    send_error(res, ApiError(500, "server_error", "", "internal error"));
  });
  const int64_t started = unix_now();
  http.Get("/v1/models", [this, started](const httplib::Request&, httplib::Response& res) {
    res.set_content(models_json(swarm_.model_name(), started), "application/json");
  });
  http.Get(R"(/v1/models/(.+))", [this, started](const httplib::Request& req, httplib::Response& res) {
    const std::string name = req.matches[1];
    if (name != swarm_.model_name()) {
      send_error(res, ApiError(404, "invalid_request_error", "model_not_found",
                               fmt::format("The model '{}' does not exist", name), "model"));
      return;
    }
    res.set_content(model_json(name, started), "application/json");
  });
  auto complete = [this](bool chat) {
    return [this, chat](const httplib::Request& req, httplib::Response& res) {
      const auto start = Clock::now();
      std::string outcome;
      const std::string failure = answering_errors(res, [&] { outcome = serve_completion(swarm_, chat, req, res); });
      if (!failure.empty()) outcome = failure;
      if (!outcome.empty()) {
        log_line(fmt::format("{} {} {} {:.2f} s {}", req.method, req.path, res.status > 0 ? res.status : 200,
                             std::chrono::duration<double>(Clock::now() - start).count(), outcome));
      }
    };
  };
  http.Post("/v1/completions", complete(false));
  http.Post("/v1/chat/completions", complete(true));
}

int run_api(const ApiSwarmConfig& swarm_config, const ApiServerConfig& server_config) {
  // SIGINT/SIGTERM go to the waiting thread below, never to a request thread; a client that
  // vanishes mid-write must give EPIPE, not kill the process.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  ApiSwarm swarm(swarm_config);
  ApiServer server(server_config, swarm);
  const uint16_t port = server.bind();
  const HostPort where = parse_host_port(server_config.listen, true);
  fmt::print("api: listening on http://{}\n", HostPort{where.host, port}.to_string());
  fmt::print("api: model '{}' ({} blocks, context {} tokens, chat template {}){}\n", swarm.model_name(),
             swarm.head().model_config().num_layers, swarm.context_tokens(),
             gpu::to_string(swarm.chat_template().format), server_config.api_key.empty() ? "" : ", API key required");
  std::fflush(stdout);
  std::thread waiter([&server, stop_signals] {
    int signal = 0;
    sigwait(&stop_signals, &signal);
    server.stop();
  });
  server.run();
  // run() also returns when listening failed; wake the waiter so it can be joined.
  pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
  return 0;
}

}  // namespace bouquet::net::api
