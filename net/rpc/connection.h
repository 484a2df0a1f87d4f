// One framed TCP connection (frame.h) on an Asio io_context, shared by server and client: the
// only code that reads or writes protocol bytes on a socket.
//
// Promises:
// - Incoming bytes are parsed with FrameParser; each body that decodes is handed to on_message,
//   in order. A body that does not decode is answered with an ErrorReply naming the field
//   (BadBody::reply, the server's policy) or closes the connection (BadBody::close, the client's:
//   a server that sends garbage is a failed hop).
// - A frame error (bad magic, version, flags, a length beyond the limit), a peer that half-closes
//   inside a frame, or a frame that does not complete within frame_timeout_s: an ErrorReply
//   naming the problem is written, then the connection closes. Nothing is allocated for a body
//   before its length passed the limit.
// - Messages are written in the order send() was called; close() or a failure reports
//   on_closed(reason) exactly once, after which nothing is delivered.
// - Every handler runs on the io_context's thread; nothing here blocks.
#pragma once

#include <asio.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/messages.h"
#include "net/rpc/frame.h"

namespace bouquet::net {

struct ConnectionConfig {
  FrameLimits limits;
  double frame_timeout_s = 30;  // a frame that has begun must end within this
  enum class BadBody { reply, close } bad_body = BadBody::reply;
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  using MessageHandler = std::function<void(core::Message)>;
  using ClosedHandler = std::function<void(const std::string& reason)>;

  Connection(asio::ip::tcp::socket socket, ConnectionConfig config);
  ~Connection();

  // Starts reading. Handlers must stay valid until on_closed ran.
  void start(MessageHandler on_message, ClosedHandler on_closed);
  void send(const core::Message& message);
  // Sends an ErrorReply{0, 0, error} and closes once it is written.
  void fail(const core::Error& error);
  void close(const std::string& reason);

  bool is_open() const { return !closed_; }
  // When bytes last moved either way; a reply still being written counts as now.
  std::chrono::steady_clock::time_point last_activity() const {
    return writing_ ? std::chrono::steady_clock::now() : last_activity_;
  }
  // "HOST:PORT" of the other end, as seen when the connection was made.
  const std::string& remote() const { return remote_; }

 private:
  void read_some();
  void on_read(const asio::error_code& ec, size_t bytes);
  void deliver_frames();
  void arm_frame_timer();
  void write_next();
  void finish(const std::string& reason);

  asio::ip::tcp::socket socket_;
  ConnectionConfig config_;
  FrameParser parser_;
  asio::steady_timer frame_timer_;
  bool frame_timer_armed_ = false;
  std::vector<uint8_t> read_buffer_;
  std::deque<std::vector<uint8_t>> writes_;
  bool writing_ = false;
  bool close_after_writes_ = false;
  std::string close_reason_;
  bool closed_ = false;
  MessageHandler on_message_;
  ClosedHandler on_closed_;
  std::string remote_;
  std::chrono::steady_clock::time_point last_activity_ = std::chrono::steady_clock::now();
};

// "HOST:PORT" of an endpoint ("[::1]:80" for IPv6).
std::string to_string(const asio::ip::tcp::endpoint& endpoint);

}  // namespace bouquet::net
