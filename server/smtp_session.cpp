// One SMTP client connection; see smtp_session.hpp.
#include "server/smtp_session.hpp"

#include <openssl/ssl.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/stream_base.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <exception>
#include <new>
#include <string>
#include <type_traits>
#include <utility>

#include "server/smtp_trace.hpp"

namespace mukai::server::detail {

namespace asio = boost::asio;
using asio::ip::tcp;
using std::chrono::milliseconds;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

bool is_data_phase(smtp_phase p) noexcept { return p == smtp_phase::data || p == smtp_phase::bdat; }

// Spool errors that retrying cannot fix: the client should not resend the same message.
bool is_permanent_spool_error(const std::error_code& ec) noexcept {
  return ec == spool_errc::message_too_large || ec == spool_errc::envelope_too_large;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// session_input
// ---------------------------------------------------------------------------------------------------
void session_input::consume(std::size_t n) noexcept {
  begin_ += std::min(n, end_ - begin_);
  if (begin_ == end_) begin_ = end_ = 0;
}

std::pair<char*, std::size_t> session_input::prepare(bool large) {
  begin_ = end_ = 0;  // only called when empty
  if (!large) {
    using_large_ = false;
    return {small_.data(), small_.size()};
  }
  // Not zero-filled: pages of a buffer that is never filled are never touched (RSS).
  if (!large_) large_ = std::make_unique_for_overwrite<char[]>(large_size_);
  using_large_ = true;
  return {large_.get(), large_size_};
}

void session_input::release_if_empty() noexcept {
  if (!empty()) return;
  large_.reset();
  using_large_ = false;
  begin_ = end_ = 0;
}

// ---------------------------------------------------------------------------------------------------
// smtp_session
// ---------------------------------------------------------------------------------------------------
smtp_session::smtp_session(smtp_server_state::slot slot, std::shared_ptr<const smtp_settings> settings,
                           tcp::socket socket, asio::ip::address client, bool client_allowed)
    : slot_(std::move(slot)),
      settings_(std::move(settings)),
      strand_(socket.get_executor()),
      socket_(std::move(socket)),
      timer_(strand_),
      client_(client),
      protocol_(settings_->protocol, smtp_session_options{client_allowed, false}, *this),
      in_(slot_.state().options.read_buffer_size) {
  boost::system::error_code ec;
  const auto remote = socket_.remote_endpoint(ec);
  name_ = address_literal(client_);
  if (!ec) name_ += ":" + std::to_string(remote.port());
}

smtp_session::~smtp_session() { server().unregister_session(this); }

asio::awaitable<void> run_session(std::shared_ptr<smtp_session> session) { co_await session->run(); }

asio::awaitable<void> smtp_session::run() {
  boost::system::error_code ec;
  // Replies are batched by the loop itself (one write per receive()); Nagle would only delay them.
  socket_.set_option(tcp::no_delay(true), ec);
  connected_at_ = clock::now();
  server().log(smtp_log_level::debug, log_event("connect").add("client", name_));
  protocol_.start();
  loop_exit exit = co_await run_loop(socket_);
  if (exit == loop_exit::start_tls) exit = co_await handshake_and_run();
  close_socket();
  server().log(smtp_log_level::debug,
               log_event("disconnect")
                   .add("client", name_)
                   .add("commands", static_cast<std::uint64_t>(protocol_.commands()))
                   .add("messages", static_cast<std::uint64_t>(protocol_.messages_accepted()))
                   .add("tls", tls_.has_value())
                   .add("duration_ms", static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                                      clock::now() - connected_at_)
                                                                      .count())));
}

void smtp_session::request_stop(stop_level level) {
  asio::post(strand_, [self = shared_from_this(), level] { self->on_stop_request(level); });
}

void smtp_session::on_stop_request(stop_level level) {
  if (level <= stop_requested_) return;
  stop_requested_ = level;
  boost::system::error_code ignored;
  switch (io_) {
    case io_state::reading:
      // Waiting for a command: answer 421 now rather than at the next command. Waiting for message
      // data: let the message finish (graceful), unless the grace period is over.
      if (level == stop_level::hard || !is_data_phase(protocol_.phase())) lowest_socket().cancel(ignored);
      break;
    case io_state::handshaking:
      if (level == stop_level::hard) lowest_socket().cancel(ignored);
      break;
    case io_state::writing:
      // Possibly a "250 queued as": give it a short, bounded chance rather than cutting it off.
      if (level == stop_level::hard) {
        const auto limit = clock::now() + server().options.stop_flush_timeout;
        if (limit < io_deadline_) arm_deadline(limit);
      }
      break;
    case io_state::none:
      break;  // waiting for the spool: run() applies the request when it resumes
  }
}

void smtp_session::apply_stop_request() {
  if (stop_requested_ <= stop_applied_) return;
  if (stop_requested_ == stop_level::graceful) {
    protocol_.begin_shutdown();
  } else {
    protocol_.shutdown_now();
  }
  stop_applied_ = stop_requested_;
}

template <typename Stream>
asio::awaitable<smtp_session::loop_exit> smtp_session::run_loop(Stream& stream) {
  for (;;) {
    apply_stop_request();
    // RFC 2920: the replies of everything one receive() handled go out in one write.
    if (!out_.empty() && !co_await write_replies(stream)) {
      protocol_.connection_lost();
      co_return loop_exit::closed;
    }
    if (close_requested_ || protocol_.is_closed()) co_return loop_exit::closed;
    if (tls_requested_) {
      if constexpr (std::is_same_v<Stream, tcp::socket>) {
        co_return loop_exit::start_tls;
      } else {
        // The protocol refuses STARTTLS over TLS; never run a handshake inside TLS.
        server().log(smtp_log_level::error, "STARTTLS requested over TLS from " + name_);
        protocol_.connection_lost();
        co_return loop_exit::closed;
      }
    }
    if (message_open_ && staged_.size() >= server().options.read_buffer_size) co_await spool_staged(false);
    if (protocol_.awaiting_message_result()) {
      co_await finish_message();
      continue;
    }
    if (!protocol_.wants_input()) {
      server().log(smtp_log_level::error, "protocol stalled (phase " +
                                              std::to_string(static_cast<int>(protocol_.phase())) + ") for " +
                                              name_);
      protocol_.connection_lost();
      co_return loop_exit::closed;
    }
    if (in_.empty()) {
      // Shutting down and between commands: 421 now (RFC 5321 3.8) instead of waiting for a command.
      if (stop_requested_ != stop_level::none && protocol_.phase() == smtp_phase::command) {
        protocol_.shutdown_now();
        continue;
      }
      switch (co_await read_input(stream)) {
        case read_status::data:
          break;
        case read_status::timeout:
          server().counters.timeouts.fetch_add(1, std::memory_order_relaxed);
          server().log(smtp_log_level::info, "timeout from " + name_);
          protocol_.on_timeout();
          continue;
        case read_status::interrupted:
          continue;
        case read_status::closed:
          protocol_.connection_lost();
          co_return loop_exit::closed;
      }
    }
    if (protocol_.phase() == smtp_phase::command)
      protocol_.set_storage_low(server().storage_low(settings_->min_free_space));
    const std::size_t consumed = protocol_.receive(in_.data());
    in_.consume(consumed);
    if (tls_requested_ || close_requested_) {
      // RFC 3207 section 4: whatever the client pipelined after STARTTLS (or after QUIT) is dropped,
      // never executed later as if it had arrived over TLS.
      in_.clear();
    } else if (consumed == 0 && !in_.empty() && protocol_.wants_input()) {
      server().log(smtp_log_level::error, "protocol consumed no input from " + name_);
      protocol_.connection_lost();
      co_return loop_exit::closed;
    }
    after_receive();
  }
}

void smtp_session::after_receive() {
  const smtp_phase phase = protocol_.phase();
  if (is_data_phase(phase)) {
    if (!in_data_) {
      in_data_ = true;
      data_wait_ = {};
      data_bytes_ = 0;
    }
  } else if (phase != smtp_phase::awaiting_message_result) {
    in_data_ = false;
  }
}

smtp_session::clock::time_point smtp_session::read_deadline(clock::time_point now) const {
  const config::smtp_timeouts& t = settings_->timeouts;
  if (is_data_phase(protocol_.phase())) {
    clock::duration allowed = t.data_block;
    if (const std::uint64_t rate = server().options.min_data_rate; rate > 0) {
      // data_block of grace, then at least `rate` octets per second on average over the message.
      const clock::duration budget =
          t.data_block + std::chrono::duration_cast<clock::duration>(
                             milliseconds(data_bytes_ / rate * 1000 + data_bytes_ % rate * 1000 / rate));
      allowed = std::min(allowed, budget > data_wait_ ? budget - data_wait_ : clock::duration::zero());
    }
    return now + allowed;
  }
  clock::time_point deadline = now + t.command;
  if (protocol_.commands() == 0) deadline = std::min(deadline, connected_at_ + t.greeting);
  const clock::duration idle_left = t.idle > command_wait_ ? t.idle - command_wait_ : clock::duration::zero();
  return std::min(deadline, now + idle_left);
}

template <typename Stream>
asio::awaitable<smtp_session::read_status> smtp_session::read_input(Stream& stream) {
  const bool data_phase = is_data_phase(protocol_.phase());
  // Idle command phase: the small inline buffer, and the large one released. A message, or a read
  // that filled the buffer (a pipelined burst): the large buffer.
  const bool large = data_phase || last_read_filled_;
  if (!large) in_.release_if_empty();
  const auto [buffer, size] = in_.prepare(large);
  const clock::time_point start = clock::now();
  const clock::time_point deadline = read_deadline(start);
  if (deadline <= start) co_return read_status::timeout;

  arm_deadline(deadline);
  io_ = io_state::reading;
  const auto [ec, n] = co_await stream.async_read_some(asio::buffer(buffer, size), use_tuple);
  io_ = io_state::none;
  const bool expired = disarm_deadline();

  const clock::duration waited = clock::now() - start;
  if (data_phase) {
    data_wait_ += waited;
    data_bytes_ += n;
  } else {
    command_wait_ += waited;
  }
  if (n > 0) {
    in_.commit(n);
    last_read_filled_ = n == size;
    co_return read_status::data;
  }
  if (expired) co_return read_status::timeout;
  if (ec == asio::error::operation_aborted && stop_requested_ != stop_level::none)
    co_return read_status::interrupted;
  co_return read_status::closed;
}

template <typename Stream>
asio::awaitable<bool> smtp_session::write_replies(Stream& stream) {
  // A client that does not read its replies must not hold the session: writes have a deadline too.
  clock::duration limit = settings_->timeouts.command;
  if (stop_applied_ == stop_level::hard)
    limit = std::min<clock::duration>(limit, server().options.stop_flush_timeout);
  arm_deadline(clock::now() + limit);
  io_ = io_state::writing;
  const auto [ec, n] = co_await asio::async_write(stream, asio::buffer(out_), use_tuple);
  io_ = io_state::none;
  const bool expired = disarm_deadline();
  (void)n;
  if (ec) {
    if (expired) {
      server().counters.timeouts.fetch_add(1, std::memory_order_relaxed);
      server().log(smtp_log_level::info, "write timeout to " + name_);
    }
    co_return false;
  }
  // Release the memory: an idle session keeps no reply buffer.
  std::string().swap(out_);
  co_return true;
}

asio::awaitable<smtp_session::loop_exit> smtp_session::handshake_and_run() {
  in_.clear();  // already empty: the loop drops everything after the STARTTLS line
  in_.release_if_empty();
  if (!settings_->tls) {
    protocol_.connection_lost();
    co_return loop_exit::closed;
  }
  tls_.emplace(std::move(socket_), *settings_->tls);
  arm_deadline(clock::now() + server().options.tls_handshake_timeout);
  io_ = io_state::handshaking;
  const auto [ec] = co_await tls_->async_handshake(asio::ssl::stream_base::server, use_tuple);
  io_ = io_state::none;
  const bool expired = disarm_deadline();
  if (ec) {
    server().counters.tls_failures.fetch_add(1, std::memory_order_relaxed);
    if (expired) server().counters.timeouts.fetch_add(1, std::memory_order_relaxed);
    server().log(smtp_log_level::info, "TLS handshake with " + name_ +
                                           " failed: " + (expired ? std::string("timeout") : ec.message()));
    protocol_.connection_lost();
    co_return loop_exit::closed;
  }
  server().counters.tls_sessions.fetch_add(1, std::memory_order_relaxed);
  tls_requested_ = false;
  command_wait_ = {};
  last_read_filled_ = false;
  protocol_.tls_established();
  co_return co_await run_loop(*tls_);
}

// ---------------------------------------------------------------------------------------------------
// Spooling
// ---------------------------------------------------------------------------------------------------
void smtp_session::run_spool_step(spool_job& job) const {
  try {
    if (!job.writer) {
      auto begun = server().spool.begin(envelope_);
      if (!begun) {
        job.error = begun.error();
        return;
      }
      job.writer.emplace(std::move(*begun));
      job.queue_id = job.writer->queue_id();  // for the log, should a later step fail
      received_trace trace;
      trace.helo = envelope_.helo;
      trace.client = client_;
      trace.by_host = settings_->protocol->hostname;
      trace.with_protocol = with_protocol_;
      trace.tls_description = tls_description_;
      trace.queue_id = job.writer->queue_id();
      if (envelope_.recipients.size() == 1) trace.single_recipient = envelope_.recipients.front().address;
      trace.when = envelope_.received;
      // The trace header is the first bytes of the spooled message (RFC 5321 4.4).
      if (const auto ec = job.writer->append(make_received_header(trace))) {
        job.error = ec;
        return;
      }
    }
    if (!job.data.empty()) {
      if (const auto ec = job.writer->append(job.data)) {
        job.error = ec;
        return;
      }
    }
    job.data.clear();
    if (job.commit) {
      auto id = job.writer->commit();
      if (!id) {
        job.error = id.error();
        return;
      }
      job.queue_id = std::move(*id);
    }
  } catch (const std::bad_alloc&) {
    job.error = std::make_error_code(std::errc::not_enough_memory);
  }
}

asio::awaitable<void> smtp_session::spool_job_on_pool() {
  run_spool_step(job_);
  co_return;
}

asio::awaitable<void> smtp_session::spool_staged(bool commit) {
  if (message_error_) {
    staged_.clear();
    co_return;
  }
  job_.writer = std::move(writer_);
  writer_.reset();
  job_.data = std::move(staged_);
  staged_.clear();
  job_.commit = commit;
  job_.error.clear();
  // job_ is handed to the blocking executor and back: while the job runs, run() is suspended and
  // nothing on the strand touches job_ (or the message state the job reads), so only one thread
  // ever holds the writer. The hop back through the strand orders the job's writes before ours.
  // (A member coroutine returning nothing, not a capturing lambda returning the result: GCC 12
  // miscompiles `T x = co_await co_spawn(ex, [capture]() -> awaitable<T> {...})`, destroying the
  // captures twice.)
  co_await asio::co_spawn(server().blocking, spool_job_on_pool(), asio::use_awaitable);
  if (job_.error) {
    // A writer that failed has already deleted its file and closed itself; if the failure was an
    // exception, destroying it here aborts it.
    message_error_ = job_.error;
    job_.writer.reset();
    co_return;
  }
  if (commit) {
    message_size_ = job_.writer ? job_.writer->size() : 0;
    job_.writer.reset();  // committed: destroying it touches no file
    co_return;
  }
  writer_ = std::move(job_.writer);
  job_.writer.reset();
  staged_ = std::move(job_.data);  // keep the capacity for the rest of the message
  staged_.clear();
}

asio::awaitable<void> smtp_session::finish_message() {
  std::string queue_id;
  if (!message_error_) {
    co_await spool_staged(true);
    if (!message_error_) queue_id = std::exchange(job_.queue_id, std::string());
  }
  if (!queue_id.empty()) {
    server().counters.messages_spooled.fetch_add(1, std::memory_order_relaxed);
    std::vector<std::string> rcpts;
    rcpts.reserve(envelope_.recipients.size());
    for (const auto& r : envelope_.recipients) rcpts.push_back(r.address);
    server().log(smtp_log_level::info, log_event("received", queue_id)
                                           .add("client", envelope_.client_address)
                                           .add("client_port", name_)
                                           .add("helo", envelope_.helo)
                                           .add("from", envelope_.mail_from)
                                           .add("rcpt", rcpts)
                                           .add("tls", envelope_.tls)
                                           .add("esmtp", envelope_.esmtp)
                                           .add("size", message_size_));
    protocol_.message_committed(queue_id);
    if (server().options.on_message_spooled) {
      try {
        server().options.on_message_spooled(queue_id);
      } catch (const std::exception& e) {
        server().log(smtp_log_level::error, queue_id + ": on_message_spooled failed: " + e.what());
      }
    }
  } else {
    server().counters.messages_failed.fetch_add(1, std::memory_order_relaxed);
    const bool permanent = is_permanent_spool_error(message_error_);
    // The queue ID, if the spool had assigned one, names the tmp/ file that was removed.
    server().log(smtp_log_level::warning, (job_.queue_id.empty() ? std::string() : job_.queue_id + ": ") +
                                              "message from " + name_ + " not queued (" +
                                              (permanent ? "permanent" : "temporary") +
                                              "): " + message_error_.message());
    protocol_.message_failed(permanent ? smtp_spool_failure::permanent : smtp_spool_failure::temporary);
  }
  reset_message();
  command_wait_ = {};  // a completed transaction restarts the idle clock
}

void smtp_session::reset_message() noexcept {
  message_open_ = false;
  writer_.reset();
  std::string().swap(staged_);
  std::string().swap(job_.data);
  job_.queue_id.clear();
  message_error_.clear();
  envelope_ = spool_envelope{};
  with_protocol_ = {};
  tls_description_.clear();
}

// ---------------------------------------------------------------------------------------------------
// smtp_event_sink
// ---------------------------------------------------------------------------------------------------
void smtp_session::send_reply(std::string_view reply) {
  out_.append(reply);
  server().count_reply(reply);
}

void smtp_session::begin_message(const smtp_envelope& envelope) {
  reset_message();
  message_open_ = true;
  envelope_ = to_spool_envelope(envelope, client_, std::chrono::system_clock::now());
  with_protocol_ = received_with_protocol(envelope);
  if (tls_) {
    SSL* ssl = tls_->native_handle();
    const char* version = SSL_get_version(ssl);
    const char* cipher = SSL_get_cipher_name(ssl);
    tls_description_ =
        std::string(version ? version : "TLS") + " with cipher " + (cipher ? cipher : "unknown");
  }
}

void smtp_session::append_message_data(std::string_view bytes) {
  // After a spool error the rest of the message is dropped; the client gets 451 at its end.
  if (message_open_ && !message_error_) staged_.append(bytes);
}

void smtp_session::end_message() { message_open_ = false; }

void smtp_session::abort_message() {
  message_open_ = false;
  std::string().swap(staged_);
  message_error_.clear();
  if (writer_) {
    // abort() unlinks the tmp/ file: a file operation, so on the blocking executor.
    asio::post(server().blocking, [w = std::move(*writer_)]() mutable { w.abort(); });
    writer_.reset();
  }
}

void smtp_session::start_tls() { tls_requested_ = true; }

void smtp_session::close_connection() { close_requested_ = true; }

// ---------------------------------------------------------------------------------------------------
// Deadlines and the socket
// ---------------------------------------------------------------------------------------------------
void smtp_session::arm_deadline(clock::time_point deadline) {
  deadline_expired_ = false;
  io_deadline_ = deadline;
  const std::uint64_t generation = ++timer_generation_;
  timer_.expires_at(deadline);
  // The generation check discards an expiry that was already queued when the operation completed.
  timer_.async_wait([self = shared_from_this(), generation](const boost::system::error_code& ec) {
    if (ec || generation != self->timer_generation_) return;
    self->deadline_expired_ = true;
    boost::system::error_code ignored;
    self->lowest_socket().cancel(ignored);
  });
}

bool smtp_session::disarm_deadline() {
  ++timer_generation_;
  timer_.cancel();
  return std::exchange(deadline_expired_, false);
}

tcp::socket& smtp_session::lowest_socket() noexcept { return tls_ ? tls_->next_layer() : socket_; }

void smtp_session::close_socket() noexcept {
  boost::system::error_code ignored;
  tcp::socket& s = lowest_socket();
  // No TLS close_notify: SMTP ends with QUIT/221 (or 421) at its own level, so a truncation cannot
  // go unnoticed, and waiting for the peer's close_notify would let it hold the session.
  s.shutdown(tcp::socket::shutdown_both, ignored);
  s.close(ignored);
}

}  // namespace mukai::server::detail
