// Internal to the SMTP listener: one client connection. Owns the socket (then the TLS stream), the
// protocol object and the message being spooled; run() is the session's only coroutine.
//
// The loop (run_loop, one template for the plain socket and the TLS stream) follows the protocol
// object's contract: write the queued replies after each receive() (RFC 2920 batching), stop reading
// while the protocol waits for the spool or the handshake (wants_input()), drop every unconsumed byte
// after STARTTLS or a close, and apply deadlines to every read, write and handshake.
//
// Message data: append_message_data() only copies into `staged_` (bounded: it is flushed to the spool
// after each receive() that left a read buffer's worth, so it never exceeds about two read buffers).
// spool::begin, the writes and commit() run on the blocking executor: even a buffered write(2) can
// block for long under dirty-page throttling, and an open(2)/fsync certainly can; one stalled
// session must not stall the thousands on the same I/O thread. The writer is moved into that job and
// back, so it is never touched by two threads; the Received: header is written first, once the queue
// ID is known (spool::begin assigns it).
//
// Interruptions (a deadline, shutdown) never call the protocol object from outside the coroutine:
// they set a flag and cancel the pending socket operation, and the loop applies them between I/O
// operations. So the protocol object is only ever called from run(), which keeps the sink's
// callbacks (abort_message in particular) from racing with a spool job in flight.
//
// Threading: everything runs on the session's strand (socket_.get_executor()), except the spool job,
// which runs while run() is suspended awaiting it and touches only what was moved into it plus
// immutable members. request_stop() may be called from any thread.
#pragma once

#include <array>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include "server/smtp_protocol.hpp"
#include "server/smtp_server_state.hpp"
#include "server/spool.hpp"

namespace mukai::server::detail {

enum class stop_level : std::uint8_t { none, graceful, hard };

// A session's input: a small inline buffer for the usual idle wait and short commands, and a large
// heap buffer only while a burst or a message is read (released again when the session is idle), so
// that thousands of idle sessions cost little memory. Bytes are only appended when it is empty.
class session_input {
 public:
  explicit session_input(std::size_t large_size) noexcept : large_size_(large_size) {}
  [[nodiscard]] std::string_view data() const noexcept { return {base() + begin_, end_ - begin_}; }
  [[nodiscard]] bool empty() const noexcept { return begin_ == end_; }
  void consume(std::size_t n) noexcept;
  void clear() noexcept { begin_ = end_ = 0; }
  // Where to read next (only when empty): the inline buffer unless `large` is asked for.
  [[nodiscard]] std::pair<char*, std::size_t> prepare(bool large);
  void commit(std::size_t n) noexcept { end_ += n; }
  // Frees the large buffer if it holds nothing.
  void release_if_empty() noexcept;

 private:
  [[nodiscard]] const char* base() const noexcept { return using_large_ ? large_.get() : small_.data(); }

  std::size_t large_size_;
  std::unique_ptr<char[]> large_;
  bool using_large_ = false;
  std::size_t begin_ = 0, end_ = 0;
  std::array<char, 512> small_{};
};

class smtp_session final : public smtp_event_sink, public std::enable_shared_from_this<smtp_session> {
 public:
  smtp_session(smtp_server_state::slot slot, std::shared_ptr<const smtp_settings> settings,
               boost::asio::ip::tcp::socket socket, boost::asio::ip::address client, bool client_allowed);
  ~smtp_session() override;
  smtp_session(const smtp_session&) = delete;
  smtp_session& operator=(const smtp_session&) = delete;

  [[nodiscard]] boost::asio::awaitable<void> run();
  // From any thread: graceful = the protocol's begin_shutdown (idle sessions close at once with
  // 421), hard = shutdown_now. Idempotent; a higher level overrides a lower one.
  void request_stop(stop_level level);
  [[nodiscard]] const boost::asio::any_io_executor& executor() const noexcept { return strand_; }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }

  // smtp_event_sink (called only from within protocol_ calls, i.e. from run()).
  void send_reply(std::string_view reply) override;
  void begin_message(const smtp_envelope& envelope) override;
  void append_message_data(std::string_view bytes) override;
  void end_message() override;
  void abort_message() override;
  void start_tls() override;
  void close_connection() override;

 private:
  enum class loop_exit : std::uint8_t { closed, start_tls };
  enum class read_status : std::uint8_t { data, timeout, interrupted, closed };
  enum class io_state : std::uint8_t { none, reading, writing, handshaking };
  using clock = std::chrono::steady_clock;

  // One hop to the blocking executor: begin (first time), append, optionally commit.
  struct spool_job {
    std::optional<spool_writer> writer;
    std::string data;  // staged message data; handed back cleared, capacity kept
    bool commit = false;
    std::error_code error;
    std::string queue_id;  // set when committed
  };

  template <typename Stream>
  boost::asio::awaitable<loop_exit> run_loop(Stream& stream);
  template <typename Stream>
  boost::asio::awaitable<read_status> read_input(Stream& stream);
  template <typename Stream>
  boost::asio::awaitable<bool> write_replies(Stream& stream);
  boost::asio::awaitable<loop_exit> handshake_and_run();
  // Hands the staged data to the spool (begin on first use); with `commit`, commits and leaves the
  // queue ID in job_.queue_id. On failure message_error_ is set.
  boost::asio::awaitable<void> spool_staged(bool commit);
  boost::asio::awaitable<void> finish_message();
  void run_spool_step(spool_job& job) const;
  boost::asio::awaitable<void> spool_job_on_pool();  // runs run_spool_step(job_) on the blocking executor

  void apply_stop_request();
  void on_stop_request(stop_level level);
  [[nodiscard]] clock::time_point read_deadline(clock::time_point now) const;
  void arm_deadline(clock::time_point deadline);
  [[nodiscard]] bool disarm_deadline();
  void after_receive();
  [[nodiscard]] boost::asio::ip::tcp::socket& lowest_socket() noexcept;
  void close_socket() noexcept;
  void reset_message() noexcept;
  [[nodiscard]] smtp_server_state& server() const noexcept { return slot_.state(); }

  smtp_server_state::slot slot_;
  std::shared_ptr<const smtp_settings> settings_;
  boost::asio::any_io_executor strand_;
  boost::asio::ip::tcp::socket socket_;
  std::optional<boost::asio::ssl::stream<boost::asio::ip::tcp::socket>> tls_;
  boost::asio::steady_timer timer_;
  boost::asio::ip::address client_;
  std::string name_;  // "[192.0.2.1]:port" for log lines
  smtp_protocol protocol_;
  session_input in_;
  std::string out_;  // replies queued by the protocol, written after each receive()

  // Flags set by the sink during a protocol call.
  bool tls_requested_ = false;
  bool close_requested_ = false;

  // Deadlines and interruptions (strand only).
  std::uint64_t timer_generation_ = 0;
  bool deadline_expired_ = false;
  io_state io_ = io_state::none;
  clock::time_point io_deadline_{};
  stop_level stop_requested_ = stop_level::none;
  stop_level stop_applied_ = stop_level::none;
  bool last_read_filled_ = false;

  // Timing.
  clock::time_point connected_at_;
  clock::duration command_wait_{};  // waiting for commands since the connection/TLS/last message
  bool in_data_ = false;            // DATA or a BDAT chunk is being read
  clock::duration data_wait_{};     // time spent waiting for this message's octets
  std::uint64_t data_bytes_ = 0;
  std::uint64_t message_size_ = 0;  // bytes of the last committed message (for its log event)

  // The message being received.
  bool message_open_ = false;
  spool_envelope envelope_;  // from begin_message; read by the spool job
  std::string_view with_protocol_;
  std::string tls_description_;
  std::string staged_;  // message data not yet handed to the spool
  std::optional<spool_writer> writer_;
  std::error_code message_error_;  // the first spool error of this message: drop the rest, then 451
  spool_job job_;                  // owned by the blocking executor while spool_staged() awaits it
};

// The session coroutine's entry point (keeps the session alive while it runs).
boost::asio::awaitable<void> run_session(std::shared_ptr<smtp_session> session);

}  // namespace mukai::server::detail
