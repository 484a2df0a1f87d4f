#include "core/wire.h"

#include <fmt/core.h>
#include <bit>
#include <cstring>
#include <limits>
#include <optional>
#include <utility>

#include "core/check.h"
#include "core/message_fields.h"

namespace bouquet::core {
namespace {

template <class T>
constexpr bool kIsOptional = false;
template <class T>
constexpr bool kIsOptional<std::optional<T>> = true;
template <class T>
constexpr bool kIsVector = false;
template <class T>
constexpr bool kIsVector<std::vector<T>> = true;

uint64_t tensor_header_bytes(const Activation& a) { return 3 + 4 * a.shape.size(); }

template <class M>
uint16_t version_of(const M& m) {
  constexpr uint16_t identity = wire_fields::kIdentitySince<M>;
  if constexpr (requires { m.identity_nonce; }) {
    if (m.identity_nonce) return identity;
  } else if constexpr (requires { m.identity_proof; }) {
    if (m.identity_proof) return identity;
  }
  return kWireVersionMin;
}

// Appends the canonical bytes of each field.
class Writer {
 public:
  Writer(std::vector<uint8_t>& out, uint16_t version) : out_(out), version_(version) {}
  uint16_t version() const { return version_; }

  template <class T>
  void operator()(const T& v, const char*) {
    if constexpr (std::is_same_v<T, double>) {
      put(std::bit_cast<uint64_t>(v), 8);
    } else if constexpr (std::is_enum_v<T>) {
      put(static_cast<uint64_t>(v), sizeof(T));
    } else if constexpr (std::is_unsigned_v<T>) {
      put(v, sizeof(T));
    } else if constexpr (std::is_same_v<T, PeerId>) {
      put(v.value, 8);
    } else if constexpr (std::is_same_v<T, std::string>) {
      BOUQUET_CHECK(v.size() <= std::numeric_limits<uint32_t>::max(), "string too long to encode");
      put(v.size(), 4);
      out_.insert(out_.end(), v.begin(), v.end());
    } else if constexpr (std::is_same_v<T, Activation>) {
      write_activation(v);
    } else if constexpr (kIsOptional<T>) {
      put(v.has_value() ? 1 : 0, 1);
      if (v) (*this)(*v, "");
    } else if constexpr (kIsVector<T>) {
      BOUQUET_CHECK(v.size() <= std::numeric_limits<uint32_t>::max(), "list too long to encode");
      put(v.size(), 4);
      for (const auto& item : v) (*this)(item, "");
    } else {
      wire_fields::fields(*this, v);
    }
  }

 private:
  void put(uint64_t v, size_t bytes) {
    for (size_t i = 0; i < bytes; ++i) out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }

  void write_activation(const Activation& a) {
    BOUQUET_CHECK(a.data != nullptr, "cannot encode an activation without data");
    BOUQUET_CHECK(a.shape.size() <= 255, "activation rank too large to encode");
    put(static_cast<uint8_t>(a.dtype), 1);
    put(static_cast<uint8_t>(a.compression), 1);
    put(a.shape.size(), 1);
    for (uint32_t d : a.shape) put(d, 4);
    const size_t before = out_.size();
    a.data->pack(a.compression, a.dtype, a.element_count(), out_);
    BOUQUET_CHECK(out_.size() - before == a.wire_bytes(),
                  "ActivationData::pack wrote a different size than packed_size()");
  }

  std::vector<uint8_t>& out_;
  uint16_t version_;
};

// Counts the bytes Writer would append, without touching any data.
class Counter {
 public:
  explicit Counter(uint16_t version) : version_(version) {}
  uint16_t version() const { return version_; }

  template <class T>
  void operator()(const T& v, const char*) {
    if constexpr (std::is_arithmetic_v<T> || std::is_enum_v<T>) {
      bytes_ += sizeof(T);
    } else if constexpr (std::is_same_v<T, PeerId>) {
      bytes_ += 8;
    } else if constexpr (std::is_same_v<T, std::string>) {
      bytes_ += 4 + v.size();
    } else if constexpr (std::is_same_v<T, Activation>) {
      bytes_ += tensor_header_bytes(v) + v.wire_bytes();
    } else if constexpr (kIsOptional<T>) {
      bytes_ += 1;
      if (v) (*this)(*v, "");
    } else if constexpr (kIsVector<T>) {
      bytes_ += 4;
      for (const auto& item : v) (*this)(item, "");
    } else {
      wire_fields::fields(*this, v);
    }
  }
  uint64_t bytes() const { return bytes_; }

 private:
  uint16_t version_;
  uint64_t bytes_ = 0;
};

// Reads fields; the first failure sticks and every later read is a no-op.
class Reader {
 public:
  Reader(std::span<const uint8_t> bytes, const WireLimits& limits, std::string_view message, uint16_t version)
      : bytes_(bytes), limits_(limits), path_(message), version_(version) {}
  uint16_t version() const { return version_; }

  template <class T>
  void operator()(T& v, const char* name) {
    if (failed()) return;
    const size_t path_size = path_.size();
    if (*name) path_ += fmt::format(".{}", name);
    read(v);
    if (!failed()) path_.resize(path_size);
  }

  bool failed() const { return error_.has_value(); }
  const DecodeError& error() const { return *error_; }
  size_t remaining() const { return bytes_.size() - at_; }

  void fail(DecodeErrorCode code, std::string what) {
    if (!failed()) error_ = DecodeError{code, fmt::format("{}: {}", path_, what)};
  }

 private:
  bool take(size_t n, const uint8_t** p) {
    if (remaining() < n) {
      fail(DecodeErrorCode::truncated, fmt::format("needs {} bytes, {} left", n, remaining()));
      return false;
    }
    *p = bytes_.data() + at_;
    at_ += n;
    return true;
  }

  uint64_t get(size_t n) {
    const uint8_t* p = nullptr;
    if (!take(n, &p)) return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
    return v;
  }

  template <class T>
  void read(T& v) {
    if constexpr (std::is_same_v<T, double>) {
      v = std::bit_cast<double>(get(8));
    } else if constexpr (std::is_same_v<T, ErrorCode>) {
      const auto raw = static_cast<uint16_t>(get(2));
      if (!failed() && !is_known_error_code(raw))
        fail(DecodeErrorCode::bad_value, fmt::format("unknown error code {}", raw));
      v = static_cast<ErrorCode>(raw);
    } else if constexpr (std::is_same_v<T, Compression>) {
      const auto raw = static_cast<uint8_t>(get(1));
      if (!failed() && !is_known_compression(raw))
        fail(DecodeErrorCode::bad_value, fmt::format("unknown compression {}", raw));
      v = static_cast<Compression>(raw);
    } else if constexpr (std::is_same_v<T, DType>) {
      const auto raw = static_cast<uint8_t>(get(1));
      if (!failed() && !is_known_dtype(raw)) fail(DecodeErrorCode::bad_value, fmt::format("unknown dtype {}", raw));
      v = static_cast<DType>(raw);
    } else if constexpr (std::is_unsigned_v<T>) {
      v = static_cast<T>(get(sizeof(T)));
    } else if constexpr (std::is_same_v<T, PeerId>) {
      v.value = get(8);
    } else if constexpr (std::is_same_v<T, std::string>) {
      read_string(v);
    } else if constexpr (std::is_same_v<T, Activation>) {
      read_activation(v);
    } else if constexpr (kIsOptional<T>) {
      const auto flag = get(1);
      if (failed()) return;
      if (flag > 1) return fail(DecodeErrorCode::bad_value, fmt::format("presence flag {}", flag));
      if (flag == 1) read(v.emplace());
    } else if constexpr (kIsVector<T>) {
      read_list(v);
    } else {
      wire_fields::fields(*this, v);
    }
  }

  void read_string(std::string& v) {
    const uint64_t size = get(4);
    if (failed()) return;
    if (size > limits_.max_string_bytes) {
      return fail(DecodeErrorCode::over_limit,
                  fmt::format("string of {} bytes exceeds the limit {}", size, limits_.max_string_bytes));
    }
    const uint8_t* p = nullptr;
    if (take(size, &p)) v.assign(reinterpret_cast<const char*>(p), size);
  }

  template <class T>
  void read_list(std::vector<T>& v) {
    const uint64_t count = get(4);
    if (failed()) return;
    if (count > limits_.max_list_items) {
      return fail(DecodeErrorCode::over_limit,
                  fmt::format("{} items exceed the limit {}", count, limits_.max_list_items));
    }
    if (count > remaining()) {  // every item takes at least one byte
      return fail(DecodeErrorCode::truncated, fmt::format("{} items in {} bytes", count, remaining()));
    }
    v.resize(count);
    for (auto& item : v) {
      read(item);
      if (failed()) return;
    }
  }

  void read_activation(Activation& a) {
    read(a.dtype);
    read(a.compression);
    const uint64_t rank = get(1);
    if (failed()) return;
    if (rank == 0 || rank > limits_.max_rank) {
      return fail(DecodeErrorCode::over_limit, fmt::format("rank {} outside 1..{}", rank, limits_.max_rank));
    }
    a.shape.resize(rank);
    uint64_t count = 1;
    for (auto& d : a.shape) {
      d = static_cast<uint32_t>(get(4));
      if (failed()) return;
      // Each dim < 2^32 and count <= limit < 2^32 before multiplying, so this cannot overflow.
      count *= d;
      if (count > limits_.max_tensor_elements) {
        return fail(DecodeErrorCode::over_limit, fmt::format("more than {} elements", limits_.max_tensor_elements));
      }
    }
    const uint64_t size = packed_size(a.compression, a.dtype, count);
    const uint8_t* p = nullptr;
    if (!take(size, &p)) return;
    a.data = std::make_shared<PackedActivationData>(a.compression, a.dtype, std::vector<uint8_t>(p, p + size));
  }

  std::span<const uint8_t> bytes_;
  const WireLimits& limits_;
  size_t at_ = kMessageHeaderBytes;
  std::string path_;
  uint16_t version_;
  std::optional<DecodeError> error_;
};

template <size_t I = 0>
Result<Message, DecodeError> decode_as(MessageType type, uint16_t version, std::span<const uint8_t> bytes,
                                       const WireLimits& limits) {
  if constexpr (I == std::variant_size_v<Message>) {
    return DecodeError{DecodeErrorCode::unknown_message,
                       fmt::format("unknown message type {}", static_cast<int>(type))};
  } else {
    using M = std::variant_alternative_t<I, Message>;
    if (M::kType != type) return decode_as<I + 1>(type, version, bytes, limits);
    M m;
    Reader reader(bytes, limits, to_string(type), version);
    wire_fields::fields(reader, m);
    if (!reader.failed() && reader.remaining() != 0) {
      reader.fail(DecodeErrorCode::trailing_bytes, fmt::format("{} bytes after the message", reader.remaining()));
    }
    // Canonical: a message is written at the lowest version that carries it (version_of).
    if (!reader.failed() && version_of(m) != version) {
      reader.fail(DecodeErrorCode::bad_value,
                  fmt::format("wire version {} for a message of version {}", version, version_of(m)));
    }
    if (reader.failed()) return reader.error();
    return Message{std::move(m)};
  }
}

template <class M>
uint64_t size_of(const M& m) {
  Counter counter(version_of(m));
  wire_fields::fields(counter, m);
  return kMessageHeaderBytes + counter.bytes();
}

}  // namespace

std::string_view to_string(DecodeErrorCode code) {
  switch (code) {
    case DecodeErrorCode::truncated:
      return "truncated";
    case DecodeErrorCode::bad_version:
      return "bad_version";
    case DecodeErrorCode::unknown_message:
      return "unknown_message";
    case DecodeErrorCode::over_limit:
      return "over_limit";
    case DecodeErrorCode::bad_value:
      return "bad_value";
    case DecodeErrorCode::trailing_bytes:
      return "trailing_bytes";
  }
  return "unknown";
}

Error DecodeError::to_error() const {
  return Error{ErrorCode::protocol, fmt::format("{} ({})", message, to_string(code))};
}

void encode_into(const Message& message, std::vector<uint8_t>& out) {
  const uint16_t version = wire_version_of(message);
  out.push_back(static_cast<uint8_t>(version));
  out.push_back(static_cast<uint8_t>(version >> 8));
  out.push_back(static_cast<uint8_t>(message_type(message)));
  Writer writer(out, version);
  std::visit([&](const auto& m) { wire_fields::fields(writer, m); }, message);
}

std::vector<uint8_t> encode(const Message& message) {
  std::vector<uint8_t> out;
  out.reserve(encoded_size(message));
  encode_into(message, out);
  return out;
}

Result<Message, DecodeError> decode(std::span<const uint8_t> bytes, const WireLimits& limits) {
  if (bytes.size() < kMessageHeaderBytes) {
    return DecodeError{DecodeErrorCode::truncated,
                       fmt::format("message header needs {} bytes, got {}", kMessageHeaderBytes, bytes.size())};
  }
  const uint16_t version = static_cast<uint16_t>(bytes[0] | (bytes[1] << 8));
  if (version < kWireVersionMin || version > kWireVersion) {
    return DecodeError{DecodeErrorCode::bad_version, fmt::format("wire version {} (this build speaks {} to {})",
                                                                 version, kWireVersionMin, kWireVersion)};
  }
  return decode_as(static_cast<MessageType>(bytes[2]), version, bytes, limits);
}

MessageType message_type(const Message& message) {
  return std::visit([](const auto& m) { return m.kType; }, message);
}

std::string_view to_string(MessageType type) {
  switch (type) {
    case MessageType::open_session:
      return "open_session";
    case MessageType::session_opened:
      return "session_opened";
    case MessageType::step:
      return "step";
    case MessageType::step_result:
      return "step_result";
    case MessageType::close_session:
      return "close_session";
    case MessageType::forward:
      return "forward";
    case MessageType::forward_result:
      return "forward_result";
    case MessageType::backward:
      return "backward";
    case MessageType::backward_result:
      return "backward_result";
    case MessageType::info_request:
      return "info_request";
    case MessageType::info:
      return "info";
    case MessageType::error:
      return "error";
  }
  return "unknown";
}

uint16_t wire_version_of(const Message& message) {
  return std::visit([](const auto& m) { return version_of(m); }, message);
}

uint64_t encoded_size(const Message& message) {
  return std::visit([](const auto& m) { return size_of(m); }, message);
}

uint64_t OpenSession::encoded_size() const { return size_of(*this); }
uint64_t SessionOpened::encoded_size() const { return size_of(*this); }
uint64_t StepRequest::encoded_size() const { return size_of(*this); }
uint64_t StepResult::encoded_size() const { return size_of(*this); }
uint64_t CloseSession::encoded_size() const { return size_of(*this); }
uint64_t ForwardRequest::encoded_size() const { return size_of(*this); }
uint64_t ForwardResult::encoded_size() const { return size_of(*this); }
uint64_t BackwardRequest::encoded_size() const { return size_of(*this); }
uint64_t BackwardResult::encoded_size() const { return size_of(*this); }
uint64_t InfoRequest::encoded_size() const { return size_of(*this); }
uint64_t InfoReply::encoded_size() const { return size_of(*this); }
uint64_t ErrorReply::encoded_size() const { return size_of(*this); }

}  // namespace bouquet::core
