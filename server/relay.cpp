#include "server/relay.hpp"

#include <sys/stat.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "server/delivery.hpp"
#include "server/dsn.hpp"
#include "server/line_scan.hpp"
#include "server/next_hop.hpp"
#include "server/audit_log.hpp"
#include "server/quarantine_index.hpp"
#include "server/quarantine_service.hpp"
#include "server/quarantine_store.hpp"
#include "server/readiness.hpp"
#include "server/relay_events.hpp"
#include "server/relay_metrics.hpp"
#include "server/smtp_trace.hpp"
#include "server/spool.hpp"

namespace mukai::server {

namespace asio = boost::asio;
using std::chrono::steady_clock;
using std::chrono::system_clock;

namespace {

// Headroom the spool needs beyond [smtp] max_message_size (the Received header we prepend), and
// for the sanitized copy (re-encoding as quoted-printable or base64 can grow text by a third; the
// engine's own output budget bounds it too).
constexpr std::uint64_t spool_headroom = 64 * 1024;

}  // namespace

spool_options spool_options_for(const config::mukai_config& c) {
  spool_options o;
  o.max_message_size = c.smtp.max_message_size + spool_headroom;
  o.max_outbound_size = std::max<std::uint64_t>(2 * o.max_message_size,
                                                2 * c.pol.limit.max_decoded_output + spool_headroom);
  return o;
}

namespace {

std::vector<next_hop> parse_hops_or_throw(const std::vector<std::string>& entries, const char* key) {
  auto parsed = parse_next_hops(entries);
  if (!parsed.errors.empty()) {
    std::string text = std::string("delivery.") + key + ":";
    for (auto& e : parsed.errors) text += " " + to_string(e) + ";";
    throw std::invalid_argument(text);
  }
  return parsed.hops;
}

// Everything delivery needs that a reload may replace; a delivery attempt keeps the snapshot it
// started with.
struct delivery_setup {
  std::vector<next_hop> hops;
  std::vector<next_hop> bounce_hops;  // empty: hops
  std::unique_ptr<smtp_client> client;
  retry_policy retry;
  dsn_options dsn;
  bool bounce = true;
  std::size_t concurrency = 20;
};

std::shared_ptr<const delivery_setup> make_delivery_setup(const config::mukai_config& c,
                                                          const std::optional<smtp_client_options>& client_options) {
  auto s = std::make_shared<delivery_setup>();
  s->hops = parse_hops_or_throw(c.delivery.next_hops, "next_hop");
  if (!c.delivery.bounce_next_hops.empty())
    s->bounce_hops = parse_hops_or_throw(c.delivery.bounce_next_hops, "bounce_next_hop");
  smtp_client_options co = client_options ? *client_options : smtp_client_options::from_config(c);
  co.helo_name = c.smtp.hostname;
  co.ca_file = c.delivery.ca_file;
  s->client = std::make_unique<smtp_client>(std::move(co));
  s->retry = retry_policy::from_config(c.delivery);
  s->dsn.reporting_mta = c.smtp.hostname;
  s->dsn.max_queue_lifetime = c.delivery.max_queue_lifetime;
  s->bounce = c.delivery.bounce;
  s->concurrency = std::max<std::size_t>(1, c.delivery.concurrency);
  return s;
}

// One delivery attempt of one message; shared between the I/O and the blocking stages.
struct delivery_job {
  std::string id;
  std::shared_ptr<const delivery_setup> setup;
  // Shared with the in-memory map for a first attempt from memory: never a copy of the body.
  std::shared_ptr<const spooled_message> message;
  delivery_state state;
  std::vector<std::size_t> pending;
  bool from_memory = false;  // the sanitized copy is not in outbound/ (relay::impl::in_memory)
  bool is_dsn = false;
  bool ready = false;  // loaded and something to send
  delivery_outcome outcome;
};

}  // namespace

struct relay::impl {
  enum class stage : std::uint8_t { sanitize, deliver };
  struct sanitize_item {
    std::string id;
    bool claimed = false;  // already in active/ (a retry)
  };

  impl(const config::mukai_config& c, relay_options o, logger& l)
      : options(std::move(o)),
        log(l),
        cfg(std::make_shared<const config::mukai_config>(c)),
        spool_(c.spool.dir, files, spool_options_for(c)),
        store(c.quarantine.dir, files),
        io(static_cast<int>(io_thread_count())),
        blocking(std::max<std::size_t>(1, options.blocking_threads)) {}

  std::size_t io_thread_count() const {
    if (options.io_threads) return options.io_threads;
    return std::max(1u, std::thread::hardware_concurrency());
  }

  relay_options options;
  logger& log;
  posix_file_ops files;

  mutable std::mutex mutex;  // guards everything below up to the counters
  std::shared_ptr<const config::mukai_config> cfg;
  std::shared_ptr<sanitizer_pool> pool;
  std::shared_ptr<const delivery_setup> delivery;
  std::deque<sanitize_item> sanitize_queue;
  std::set<std::string, std::less<>> sanitize_known;  // queued or being sanitized
  std::deque<std::string> delivery_queue;
  std::set<std::string, std::less<>> delivery_known;  // queued or being delivered
  std::size_t delivery_in_flight = 0;
  std::multimap<steady_clock::time_point, std::pair<std::string, stage>> retries;
  // Deferred messages by ID -> next attempt: filled from deferred/ (every delivery state read) at
  // start, on flush() and every rescan_interval, and by each defer in between, so the scheduler's
  // tick never reads the disk for a large deferred queue.
  std::map<std::string, system_clock::time_point, std::less<>> deferred_schedule;
  bool stopping = false;
  bool stopped = false;
  bool flush_requested = false;
  std::condition_variable sanitize_cv, scheduler_cv, delivery_idle_cv;

  spool spool_;
  quarantine_store store;
  // The operators' tools (opened by the constructor once the quarantine directory exists). The
  // service keeps the start-time configuration: quarantine settings change only at a restart.
  std::shared_ptr<const config::mukai_config> quarantine_cfg;
  std::unique_ptr<quarantine_index> qindex;
  std::unique_ptr<audit_log> audit;
  std::unique_ptr<quarantine_service> service;
  std::atomic<bool> purge_running{false};
  timespec outbound_mtime{};  // scheduler thread only
  asio::io_context io;
  asio::thread_pool blocking;
  std::unique_ptr<smtp_server> server;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::vector<std::thread> io_threads, sanitize_threads;
  std::thread scheduler;

  struct atomic_counters {
    std::atomic<std::uint64_t> clean{0}, sanitized{0}, held{0}, sanitize_retries{0}, delivery_attempts{0},
        recipients_delivered{0}, recipients_deferred{0}, recipients_failed{0}, messages_finished{0},
        dsns_queued{0}, corrupt{0};
  } n;
  relay_metrics metrics;
  next_hop_health health;
  std::map<std::string, std::string, std::less<>> message_ids;  // guarded by mutex

  // The sanitizer workers for a configuration; their failures are logged as errors.
  std::shared_ptr<sanitizer_pool> make_pool(const config::mukai_config& c) {
    auto wo = worker_options_from_config(c, options.worker_binary, options.config_file);
    wo.log = [this](const std::string& line) { log.write(log_level::error, line); };
    return std::make_shared<sanitizer_pool>(std::move(wo));
  }

  // ---- logging -------------------------------------------------------------------------------

  void info(const std::string& s) { log.write(log_level::info, s); }
  void warn(const std::string& s) { log.write(log_level::warning, s); }
  void error(const std::string& s) { log.write(log_level::error, s); }

  // ---- queues --------------------------------------------------------------------------------

  void enqueue_sanitize(std::string id, bool claimed = false) {
    {
      const std::lock_guard lock(mutex);
      if (stopping || sanitize_known.contains(id)) return;
      sanitize_known.insert(id);
      sanitize_queue.push_back({std::move(id), claimed});
    }
    sanitize_cv.notify_one();
  }

  void enqueue_delivery(std::string id) {
    const std::lock_guard lock(mutex);
    if (stopping || delivery_known.contains(id)) return;
    delivery_known.insert(id);
    delivery_queue.push_back(std::move(id));
    pump_deliveries_locked();
  }

  // Sanitized copies delivered from memory (no outbound/ file; their raw copy is in active/), by ID,
  // until the message is finished or written to outbound/. Bounded: beyond in_memory_limit bytes new
  // copies go to disk, so a slow next hop cannot make the relay grow without limit.
  static constexpr std::size_t in_memory_limit = 64ull * 1024 * 1024;
  std::map<std::string, std::shared_ptr<const spooled_message>, std::less<>> in_memory;
  std::size_t in_memory_bytes = 0;

  // Moves `body` into `msg` and registers it, when it fits under the limit; else leaves body alone.
  bool keep_in_memory(const std::string& id, const std::shared_ptr<spooled_message>& msg, std::string& body) {
    const std::lock_guard lock(mutex);
    if (stopping || in_memory_bytes + body.size() > in_memory_limit || in_memory.contains(id)) return false;
    msg->body = std::move(body);
    in_memory_bytes += msg->body.size();
    in_memory.emplace(id, msg);
    return true;
  }
  std::shared_ptr<const spooled_message> find_in_memory(std::string_view id) {
    const std::lock_guard lock(mutex);
    auto it = in_memory.find(id);
    return it == in_memory.end() ? nullptr : it->second;
  }
  void forget_in_memory(std::string_view id) {
    const std::lock_guard lock(mutex);
    auto it = in_memory.find(id);
    if (it == in_memory.end()) return;
    in_memory_bytes -= it->second->body.size();
    in_memory.erase(it);
  }

  void schedule_retry(std::string id, stage s) {
    const std::lock_guard lock(mutex);
    retries.emplace(steady_clock::now() + options.retry_interval, std::make_pair(std::move(id), s));
  }

  // ---- sanitizing ----------------------------------------------------------------------------

  void sanitize_loop() {
    for (;;) {
      sanitize_item item;
      std::shared_ptr<sanitizer_pool> p;
      std::shared_ptr<const config::mukai_config> c;
      {
        std::unique_lock lock(mutex);
        sanitize_cv.wait(lock, [&] { return stopping || !sanitize_queue.empty(); });
        if (stopping) return;
        item = std::move(sanitize_queue.front());
        sanitize_queue.pop_front();
        p = pool;
        c = cfg;
      }
      try {
        process_incoming(item, *p, *c);
      } catch (const std::exception& e) {
        // bad_alloc and the like: the message stays where it is and is tried again.
        error(item.id + ": sanitizing failed: " + e.what() + "; retrying later");
        schedule_retry(item.id, stage::sanitize);
      }
      const std::lock_guard lock(mutex);
      sanitize_known.erase(item.id);
    }
  }

  void process_incoming(const sanitize_item& item, sanitizer_pool& p, const config::mukai_config& c) {
    const std::string& id = item.id;
    if (!item.claimed) {
      if (auto ec = spool_.claim_incoming(id)) {
        // ENOENT: already sanitized (a rescan raced with us) or being retried from active/.
        if (ec == std::errc::no_such_file_or_directory && spool_.locate(id) != spool_state::active) return;
        if (ec != std::errc::no_such_file_or_directory) {
          error(id + ": cannot claim incoming message: " + ec.message() + "; retrying later");
          n.sanitize_retries++;
          schedule_retry(id, stage::sanitize);
          return;
        }
      }
    }
    auto msg = spool_.read(spool_state::active, id);
    if (!msg) {
      if (msg.error() == spool_errc::corrupt) {
        move_to_corrupt(spool_state::active, id);
        return;
      }
      error(id + ": cannot read the spooled message: " + msg.error().message() + "; retrying later");
      n.sanitize_retries++;
      schedule_retry(id, stage::sanitize);
      return;
    }
    quarantine_envelope qe;
    qe.mail_from = msg->envelope.mail_from;
    for (auto& r : msg->envelope.recipients) qe.rcpt_to.push_back(r.address);
    const std::string received_by =
        "by " + c.smtp.hostname + " (mukai sanitizer) id " + id + "; " + format_rfc5322_date(system_clock::now());
    const auto t0 = steady_clock::now();
    job_outcome out = p.sanitize(msg->body, store, qe, received_by);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - t0).count();
    if (out.store_error) {
      // Fail closed: without the removed parts in the quarantine the notice would promise what we
      // do not have. The message waits in active/.
      error(id + ": cannot write the quarantine: " + out.store_error.message() + "; message kept, retrying later");
      n.sanitize_retries++;
      schedule_retry(id, stage::sanitize);
      return;
    }
    spool_envelope env = msg->envelope;
    env.body = has_8bit(out.result.output) ? spool_body_type::eight_bit_mime : spool_body_type::seven_bit;
    // active/ID stays the durable copy until delivery finishes (see spool.hpp), so the sanitized copy
    // needs no fsync (raw_copy_kept), and for the first attempt none on disk at all while memory
    // allows: one file created, written and fsynced per message, as in a plain MTA.
    auto sanitized = std::make_shared<spooled_message>();
    sanitized->queue_id = id;
    sanitized->envelope = env;
    const bool in_memory = keep_in_memory(id, sanitized, out.result.output);
    if (!in_memory) {
      if (auto ec = spool_.store_outbound(id, out.result.output, env, outbound_durability::raw_copy_kept)) {
        error(id + ": cannot spool the sanitized message: " + ec.message() + "; retrying later");
        n.sanitize_retries++;
        schedule_retry(id, stage::sanitize);
        return;
      }
    }
    const auto& rep = out.result.rep;
    metrics.record_sanitized(rep, std::chrono::duration<double>(steady_clock::now() - t0).count());
    switch (rep.result) {
      case sanitize::verdict::clean: n.clean++; break;
      case sanitize::verdict::sanitized: n.sanitized++; break;
      case sanitize::verdict::held: n.held++; break;
    }
    remember_message_id(id, out.result.headers.message_id);
    log.write(log_level::info,
              sanitized_event(id, msg->envelope, msg->body.size(), out.result, std::chrono::milliseconds(ms)));
    enqueue_delivery(id);
  }

  // Message-IDs from the sanitizer, for the delivery events (the relay never parses a message). In
  // memory only and bounded: after a restart, or beyond the bound, delivery events omit it.
  static constexpr std::size_t max_remembered_ids = 100'000;
  void remember_message_id(const std::string& id, const std::string& message_id) {
    const std::lock_guard lock(mutex);
    if (message_ids.size() < max_remembered_ids) message_ids[id] = message_id.substr(0, 998);
  }

  std::string message_id_of(const std::string& id) {
    const std::lock_guard lock(mutex);
    auto it = message_ids.find(id);
    return it == message_ids.end() ? std::string() : it->second;
  }

  void move_to_corrupt(spool_state state, const std::string& id) {
    n.corrupt++;
    auto moved = spool_.move_to_corrupt(state, id);
    if (moved)
      error(id + ": spool file does not verify; moved to corrupt/" + *moved + " (kept for the administrator)");
    else
      error(id + ": spool file does not verify and cannot be moved to corrupt/: " + moved.error().message());
  }

  // ---- delivery ------------------------------------------------------------------------------

  void pump_deliveries_locked() {
    while (!stopping && !delivery_queue.empty() && delivery_in_flight < delivery->concurrency) {
      auto job = std::make_shared<delivery_job>();
      job->id = std::move(delivery_queue.front());
      delivery_queue.pop_front();
      job->setup = delivery;
      ++delivery_in_flight;
      asio::co_spawn(asio::make_strand(io), deliver_message(job), [this, job](std::exception_ptr e) {
        if (e) {
          try {
            std::rethrow_exception(e);
          } catch (const std::exception& x) {
            error(job->id + ": delivery attempt failed: " + x.what() + "; retrying later");
          } catch (...) {
            error(job->id + ": delivery attempt failed; retrying later");
          }
          schedule_retry(job->id, stage::deliver);
        }
        const std::lock_guard lock(mutex);
        delivery_known.erase(job->id);
        --delivery_in_flight;
        if (delivery_in_flight == 0) delivery_idle_cv.notify_all();
        pump_deliveries_locked();
      });
    }
  }

  asio::awaitable<void> deliver_message(std::shared_ptr<delivery_job> job) {
    co_await asio::co_spawn(blocking, load_job(job), asio::use_awaitable);
    if (!job->ready) co_return;
    const delivery_services services{*job->setup->client, files, blocking.get_executor()};
    const auto& hops = job->is_dsn && !job->setup->bounce_hops.empty() ? job->setup->bounce_hops : job->setup->hops;
    delivery_outcome outcome = co_await deliver(*job->message, hops, job->pending, services);
    job->outcome = std::move(outcome);
    co_await asio::co_spawn(blocking, settle_job(job), asio::use_awaitable);
  }

  // Blocking stage before an attempt: the message and its delivery state.
  asio::awaitable<void> load_job(std::shared_ptr<delivery_job> job) {
    if (auto mem = find_in_memory(job->id)) {
      // A state exists when the message was sanitized again after a crash: recipients it records as
      // delivered are not sent again.
      auto state = spool_.load_delivery_state(job->id, mem->envelope);
      if (!state) {
        error(job->id + ": cannot read the delivery state: " + state.error().message() + "; retrying later");
        schedule_retry(job->id, stage::deliver);
        co_return;
      }
      job->message = std::move(mem);
      job->state = std::move(*state);
      job->from_memory = true;
    } else if (!load_job_from_spool(job)) {
      co_return;
    }
    job->pending = pending_recipients(job->state);
    job->is_dsn = job->message->envelope.client_address == dsn_client_address;
    if (job->pending.empty()) {
      // Every recipient settled before a crash stopped us from removing the message.
      if (auto ec = finish_job(*job, job->state)) {
        error(job->id + ": cannot remove delivered message: " + ec.message());
      } else {
        n.messages_finished++;
        forget_message_id(job->id);
      }
      co_return;
    }
    n.delivery_attempts++;
    job->ready = true;
  }

  std::error_code finish_job(const delivery_job& job, const delivery_state& state) {
    if (!job.from_memory) return spool_.finish(job.id, state);
    auto ec = spool_.finish_unspooled(job.id);
    if (!ec) forget_in_memory(job.id);
    return ec;
  }

  bool load_job_from_spool(const std::shared_ptr<delivery_job>& job) {
    auto msg = spool_.read(spool_state::outbound, job->id);
    if (!msg) {
      if (msg.error() == std::errc::no_such_file_or_directory) return false;  // finished or deferred meanwhile
      if (msg.error() == spool_errc::corrupt) {
        move_to_corrupt(spool_state::outbound, job->id);
        return false;
      }
      error(job->id + ": cannot read outbound message: " + msg.error().message() + "; retrying later");
      schedule_retry(job->id, stage::deliver);
      return false;
    }
    auto state = spool_.load_delivery_state(job->id);
    if (!state) {
      error(job->id + ": cannot read the delivery state: " + state.error().message() + "; retrying later");
      schedule_retry(job->id, stage::deliver);
      return false;
    }
    job->message = std::make_shared<const spooled_message>(std::move(*msg));
    job->state = std::move(*state);
    return true;
  }

  // Blocking stage after an attempt: DSN, delivery state, then finish or defer.
  asio::awaitable<void> settle_job(std::shared_ptr<delivery_job> job) {
    const auto now = system_clock::now();
    const auto& env = job->message->envelope;
    delivery_state state = job->state;
    const attempt_summary sum = record_attempt(state, env, job->outcome, now, job->setup->retry);

    for (auto& hop : job->outcome.hops) {
      if (hop.error)
        warn(job->id + ": " + hop.hop + ": " + hop.error_text);
    }
    // A copy delivered from memory goes to outbound/ once something outlives this attempt (a
    // recipient to retry, a state to save beside a DSN): from then on the spool has it like any other.
    const bool wants_dsn = !sum.newly_failed.empty() && job->setup->bounce && !job->is_dsn;
    if (job->from_memory && (!sum.finished || wants_dsn)) {
      if (auto ec = spool_.store_outbound(job->id, job->message->body, env, outbound_durability::raw_copy_kept)) {
        error(job->id + ": cannot spool the sanitized message: " + ec.message() + "; retrying later");
        schedule_retry(job->id, stage::deliver);
        co_return;
      }
      forget_in_memory(job->id);
      job->from_memory = false;
    }

    record_hop_health(job->outcome);
    bool dsn_spooled = false;
    std::string dsn_queued;
    // The DSN is spooled before the failures are recorded: a crash in between sends the failed
    // recipients once more (and perhaps a second DSN), it never loses the DSN.
    if (wants_dsn) {
      if (auto dsn = build_dsn(*job->message, sum.newly_failed, job->setup->dsn, now)) {
        const std::string dsn_id = new_queue_id();
        if (auto ec = spool_.store_outbound(dsn_id, dsn->body, dsn->envelope)) {
          error(job->id + ": cannot spool the DSN: " + ec.message() + "; retrying later");
          schedule_retry(job->id, stage::deliver);
          co_return;
        }
        n.dsns_queued++;
        dsn_spooled = true;
        dsn_queued = dsn_id;
        enqueue_delivery(dsn_id);
      }
    }
    // Results are recorded before acting on them (a recipient recorded delivered is never sent
    // again), except when this attempt settled every recipient and spooled no DSN: then removing
    // the message is the record, and finish() decides from the state in hand.
    if (!sum.finished || dsn_spooled) {
      if (auto ec = spool_.save_delivery_state(job->id, state)) {
        error(job->id + ": cannot record delivery results: " + ec.message() + "; retrying later");
        schedule_retry(job->id, stage::deliver);
        co_return;
      }
    }
    n.recipients_delivered += sum.delivered;
    n.recipients_failed += sum.failed;
    n.recipients_deferred += sum.deferred;
    if (!sum.newly_failed.empty()) metrics.record_bounced_message();
    if (sum.finished) {
      if (auto ec = finish_job(*job, state)) {
        error(job->id + ": cannot remove the delivered message: " + ec.message() + "; retrying later");
        schedule_retry(job->id, stage::deliver);
        co_return;
      }
      n.messages_finished++;
      if (std::any_of(state.recipients.begin(), state.recipients.end(),
                      [](const auto& r) { return r.status == recipient_status::delivered; }))
        metrics.record_delivered_message(std::chrono::duration<double>(now - env.received).count());
      log_attempt(*job, state, now, true, {}, dsn_queued);
      forget_message_id(job->id);
    } else {
      if (auto ec = spool_.defer(job->id, sum.next_attempt)) {
        error(job->id + ": cannot defer: " + ec.message() + "; retrying later");
        schedule_retry(job->id, stage::deliver);
        co_return;
      }
      {
        const std::lock_guard lock(mutex);
        deferred_schedule[job->id] = sum.next_attempt;
      }
      metrics.record_deferred_message();
      log_attempt(*job, state, now, false, sum.next_attempt, dsn_queued);
    }
  }

  void forget_message_id(const std::string& id) {
    const std::lock_guard lock(mutex);
    message_ids.erase(id);
  }

  void log_attempt(const delivery_job& job, const delivery_state& state, system_clock::time_point now, bool finished,
                   system_clock::time_point next_attempt, const std::string& dsn_id) {
    const std::string message_id = message_id_of(job.id);
    const attempt_context c{job.id, message_id, job.message->envelope, job.outcome, state, now,
                            finished, next_attempt, dsn_id, job.is_dsn};
    for (auto& [level, ev] : attempt_events(c)) log.write(level, ev);
  }

  // A hop whose session ran (even one answering 4xx for every recipient), or that took a final
  // answer before an error, is reachable (readiness.hpp). hop_report counts recipients left
  // pending by a refused connection as temporary, so those do not count.
  void record_hop_health(const delivery_outcome& outcome) {
    if (outcome.hops.empty()) return;
    for (auto& hop : outcome.hops) {
      if (!hop.error || hop.delivered + hop.permanent > 0) {
        health.record(true, hop.hop);
        return;
      }
    }
    health.record(false, outcome.hops.back().hop + ": " + outcome.hops.back().error_text);
  }

  void start_probe() {
    std::vector<next_hop> hops;
    {
      const std::lock_guard lock(mutex);
      if (stopping) return;
      hops = delivery->hops;
    }
    asio::co_spawn(asio::make_strand(io), probe_next_hops(std::move(hops), std::chrono::seconds(10)),
                   [this](std::exception_ptr e, probe_result r) {
                     if (e) r = {false, "probe failed"};
                     health.record(r.connected, r.detail);
                   });
  }

  relay_queue_gauges queue_gauges() const {
    relay_queue_gauges g;
    const std::lock_guard lock(mutex);
    g.incoming = sanitize_known.size();
    g.outbound = delivery_known.size();
    g.deferred = deferred_schedule.size();
    // Queue IDs sort by creation time, so each set's first ID is its oldest message.
    std::optional<std::string_view> oldest;
    auto consider = [&oldest](std::string_view id) {
      if (!oldest || id < *oldest) oldest = id;
    };
    if (!sanitize_known.empty()) consider(*sanitize_known.begin());
    if (!delivery_known.empty()) consider(*delivery_known.begin());
    if (!deferred_schedule.empty()) consider(deferred_schedule.begin()->first);
    for (auto& [when, item] : retries) {
      consider(item.first);
      if (item.second == stage::sanitize) ++g.incoming; else ++g.outbound;
    }
    if (oldest) {
      if (auto t = queue_id_time(*oldest))
        g.oldest_age_seconds = std::max(0.0, std::chrono::duration<double>(system_clock::now() - *t).count());
    }
    return g;
  }

  // ---- scheduler -----------------------------------------------------------------------------

  void scheduler_loop() {
    auto next_rescan = steady_clock::now() + options.rescan_interval;
    auto next_purge = steady_clock::now();
    for (;;) {
      bool flush_now = false;
      std::vector<std::pair<std::string, stage>> due;
      std::vector<std::string> due_deferred_ids;
      {
        std::unique_lock lock(mutex);
        scheduler_cv.wait_for(lock, options.scan_interval, [&] { return stopping || flush_requested; });
        if (stopping) return;
        flush_now = flush_requested;
        flush_requested = false;
        const auto now = steady_clock::now();
        while (!retries.empty() && (flush_now || retries.begin()->first <= now)) {
          due.push_back(std::move(retries.begin()->second));
          retries.erase(retries.begin());
        }
        due_deferred_ids = take_due_deferred_locked(system_clock::now());
      }
      try {
        for (auto& [id, s] : due) {
          if (s == stage::sanitize)
            enqueue_sanitize(id, spool_.locate(id) == spool_state::active);
          else
            enqueue_delivery(id);
        }
        for (auto& id : due_deferred_ids) requeue(id);
        scan_outbound_if_changed();
        if (steady_clock::now() >= next_purge) {
          start_purge();
          next_purge = steady_clock::now() + options.purge_interval;  // hourly by default
        }
        if (flush_now || steady_clock::now() >= next_rescan) {
          load_deferred_schedule(flush_now);
          std::vector<std::string> now_due;
          {
            const std::lock_guard lock(mutex);
            now_due = take_due_deferred_locked(system_clock::now());
          }
          for (auto& id : now_due) requeue(id);
          rescan();
          next_rescan = steady_clock::now() + options.rescan_interval;
        }
      } catch (const std::exception& e) {
        error(std::string("scheduler: ") + e.what());
      }
    }
  }

  // deferred/ is the truth: its next attempts replace what the schedule holds for those IDs
  // (`all_due`: flush, every message is due now).
  void load_deferred_schedule(bool all_due) {
    auto entries = spool_.deferred_schedule();
    if (!entries) {
      error("scheduler: cannot list deferred/: " + entries.error().message());
      return;
    }
    const std::lock_guard lock(mutex);
    for (auto& [next, id] : *entries) deferred_schedule[std::move(id)] = all_due ? system_clock::time_point{} : next;
  }

  std::vector<std::string> take_due_deferred_locked(system_clock::time_point now) {
    std::vector<std::string> due;
    for (auto it = deferred_schedule.begin(); it != deferred_schedule.end();) {
      if (it->second <= now) {
        due.push_back(it->first);
        it = deferred_schedule.erase(it);
      } else {
        ++it;
      }
    }
    return due;
  }

  // deferred/ID -> outbound/ID and into the delivery queue (unless it is being delivered already:
  // its attempt is running, or it was requeued meanwhile).
  void requeue(const std::string& id) {
    {
      const std::lock_guard lock(mutex);
      if (stopping || delivery_known.contains(id)) return;
    }
    if (auto ec = spool_.requeue_deferred(id)) {
      if (ec != std::errc::no_such_file_or_directory) error(id + ": cannot requeue: " + ec.message());
      return;
    }
    enqueue_delivery(id);
  }

  // A release queued by another process (`mukai quarantine release` writes outbound/ directly)
  // reaches the relay here within one scan_interval: a tick costs one stat of outbound/, and lists
  // it only when its modification time changed since the last listing (our own deliveries change
  // it too; enqueue_delivery ignores IDs it knows). No extra directory, no IPC, nothing to lose:
  // the full rescan stays the safety net.
  void scan_outbound_if_changed() {
    struct stat st {};
    if (::stat((quarantine_cfg->spool.dir / "outbound").c_str(), &st) != 0) return;
    if (st.st_mtim.tv_sec == outbound_mtime.tv_sec && st.st_mtim.tv_nsec == outbound_mtime.tv_nsec) return;
    outbound_mtime = st.st_mtim;  // before listing: a change during the listing is seen next tick
    if (auto ids = spool_.list(spool_state::outbound)) {
      for (auto& id : *ids) enqueue_delivery(id);
    }
  }

  // Retention purge on the blocking pool (it removes files; never two at once).
  void start_purge() {
    if (purge_running.exchange(true)) return;
    asio::post(blocking, [this] {
      try {
        const auto r = service->purge(system_clock::now(), "mukai");
        if (r.expired || r.failed)
          info("quarantine purge: " + std::to_string(r.expired) + " expired, " + std::to_string(r.failed) +
               " could not be removed (retried at the next purge)");
      } catch (const std::exception& e) {
        error(std::string("quarantine purge: ") + e.what());
      }
      purge_running = false;
    });
  }

  // The directories are the truth; the queues only a cache of them.
  void rescan() {
    if (auto ids = spool_.list(spool_state::incoming)) {
      for (auto& id : *ids) enqueue_sanitize(id);
    }
    if (auto ids = spool_.list(spool_state::outbound)) {
      for (auto& id : *ids) enqueue_delivery(id);
    }
  }
};

relay::relay(const config::mukai_config& config, relay_options options, logger& log)
    : impl_(std::make_unique<impl>(config, std::move(options), log)) {
  auto& m = *impl_;
  m.delivery = make_delivery_setup(config, m.options.client_options);
  // Listeners first (port 25 may need root), then the privilege drop, then everything that
  // touches mail: no spool file is ever created by root.
  smtp_server_options so;
  so.on_message_spooled = [&m](std::string id) { m.enqueue_sanitize(std::move(id)); };
  so.log = [&log](smtp_log_level level, std::string_view text) { log.write(level, text); };
  so.log_event = [&log](smtp_log_level level, const log_event& ev) { log.write(level, ev); };
  m.server = std::make_unique<smtp_server>(m.io.get_executor(), m.blocking.get_executor(), m.spool_, config,
                                           std::move(so));
  if (m.options.after_bind) m.options.after_bind();
  // Parents of the spool and quarantine roots (e.g. ./mukai-data on a first run); the roots
  // themselves are created 0700 by ensure_layout.
  for (const auto& dir : {config.spool.dir, config.quarantine.dir}) {
    std::error_code ec;
    if (dir.has_parent_path()) std::filesystem::create_directories(dir.parent_path(), ec);
    if (ec) throw std::system_error(ec, "cannot create " + dir.parent_path().string());
  }
  if (auto ec = m.spool_.ensure_layout())
    throw std::system_error(ec, "spool directory " + config.spool.dir.string());
  auto recovered = m.spool_.recover();
  if (!recovered) throw std::system_error(recovered.error(), "spool recovery in " + config.spool.dir.string());
  const auto& r = *recovered;
  m.info("spool " + config.spool.dir.string() + " recovered: " + std::to_string(r.incoming) + " incoming, " +
         std::to_string(r.outbound) + " outbound, " + std::to_string(r.deferred) + " deferred; purged " +
         std::to_string(r.purged_tmp) + " unacknowledged, requeued " + std::to_string(r.requeued_active) +
         " interrupted, " + std::to_string(r.superseded) + " superseded copies, " +
         std::to_string(r.discarded_unsynced) + " unsynced sanitized copies to redo");
  m.n.corrupt += r.corrupt;
  for (auto& name : r.corrupt_names)
    m.error("spool: a file failed verification at start-up and was moved to corrupt/" + name);
  if (auto ec = m.store.ensure_layout())
    throw std::system_error(ec, "quarantine directory " + config.quarantine.dir.string());
  if (auto ec = m.store.purge_staging()) m.warn("quarantine: cannot purge tmp/: " + ec.message());
  {
    std::error_code ec;
    m.qindex = open_sqlite_index(config.quarantine.dir / "index.sqlite", ec);
    if (!m.qindex) throw std::system_error(ec, "quarantine index " + (config.quarantine.dir / "index.sqlite").string());
    m.store.attach_index(m.qindex.get());
    m.quarantine_cfg = m.cfg;
    m.audit = std::make_unique<audit_log>(config.quarantine.dir / "audit.log");
    m.service = std::make_unique<quarantine_service>(*m.quarantine_cfg, m.store, *m.qindex, m.spool_, *m.audit);
    m.service->notify_release = [&m](const std::string& queue_id) { m.enqueue_delivery(queue_id); };
    m.service->on_action_event = [&m](const log_event& ev) { m.log.write(log_level::info, ev); };
  }

  m.pool = m.make_pool(config);
}

relay::~relay() {
  try {
    shutdown(std::chrono::seconds(0));
  } catch (...) {
  }
}

void relay::start() {
  auto& m = *impl_;
  m.work.emplace(m.io.get_executor());
  for (std::size_t i = 0; i < m.io_thread_count(); ++i) m.io_threads.emplace_back([&m] { m.io.run(); });
  // Four threads per worker: while some wait for the spool's fsyncs (claim, read, store_outbound),
  // the others keep the worker processes busy. pool.sanitize() blocks for a free worker.
  const std::size_t sanitizers = 4 * std::max<std::size_t>(1, m.cfg->worker.count);
  for (std::size_t i = 0; i < sanitizers; ++i) m.sanitize_threads.emplace_back([&m] { m.sanitize_loop(); });
  m.rescan();
  m.load_deferred_schedule(false);
  m.scheduler = std::thread([&m] { m.scheduler_loop(); });
  m.server->start();
  if (m.health.claim_probe()) m.start_probe();
  std::string where;
  for (auto& ep : m.server->local_endpoints()) {
    std::ostringstream s;
    s << ep;
    where += (where.empty() ? "" : " ") + s.str();
  }
  m.info("mukai relay listening on " + where + "; delivering to " + to_string(m.delivery->hops.front()) +
         (m.delivery->hops.size() > 1 ? " (+" + std::to_string(m.delivery->hops.size() - 1) + " failover)" : ""));
}

quarantine_service& relay::quarantine() { return *impl_->service; }

audit_log& relay::audit() { return *impl_->audit; }

std::vector<boost::asio::ip::tcp::endpoint> relay::local_endpoints() const { return impl_->server->local_endpoints(); }

void relay::reload(const config::mukai_config& config) {
  auto& m = *impl_;
  auto setup = make_delivery_setup(config, m.options.client_options);  // throws on a bad hop list
  m.server->reload(config);                                            // throws and keeps the old one
  auto new_pool = m.make_pool(config);
  std::shared_ptr<const config::mukai_config> old;
  {
    const std::lock_guard lock(m.mutex);
    old = m.cfg;
    m.cfg = std::make_shared<const config::mukai_config>(config);
    m.delivery = std::move(setup);
    m.pool = std::move(new_pool);  // the old pool ends when its last message is done
    m.pump_deliveries_locked();    // the concurrency may have grown
  }
  m.service->reload(config);  // release_forbidden, limits, retention for the quarantine tools
  if (old->smtp.listen != config.smtp.listen || old->spool.dir != config.spool.dir ||
      old->quarantine.dir != config.quarantine.dir || old->worker.count != config.worker.count ||
      old->log.file != config.log.file || old->log.format != config.log.format || old->service.user != config.service.user)
    m.warn("reload: listen addresses, directories, worker count, the log file and format and the service user "
           "change only at a restart");
  m.info("configuration reloaded from " + config.source);
}

void relay::flush() {
  {
    const std::lock_guard lock(impl_->mutex);
    impl_->flush_requested = true;
  }
  impl_->scheduler_cv.notify_all();
}

void relay::shutdown(std::chrono::steady_clock::duration grace) {
  auto& m = *impl_;
  {
    const std::lock_guard lock(m.mutex);
    if (m.stopped) return;
    m.stopped = true;
  }
  const bool running = m.work.has_value();
  if (running) {
    // SMTP first: every message a client is sending gets its 250 (or a 421 before it starts).
    auto done = asio::co_spawn(m.io, m.server->shutdown(grace), asio::use_future);
    try {
      done.get();
    } catch (const std::exception& e) {
      m.error(std::string("smtp shutdown: ") + e.what());
    }
  }
  {
    const std::lock_guard lock(m.mutex);
    m.stopping = true;
  }
  m.sanitize_cv.notify_all();
  m.scheduler_cv.notify_all();
  for (auto& t : m.sanitize_threads) t.join();
  if (m.scheduler.joinable()) m.scheduler.join();
  {
    std::unique_lock lock(m.mutex);
    if (!m.delivery_idle_cv.wait_for(lock, grace, [&] { return m.delivery_in_flight == 0; }))
      m.warn("shutdown: " + std::to_string(m.delivery_in_flight) +
             " delivery attempt(s) abandoned; their recipients stay queued");
  }
  m.work.reset();
  m.io.stop();
  for (auto& t : m.io_threads) t.join();
  m.blocking.join();
  if (running) m.info("mukai relay stopped");
}

relay_counters relay::counters() const {
  auto& m = *impl_;
  relay_counters c;
  c.smtp = m.server->counters();
  {
    const std::lock_guard lock(m.mutex);
    c.workers = m.pool->stats();
  }
  c.clean = m.n.clean;
  c.sanitized = m.n.sanitized;
  c.held = m.n.held;
  c.sanitize_retries = m.n.sanitize_retries;
  c.delivery_attempts = m.n.delivery_attempts;
  c.recipients_delivered = m.n.recipients_delivered;
  c.recipients_deferred = m.n.recipients_deferred;
  c.recipients_failed = m.n.recipients_failed;
  c.messages_finished = m.n.messages_finished;
  c.dsns_queued = m.n.dsns_queued;
  c.corrupt = m.n.corrupt;
  return c;
}

std::string relay::metrics_text() const { return impl_->metrics.render(counters(), impl_->queue_gauges()); }

std::pair<bool, std::string> relay::readiness() {
  auto& m = *impl_;
  std::shared_ptr<const config::mukai_config> c;
  {
    const std::lock_guard lock(m.mutex);
    if (m.stopping || m.stopped) return {false, "stopping"};
    c = m.cfg;
  }
  auto spool = check_spool_writable(c->spool.dir, m.spool_.storage_low(c->spool.min_free_space));
  if (m.health.claim_probe()) m.start_probe();
  auto hop = m.health.status();
  return {spool.first && hop.first, spool.second + "; " + hop.second};
}

}  // namespace mukai::server
