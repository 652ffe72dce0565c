// Readiness for /readyz: can this relay take mail and pass it on now?
//
// The rule (documented for administrators in docs/deployment.md):
//  1. The spool takes mail: <spool>/tmp is writable (access(2)) and the free-space floor
//     ([spool] min_free_space) is not reached (the same test that answers MAIL with 452).
//  2. The next hop was reachable recently: the latest connection outcome - from a delivery attempt
//     or from a probe - is a success and is at most `stale_after` (5 minutes) old. A delivery
//     attempt counts as connected when some hop answered at all (even a 4xx: the LGWAN-side server
//     is up; the message's own problem is not the relay's readiness). A failed attempt makes the
//     relay not ready at once, with the error in the answer.
//  3. When the latest outcome is older than stale_after (a quiet relay), asking starts ONE probe in
//     the background and answers from the latest outcome meanwhile; the probe connects to the hops
//     in order, reads the SMTP greeting (220 = reachable) and says QUIT (a maildir hop: the
//     directory, or its nearest existing parent, is writable). So probes happen only while someone
//     polls /readyz, at most one per stale_after, and never on the caller's thread: readiness is
//     answered without blocking (it runs on the admin listener's I/O thread).
//  At start-up one probe runs; until it ends the answer is "not ready: next hop not checked yet".
//
// Threading: next_hop_health is safe from any thread (one mutex). probe_next_hops runs on the
// caller's executor (use a strand for a multi-threaded io_context).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "server/next_hop.hpp"

namespace mukai::server {

class next_hop_health {
 public:
  using clock = std::chrono::system_clock;
  explicit next_hop_health(std::chrono::seconds stale_after = std::chrono::minutes(5)) : stale_after_(stale_after) {}

  // A connection outcome (delivery attempt or probe). `detail`: the hop, or the error.
  void record(bool connected, std::string detail, clock::time_point now = clock::now());
  // true: ready; the text says why (for the /readyz body).
  [[nodiscard]] std::pair<bool, std::string> status(clock::time_point now = clock::now()) const;
  // The latest outcome is missing or older than stale_after and no probe runs: the caller should
  // start one (and this marks one as running until the next record()).
  [[nodiscard]] bool claim_probe(clock::time_point now = clock::now());

 private:
  mutable std::mutex mutex_;
  std::chrono::seconds stale_after_;
  std::optional<clock::time_point> last_;
  bool last_ok_ = false;
  std::string detail_;
  bool probing_ = false;
};

struct probe_result {
  bool connected = false;
  std::string detail;  // "smtp://...: 220" or the error of the last hop tried
};

// Tries `hops` in order until one is reachable (see above); each SMTP hop gets `timeout` in all.
[[nodiscard]] boost::asio::awaitable<probe_result> probe_next_hops(std::vector<next_hop> hops,
                                                                   std::chrono::milliseconds timeout);

// Rule 1 above; the text names the problem.
[[nodiscard]] std::pair<bool, std::string> check_spool_writable(const std::filesystem::path& spool_root,
                                                                bool storage_low);

}  // namespace mukai::server
