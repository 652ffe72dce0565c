// The whole mukai configuration: TOML file -> immutable, validated structs.
// Every default lives here (policy defaults in policy.hpp). Unknown keys are errors: a typo in a
// security setting must never silently fall back to a default.
// Threading: load once, then share read-only (a reload builds a new object).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "config/policy.hpp"

namespace mukai::config {

struct config_error {
  std::string file;
  std::uint32_t line = 0;  // 0 when unknown
  std::string key;         // dotted path, e.g. "smtp.max_recipients"
  std::string message;
};
std::string to_string(const config_error& e);

struct smtp_timeouts {
  std::chrono::seconds greeting{300}, command{300}, data_block{600}, idle{300};
};

enum class bare_lf_mode { reject, normalise };

struct smtp_config {
  std::vector<std::string> listen{"127.0.0.1:2525"};
  std::string hostname = "localhost";
  std::vector<std::string> relay_domains;       // empty = any domain (embedded default only)
  std::vector<std::string> client_networks{"127.0.0.0/8", "::1/128"};
  std::uint64_t max_message_size = 50ull * 1024 * 1024;
  std::size_t max_recipients = 100;
  std::size_t max_connections = 1000;
  std::size_t max_connections_per_ip = 50;
  std::size_t max_errors = 10;
  std::size_t max_messages_per_session = 100;
  bool require_tls = false;
  bare_lf_mode bare_lf = bare_lf_mode::reject;
  smtp_timeouts timeouts;
};

struct tls_config {
  std::string cert, key;  // STARTTLS offered when both set
  std::string min_version = "1.2";
};

struct delivery_config {
  std::vector<std::string> next_hops{"maildir:./mukai-data/outbox"};  // "smtp://h:p[?starttls=required]" or "maildir:/path"
  std::string ca_file;  // for starttls=required verification; empty = system store
  std::chrono::seconds min_backoff{300}, max_backoff{4000};
  std::chrono::seconds max_queue_lifetime{5 * 24 * 3600};
  bool bounce = true;          // send DSNs for permanent failures and expiry
  // Where DSNs go (they are addressed to the Internet-side sender): empty = the next_hop list.
  std::vector<std::string> bounce_next_hops;
  std::size_t concurrency = 20;
};

struct spool_config {
  std::filesystem::path dir = "./mukai-data/spool";
  std::uint64_t min_free_space = 100ull * 1024 * 1024;  // below this MAIL gets 452
};

struct quarantine_config {
  std::filesystem::path dir = "./mukai-data/quarantine";
  std::chrono::seconds retention{30 * 24 * 3600};
  std::string index = "sqlite";  // backend of the index
};

struct admin_user {
  std::string name;
  std::string role;  // "viewer" | "operator"
  std::string password_hash;
  bool operator==(const admin_user&) const = default;
};

struct admin_config {
  std::string listen;  // empty = no admin listener
  std::string cert, key;
  std::vector<admin_user> users;
  std::vector<std::string> metrics_networks{"127.0.0.0/8", "::1/128"};
  std::chrono::seconds session_lifetime{8 * 3600};
  bool operator==(const admin_config&) const = default;
};

struct log_config {
  std::string level = "info";  // debug | info | warning | error
  std::string file;            // empty = stderr only
  // "json": one JSON object per line (message events with their fields; what log shippers and
  // jq read without a grok pattern). "text": "time level: ID: event key=value" for a terminal.
  std::string format = "json";
};

struct service_config {
  // When started as root: bind the listeners, then drop to this user (its primary group, no
  // supplementary groups) before the spool is touched. Empty: refuse to run as root.
  std::string user;
};

struct worker_config {
  std::size_t count = 2;
  std::uint64_t memory_limit = 512ull * 1024 * 1024;
  std::chrono::seconds timeout{60};
  // Messages one worker process sanitizes before it is replaced (bounds what a compromised worker
  // could see; a new worker costs tens of milliseconds to start).
  std::size_t max_messages = 500;
};

struct mukai_config {
  std::string source;  // file it was loaded from, "(embedded default)" otherwise
  smtp_config smtp;
  tls_config tls;
  delivery_config delivery;
  spool_config spool;
  quarantine_config quarantine;
  policy pol;
  admin_config admin;
  log_config log;
  worker_config worker;
  service_config service;
};

struct load_result {
  std::optional<mukai_config> config;  // set when errors is empty
  std::vector<config_error> errors;
};

// The embedded default: loopback only, any recipient domain, maildir delivery under ./mukai-data.
mukai_config embedded_default();
load_result load_config_file(const std::filesystem::path& file);
load_result load_config_text(std::string_view toml_text, std::string_view source_name);

// Checks that only matter when the file drives `mukai serve` (not `mukai sanitize --config`).
std::vector<config_error> validate_for_serve(const mukai_config& c);

// Shared parsers for human-written values ("30s", "5m", "2h", "5d"; "10M", "512K", bytes).
std::optional<std::chrono::seconds> parse_duration(std::string_view text);
std::optional<std::uint64_t> parse_size(std::string_view text);

}  // namespace mukai::config
