# packaged-config.awk: config/mukai.toml (the commented sample) -> /etc/mukai/mukai.toml of the
# Debian package. Run at install time (see the install() rules at the end of CMakeLists.txt), so
# the packaged file follows every change to the sample. Only what a packaged install fixes is
# rewritten, section-aware, keeping each line's comment:
#   [smtp] listen      -> ["0.0.0.0:25"]   (the unit grants CAP_NET_BIND_SERVICE; client_networks
#                                            still admits loopback only until the site edits it)
#   [spool] dir        -> "/var/spool/mukai"
#   [quarantine] dir   -> "/var/lib/mukai/quarantine"
#   [delivery] next_hop-> a placeholder host that cannot deliver anywhere by accident
# relay_domains, hostname, contact and notice_from stay the sample's example.lg.jp placeholders:
# `mukai check-config` accepts them, the site must change them.
# Fails (exit 1) when a rewritten key is not found exactly once: a restructured sample must not
# silently produce a package with the wrong paths.
function value_sub(line, value,    eq, rest, hash) {
  eq = index(line, "=")
  rest = substr(line, eq + 1)
  hash = index(rest, "#")
  if (hash > 0) {
    comment = substr(rest, hash)
    return substr(line, 1, eq) " " value "   " comment
  }
  return substr(line, 1, eq) " " value
}
BEGIN { section = ""; first = 1 }
first {
  first = 0
  print "# /etc/mukai/mukai.toml — configuration of the mukai Debian package (a dpkg conffile: your"
  print "# edits are kept on upgrade). Generated from the project's commented sample config/mukai.toml"
  print "# with the packaged paths. Before `systemctl enable --now mukai`, set at least: smtp.hostname,"
  print "# smtp.relay_domains, smtp.client_networks, delivery.next_hop, policy.contact, policy.notice_from."
  print "# See mukai.toml(5)."
  if ($0 ~ /^#/) next
}
/^[ \t]*\[/ {
  s = $0
  sub(/^[ \t]*\[+[ \t]*/, "", s); sub(/[ \t]*\]+.*$/, "", s)
  section = s
}
section == "smtp" && /^[ \t]*listen[ \t]*=/ {
  print value_sub($0, "[\"0.0.0.0:25\"]"); n_listen++; next
}
section == "spool" && /^[ \t]*dir[ \t]*=/ {
  print value_sub($0, "\"/var/spool/mukai\""); n_spool++; next
}
section == "quarantine" && /^[ \t]*dir[ \t]*=/ {
  print value_sub($0, "\"/var/lib/mukai/quarantine\""); n_quarantine++; next
}
section == "delivery" && /^[ \t]*next_hop[ \t]*=/ {
  print "# CHANGE: the LGWAN-side mail server (placeholder; nothing is delivered until it resolves)."
  print value_sub($0, "[\"smtp://lgwan-mail.example.lg.jp:25?starttls=opportunistic\"]"); n_hop++; next
}
{ print }
END {
  if (n_listen != 1 || n_spool != 1 || n_quarantine != 1 || n_hop != 1) {
    printf "packaged-config.awk: expected smtp.listen, spool.dir, quarantine.dir and delivery.next_hop once each; found %d %d %d %d\n", \
      n_listen, n_spool, n_quarantine, n_hop > "/dev/stderr"
    exit 1
  }
}
