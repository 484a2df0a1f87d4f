#include "net/rpc/connection.h"

#include <fmt/core.h>

#include <chrono>

namespace bouquet::net {

using core::Error;
using core::ErrorCode;

std::string to_string(const asio::ip::tcp::endpoint& endpoint) {
  const auto address = endpoint.address();
  if (address.is_v6()) return fmt::format("[{}]:{}", address.to_string(), endpoint.port());
  return fmt::format("{}:{}", address.to_string(), endpoint.port());
}

Connection::Connection(asio::ip::tcp::socket socket, ConnectionConfig config)
    : socket_(std::move(socket)),
      config_(config),
      parser_(config.limits.max_frame_bytes),
      frame_timer_(socket_.get_executor()),
      read_buffer_(64 * 1024) {
  asio::error_code ec;
  const auto endpoint = socket_.remote_endpoint(ec);
  remote_ = ec ? "unknown peer" : to_string(endpoint);
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);  // one step is one small frame: no Nagle
}

Connection::~Connection() = default;

void Connection::start(MessageHandler on_message, ClosedHandler on_closed) {
  on_message_ = std::move(on_message);
  on_closed_ = std::move(on_closed);
  read_some();
}

void Connection::read_some() {
  socket_.async_read_some(
      asio::buffer(read_buffer_),
      [self = shared_from_this()](const asio::error_code& ec, size_t bytes) { self->on_read(ec, bytes); });
}

void Connection::on_read(const asio::error_code& ec, size_t bytes) {
  if (closed_ || close_after_writes_) return;
  if (ec) {
    if (ec == asio::error::eof && parser_.inside_frame()) {
      return fail(
          Error{ErrorCode::protocol, fmt::format("frame: connection closed inside a frame ({})", parser_.progress())});
    }
    return finish(ec == asio::error::eof ? "connection closed by peer" : ec.message());
  }
  last_activity_ = std::chrono::steady_clock::now();
  parser_.feed(std::span<const uint8_t>(read_buffer_.data(), bytes));
  deliver_frames();
  if (closed_ || close_after_writes_) return;
  if (parser_.failed()) return fail(parser_.error());
  arm_frame_timer();
  read_some();
}

void Connection::deliver_frames() {
  while (auto body = parser_.next()) {
    if (closed_ || close_after_writes_) return;
    auto decoded = decode_body(*body, config_.limits);
    if (!decoded.ok()) {
      if (config_.bad_body == ConnectionConfig::BadBody::close) {
        return finish(fmt::format("undecodable message from {}: {}", remote_, decoded.error().to_string()));
      }
      send(core::ErrorReply{0, 0, decoded.error()});
      continue;
    }
    on_message_(std::move(decoded).value());
  }
}

void Connection::arm_frame_timer() {
  if (!parser_.inside_frame()) {
    if (frame_timer_armed_) frame_timer_.cancel();
    frame_timer_armed_ = false;
    return;
  }
  if (frame_timer_armed_) return;  // the deadline runs from the frame's first byte
  frame_timer_armed_ = true;
  frame_timer_.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(config_.frame_timeout_s)));
  frame_timer_.async_wait([self = shared_from_this()](const asio::error_code& ec) {
    if (ec || self->closed_ || !self->frame_timer_armed_) return;
    self->frame_timer_armed_ = false;
    self->fail(Error{ErrorCode::protocol, fmt::format("frame: not complete within {} s ({})",
                                                      self->config_.frame_timeout_s, self->parser_.progress())});
  });
}

void Connection::send(const core::Message& message) {
  if (closed_ || close_after_writes_) return;
  writes_.push_back(encode_frame(message));
  if (!writing_) write_next();
}

void Connection::fail(const Error& error) {
  if (closed_ || close_after_writes_) return;
  send(core::ErrorReply{0, 0, error});
  close_after_writes_ = true;
  close_reason_ = error.to_string();
  if (!writing_) finish(close_reason_);
}

void Connection::close(const std::string& reason) { finish(reason); }

void Connection::write_next() {
  if (writes_.empty()) {
    writing_ = false;
    if (close_after_writes_) finish(close_reason_);
    return;
  }
  writing_ = true;
  asio::async_write(socket_, asio::buffer(writes_.front()),
                    [self = shared_from_this()](const asio::error_code& ec, size_t) {
                      if (self->closed_) return;
                      if (ec) return self->finish(fmt::format("send failed: {}", ec.message()));
                      self->writes_.pop_front();
                      self->last_activity_ = std::chrono::steady_clock::now();
                      self->write_next();
                    });
}

void Connection::finish(const std::string& reason) {
  if (closed_) return;
  closed_ = true;
  frame_timer_armed_ = false;
  frame_timer_.cancel();
  asio::error_code ignored;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
  writes_.clear();
  // Reported from the event loop, never from inside a caller's send(): handlers may touch the
  // tables that hold this connection.
  asio::post(socket_.get_executor(), [self = shared_from_this(), reason] {
    if (self->on_closed_) self->on_closed_(reason);
    self->on_message_ = nullptr;
    self->on_closed_ = nullptr;
  });
}

}  // namespace bouquet::net
