// A deadline for one awaitable operation: Boost 1.81 has no asio::cancel_after, so this races the
// operation against a steady_timer with awaitable_operators' operator|| (a parallel_group that
// cancels the loser).
//
// Why on_expiry as well as cancellation: per-operation cancellation reaches the operation only if
// every composed layer forwards it. A deadline must hold even when one does not, so on expiry we
// first call on_expiry() (normally: close the socket), which completes any pending I/O on it with an
// error, and only then let the race finish. A connection whose deadline expired is not reused.
//
// GCC 12 note (applies to every coroutine here): a co_await inside an if-condition combined with a
// discarded `(void)co_await` of a non-trivial result miscompiles (a resumed frame is destroyed twice;
// reproduced with Boost 1.81 at -O2). Bind every co_await result to a named variable first
// (`const bool ok = co_await f(); if (!ok) ...`), never `if (co_await ...)` or `co_return co_await`.
//
// Threading: the operation and the timer run as two child coroutines on the caller's executor;
// on_expiry() runs on that executor too. With a multi-threaded io_context, use a strand so that
// on_expiry() (closing the socket) never runs concurrently with the operation's own handlers.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/result.hpp>
#include <chrono>
#include <memory>
#include <utility>
#include <variant>

namespace mukai::server {

namespace detail {

// Waits for the timer; on expiry (not on cancellation) runs on_expiry and records that it fired.
template <typename OnExpiry>
boost::asio::awaitable<void> expire_after(boost::asio::steady_timer& timer, OnExpiry& on_expiry,
                                          bool& fired) {
  auto [ec] = co_await timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
  if (!ec) {
    fired = true;
    on_expiry();
  }
}

}  // namespace detail

// Awaits `op`. Returns its value, or asio::error::timed_out if `timeout` elapsed first (on_expiry()
// was called), or asio::error::operation_aborted if the caller's coroutine was cancelled.
// `on_expiry` must be noexcept in spirit: it runs in a child coroutine, an exception from it is
// rethrown here.
template <typename T, typename OnExpiry>
[[nodiscard]] boost::asio::awaitable<boost::system::result<T>> await_with_deadline(
    boost::asio::awaitable<T> op, std::chrono::steady_clock::duration timeout, OnExpiry on_expiry) {
  using namespace boost::asio::experimental::awaitable_operators;
  const auto executor = co_await boost::asio::this_coro::executor;
  boost::asio::steady_timer timer(executor, timeout);
  bool fired = false;
  auto outcome = co_await (std::move(op) || detail::expire_after(timer, on_expiry, fired));
  using result_type = boost::system::result<T>;
  if (outcome.index() == 0)
    co_return result_type(boost::system::in_place_value, std::move(std::get<0>(outcome)));
  if (fired) co_return result_type(boost::system::in_place_error, boost::asio::error::timed_out);
  co_return result_type(boost::system::in_place_error, boost::asio::error::operation_aborted);
}

}  // namespace mukai::server
