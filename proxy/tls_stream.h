// A TLS stream that runs OpenSSL directly on the socket's file descriptor: SSL_read and
// SSL_write move records between the kernel and OpenSSL's own buffers, and the stream waits for
// readiness only when OpenSSL asks (WANT_READ, WANT_WRITE). Asio's ssl::stream instead puts a
// memory BIO pair between the two, which costs a copy of every record each way, a 17 KB input
// and output buffer per stream, and a pass through its engine per operation.
//
// It models Asio's AsyncReadStream and AsyncWriteStream (Beast's HTTP operations use it as they
// would ssl::stream) plus the handshake and shutdown the proxy needs. One read and one write may
// be outstanding at once, on the thread that runs the socket's executor. Errors follow
// ssl::stream's: a close_notify is error::eof, a transport EOF without one is
// ssl::error::stream_truncated, a TLS failure carries OpenSSL's error in the SSL category.
// Completions are never invoked from inside the initiating call.
//
// Included by proxy/server.cc only: it is all Asio templates.
#pragma once

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <array>
#include <boost/asio/compose.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream_base.hpp>
#include <cerrno>
#include <cstring>
#include <new>
#include <type_traits>

namespace kscribe::proxy {

class TlsStream {
 public:
  using next_layer_type = boost::asio::basic_stream_socket<boost::asio::ip::tcp,
                                                           boost::asio::io_context::executor_type>;
  using executor_type = next_layer_type::executor_type;

  TlsStream(next_layer_type socket, boost::asio::ssl::context& ctx)
      : socket_(std::move(socket)), ssl_(SSL_new(ctx.native_handle())) {
    init();
  }
  template <class ExecutionContext>
  TlsStream(ExecutionContext& ioc, boost::asio::ssl::context& ctx)
      : socket_(ioc), ssl_(SSL_new(ctx.native_handle())) {
    init();
  }
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;
  ~TlsStream() { SSL_free(ssl_); }

  executor_type get_executor() { return socket_.get_executor(); }
  next_layer_type& next_layer() { return socket_; }
  SSL* native_handle() { return ssl_; }

  template <class Token>
  auto async_handshake(boost::asio::ssl::stream_base::handshake_type type, Token&& token) {
    if (type == boost::asio::ssl::stream_base::client) {
      SSL_set_connect_state(ssl_);
    } else {
      SSL_set_accept_state(ssl_);
    }
    return start<false>([](SSL* s, std::size_t&) { return SSL_do_handshake(s); },
                        std::forward<Token>(token));
  }

  // Sends close_notify and waits for the peer's, as ssl::stream does.
  template <class Token>
  auto async_shutdown(Token&& token) {
    return start<false>(
        [](SSL* s, std::size_t&) {
          const int r = SSL_shutdown(s);
          return r == 0 ? SSL_shutdown(s) : r;
        },
        std::forward<Token>(token));
  }

  template <class MutableBufferSequence, class Token>
  auto async_read_some(const MutableBufferSequence& buffers, Token&& token) {
    boost::asio::mutable_buffer b;
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers); ++it) {
      if (boost::asio::mutable_buffer(*it).size() != 0) {
        b = *it;
        break;
      }
    }
    return start<true>(
        [b](SSL* s, std::size_t& n) {
          return b.size() == 0 ? 1 : SSL_read_ex(s, b.data(), b.size(), &n);
        },
        std::forward<Token>(token));
  }

  // Several buffers (a head and a body chunk) go out as one record: they are gathered into one
  // buffer of up to a record's size first.
  template <class ConstBufferSequence, class Token>
  auto async_write_some(const ConstBufferSequence& buffers, Token&& token) {
    return start<true>(
        [buffers](SSL* s, std::size_t& n) {
          std::array<char, kRecord> gathered;
          std::size_t used = 0, parts = 0;
          boost::asio::const_buffer first;
          const auto gather = [&](const boost::asio::const_buffer& part) {
            const std::size_t take = std::min(part.size(), kRecord - used);
            std::memcpy(gathered.data() + used, part.data(), take);
            used += take;
          };
          for (auto it = boost::asio::buffer_sequence_begin(buffers);
               it != boost::asio::buffer_sequence_end(buffers); ++it) {
            const boost::asio::const_buffer part(*it);
            if (part.size() == 0) continue;
            if (++parts == 1) {
              first = part;  // a single buffer goes out as it is, uncopied
              continue;
            }
            if (parts == 2) gather(first);
            if (used == kRecord) break;
            gather(part);
          }
          if (parts == 0) return 1;
          if (parts == 1) return SSL_write_ex(s, first.data(), first.size(), &n);
          return SSL_write_ex(s, gathered.data(), used, &n);
        },
        std::forward<Token>(token));
  }

 private:
  static constexpr std::size_t kRecord = 16 * 1024;

  void init() {
    if (ssl_ == nullptr) throw std::bad_alloc();
    // Partial writes: a write completes after whole records, as write_some must. Moving
    // buffer: a retried write may come from another address with the same bytes. Read ahead:
    // one recv takes what the kernel holds, not a record header and then its body. OpenSSL's
    // record buffers stay between records unless the owner sets SSL_MODE_RELEASE_BUFFERS.
    SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_set_read_ahead(ssl_, 1);
  }

  // One OpenSSL call, retried whenever the socket is ready for what it wants.
  template <class Call, bool kSized>
  struct Op {
    TlsStream* s;
    Call call;
    enum { kStart, kWaiting, kPosted } state = kStart;
    boost::system::error_code result_ec{};
    std::size_t result_n = 0;

    template <class Self>
    void operator()(Self& self, boost::system::error_code ec = {}) {
      if (state == kPosted) return complete(self, result_ec, result_n);
      if (ec) return finish(self, ec, 0);  // the wait was cancelled or failed
      if (!s->socket_.is_open()) return finish(self, boost::asio::error::bad_descriptor, 0);
      if (!s->fd_set_) {  // the socket is connected by now (an upstream one after the stream)
        boost::system::error_code ignored;
        s->socket_.non_blocking(true, ignored);
        if (SSL_set_fd(s->ssl_, s->socket_.native_handle()) != 1)
          return finish(self, boost::asio::error::no_memory, 0);
        s->fd_set_ = true;
      }
      // SSL_get_error needs an empty error queue. Peeking costs a tenth of clearing (23 against
      // 182 ns here), and this runs before every read and write; the queue is nearly always empty.
      if (ERR_peek_error() != 0) ERR_clear_error();
      errno = 0;
      std::size_t n = 0;
      const int r = call(s->ssl_, n);
      if (r > 0) return finish(self, {}, n);
      const int saved_errno = errno;
      switch (SSL_get_error(s->ssl_, r)) {
        case SSL_ERROR_WANT_READ:
          state = kWaiting;
          return s->socket_.async_wait(next_layer_type::wait_read, std::move(self));
        case SSL_ERROR_WANT_WRITE:
          state = kWaiting;
          return s->socket_.async_wait(next_layer_type::wait_write, std::move(self));
        case SSL_ERROR_ZERO_RETURN:
          return finish(self, boost::asio::error::eof, 0);
        case SSL_ERROR_SYSCALL:
          if (const unsigned long e = ERR_get_error(); e != 0) return finish(self, sslError(e), 0);
          if (saved_errno != 0)
            return finish(self, {saved_errno, boost::asio::error::get_system_category()}, 0);
          return finish(self, boost::asio::ssl::error::stream_truncated, 0);
        default: {
          const unsigned long e = ERR_get_error();
          if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
              ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
            return finish(self, boost::asio::ssl::error::stream_truncated, 0);
          return finish(
              self,
              e ? sslError(e)
                : boost::system::error_code(boost::asio::ssl::error::unspecified_system_error),
              0);
        }
      }
    }

    static boost::system::error_code sslError(unsigned long e) {
      return {static_cast<int>(e), boost::asio::error::get_ssl_category()};
    }
    // A result found in the initiating call is delivered through the executor.
    template <class Self>
    void finish(Self& self, boost::system::error_code ec, std::size_t n) {
      if (state != kStart) return complete(self, ec, n);
      state = kPosted;
      result_ec = ec;
      result_n = n;
      auto ex = s->socket_.get_executor();
      boost::asio::post(ex, std::move(self));
    }
    template <class Self>
    static void complete(Self& self, boost::system::error_code ec, std::size_t n) {
      if constexpr (kSized) {
        self.complete(ec, n);
      } else {
        self.complete(ec);
      }
    }
  };

  // Sized: completes with (error_code, bytes), as read_some and write_some do; else with
  // (error_code), as handshake and shutdown do.
  template <bool kSized, class Call, class Token>
  auto start(Call call, Token&& token) {
    using Signature = std::conditional_t<kSized, void(boost::system::error_code, std::size_t),
                                         void(boost::system::error_code)>;
    return boost::asio::async_compose<Token, Signature>(Op<Call, kSized>{this, std::move(call)},
                                                        token, socket_);
  }

  next_layer_type socket_;
  SSL* ssl_;
  bool fd_set_ = false;
};

}  // namespace kscribe::proxy
