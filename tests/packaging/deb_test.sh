#!/usr/bin/env bash
# deb_test.sh BUILD_DIR [SOURCE_DIR]: the Debian package end to end, on the real system.
#   1. cpack -G DEB from BUILD_DIR; the control data (Depends from dpkg-shlibdeps, conffiles).
#   2. dpkg -i; files, owners, modes, the mukai user, man -w, systemd-analyze verify, check-config.
#   3. the INSTALLED binary: refuses root without [service] user; as user mukai (setpriv) on a
#      loopback port with temp directories and a notify socket made here (as systemd would):
#      READY=1 once listening, one message in, its JSON log events (received, sanitized,
#      delivered; one queue ID), a sanitized message in the maildir, no W+X mapping
#      (MemoryDenyWriteExecute), SIGTERM -> STOPPING=1 and exit 0. The admin listener ([admin]
#      listen on another loopback port): its self-signed certificate made at first start beside
#      the quarantine, the fingerprint in the log equal to the one served; /healthz, /readyz and
#      the counters of /metrics that the message moved.
#   4. dpkg -r (binary gone, conffile kept), an edited conffile survives dpkg -i --force-confold,
#      dpkg -P (conffile and logs gone, mail kept, user kept).
# The machine is left as it was found: the trap purges the package and removes the user and the
# directories when this test created them. Exit 77 (skip): not root, no dpkg/cpack, a sanitizer
# build, or a mukai already installed / present on the system (never touched).
set -uo pipefail

build=${1:?usage: deb_test.sh BUILD_DIR [SOURCE_DIR]}
src=${2:-$(cd "$(dirname "$0")/../.." && pwd)}
build=$(cd "$build" && pwd)

skip() { echo "SKIP: $*"; exit 77; }
[[ $(id -u) == 0 ]] || skip "needs root (installs the package into the system)"
for t in dpkg dpkg-deb dpkg-shlibdeps cpack setpriv python3 timeout; do
  command -v "$t" >/dev/null || skip "$t is missing"
done
[[ -f $build/CPackConfig.cmake ]] || skip "$build has no CPackConfig.cmake"
if grep -Eq '^MUKAI_(SANITIZE|FUZZ):BOOL=ON' "$build/CMakeCache.txt" 2>/dev/null; then
  skip "sanitizer/fuzzer build: not a package build"
fi
if dpkg-query -W -f='${Status}' mukai 2>/dev/null | grep -qv 'not-installed'; then
  skip "a mukai package is already installed or has config-files left: not touching it"
fi
for p in /usr/sbin/mukai /etc/mukai /lib/systemd/system/mukai.service; do
  [[ -e $p ]] && skip "$p exists: not touching a system that has mukai"
done

# What existed before: the cleanup removes only what this test created.
had_user=0; getent passwd mukai >/dev/null && had_user=1
had_group=0; getent group mukai >/dev/null && had_group=1
declare -A had_dir
for d in /var/spool/mukai /var/lib/mukai /var/log/mukai; do
  had_dir[$d]=0; [[ -e $d ]] && had_dir[$d]=1
done
for d in /var/spool/mukai /var/lib/mukai; do
  [[ ${had_dir[$d]} == 1 ]] && [[ -n $(ls -A "$d" 2>/dev/null) ]] && skip "$d exists and is not empty"
done

work=$(mktemp -d /tmp/mukai-deb-test.XXXXXX)
chmod 0755 "$work"
server_pid=""
failures=0

cleanup() {
  local rc=$?
  set +e
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null
  fi
  if dpkg-query -W -f='${Status}' mukai 2>/dev/null | grep -qv 'not-installed'; then
    timeout 120 dpkg -P mukai >/dev/null 2>&1 || echo "cleanup: dpkg -P mukai failed"
  fi
  for d in /var/spool/mukai /var/lib/mukai /var/log/mukai; do
    [[ ${had_dir[$d]} == 0 && -e $d ]] && rm -rf --one-file-system "$d"
  done
  rmdir /etc/mukai 2>/dev/null
  if [[ $had_user == 0 ]] && getent passwd mukai >/dev/null; then userdel mukai 2>/dev/null; fi
  if [[ $had_group == 0 ]] && getent group mukai >/dev/null; then groupdel mukai 2>/dev/null; fi
  rm -rf --one-file-system "$work"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
die() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok: $*"; }

# expect_stat PATH MODE OWNER:GROUP
expect_stat() {
  local got
  got=$(stat -c '%a %U:%G' "$1" 2>/dev/null) || { fail "$1 is missing"; return; }
  [[ $got == "$2 $3" ]] && ok "$1 $got" || fail "$1: expected $2 $3, got $got"
}

# ---- 1. build the package -------------------------------------------------------------------
echo "== cpack"
# cpack first builds the tree's "preinstall" target (= all): a no-op after `cmake --build`, as in
# CI; a stale tree is brought up to date here (bounded).
(cd "$work" && timeout 600 cpack -G DEB --config "$build/CPackConfig.cmake" -B "$work/pkg") >"$work/cpack.log" 2>&1 \
  || { cat "$work/cpack.log"; die "cpack failed"; }
deb=$(ls "$work"/pkg/mukai_*.deb 2>/dev/null | head -1)
[[ -f $deb ]] || { cat "$work/cpack.log"; die "no .deb produced"; }
echo "package: $(basename "$deb") ($(stat -c %s "$deb") bytes)"
[[ -e /etc/mukai || -e /usr/sbin/mukai ]] && die "cpack wrote into the live system"
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
for dep in libc6 libgmime-3.0 libicu libmagic1 libssl3 adduser libmagic-mgc; do
  [[ $depends == *"$dep"* ]] && ok "Depends has $dep" || fail "Depends lacks $dep"
done
dpkg-deb -I "$deb" conffiles | grep -qx /etc/mukai/mukai.toml && ok "conffiles" || fail "/etc/mukai/mukai.toml is not a conffile"
for s in postinst prerm postrm; do
  dpkg-deb -I "$deb" "$s" >/dev/null 2>&1 && ok "maintainer script $s" || fail "no $s"
done
contents=$(dpkg-deb -c "$deb")
for f in ./usr/sbin/mukai ./etc/mukai/mukai.toml ./lib/systemd/system/mukai.service ./usr/lib/sysusers.d/mukai.conf \
         ./usr/lib/tmpfiles.d/mukai.conf ./usr/share/man/man8/mukai.8.gz ./usr/share/man/man5/mukai.toml.5.gz; do
  grep -q " $f\$" <<<"$contents" && ok "package has $f" || fail "package lacks $f"
done

# ---- 2. install -------------------------------------------------------------------------------
echo "== dpkg -i"
timeout 300 dpkg -i "$deb" </dev/null >"$work/dpkg-i.log" 2>&1 || { cat "$work/dpkg-i.log"; die "dpkg -i failed"; }
cat "$work/dpkg-i.log"
getent passwd mukai >/dev/null || die "no mukai user after install"
shell=$(getent passwd mukai | cut -d: -f7)
[[ $shell == */nologin || $shell == /bin/false ]] && ok "mukai shell $shell" || fail "mukai has a login shell: $shell"
[[ $(id -u mukai) -lt 1000 ]] && ok "mukai is a system user (uid $(id -u mukai))" || fail "mukai uid $(id -u mukai) is not a system uid"
expect_stat /usr/sbin/mukai 755 root:root
expect_stat /etc/mukai 755 root:root
expect_stat /etc/mukai/mukai.toml 640 root:mukai
for d in /var/spool/mukai /var/lib/mukai /var/lib/mukai/quarantine /var/log/mukai; do expect_stat "$d" 700 mukai:mukai; done
expect_stat /lib/systemd/system/mukai.service 644 root:root
expect_stat /usr/share/man/man8/mukai.8.gz 644 root:root
[[ $(head -c4 /usr/sbin/mukai | od -An -c | tr -d ' ') == '177ELF' ]] || fail "/usr/sbin/mukai is not an ELF file"
/usr/sbin/mukai version | grep -q '^mukai ' && ok "mukai version" || fail "mukai version"
grep -q '^dir = "/var/spool/mukai"' /etc/mukai/mukai.toml && grep -q '^dir = "/var/lib/mukai/quarantine"' /etc/mukai/mukai.toml \
  && ok "packaged paths in mukai.toml" || fail "mukai.toml lacks the packaged spool/quarantine paths"
if out=$(timeout 30 setpriv --reuid=mukai --regid=mukai --init-groups /usr/sbin/mukai check-config --config /etc/mukai/mukai.toml 2>&1); then
  ok "check-config (as mukai): $out"
else
  fail "check-config rejects the packaged config: $out"
fi
if command -v man >/dev/null; then
  for page in "8 mukai" "5 mukai.toml"; do
    # shellcheck disable=SC2086
    p=$(man -w $page 2>/dev/null) && ok "man -w $page: $p" || fail "man -w $page"
  done
  zcat /usr/share/man/man5/mukai.toml.5.gz | grep -q 'relay_domains' || fail "mukai.toml(5) does not describe relay_domains"
else
  echo "man is not installed: man -w not checked"
fi
if command -v systemd-analyze >/dev/null; then
  # Only this unit's diagnostics count (a container without systemd as PID 1 warns about others).
  va=$(timeout 60 systemd-analyze verify /lib/systemd/system/mukai.service 2>&1 | grep -F 'mukai.service' || true)
  [[ -z $va ]] && ok "systemd-analyze verify mukai.service" || fail "systemd-analyze verify: $va"
else
  echo "systemd-analyze is not installed: unit not verified"
fi

# The installed unit: Type=notify and the hardening issue 5 lists (systemd-analyze checked the syntax).
unit=/lib/systemd/system/mukai.service
for line in Type=notify NotifyAccess=main User=mukai NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes \
            PrivateTmp=yes PrivateDevices=yes SystemCallFilter=@system-service \
            CapabilityBoundingSet=CAP_NET_BIND_SERVICE AmbientCapabilities=CAP_NET_BIND_SERVICE; do
  grep -qx "$line" "$unit" && ok "unit: $line" || fail "unit lacks $line"
done
grep -q '^ReadWritePaths=.*/var/spool/mukai.*/var/lib/mukai' "$unit" && ok "unit: ReadWritePaths spool and quarantine" \
  || fail "unit: ReadWritePaths"
# IP for SMTP and the console, AF_UNIX for sd_notify and journald; nothing else (no netlink, no packet).
grep -qx 'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' "$unit" && ok "unit: RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX" \
  || fail "unit: RestrictAddressFamilies: $(grep '^RestrictAddressFamilies' "$unit")"
# ProtectSystem=strict makes everything else read-only: what the service writes with the packaged
# paths must be under ReadWritePaths: the spool, the quarantine with index.sqlite and audit.log (the
# console's), the console's self-signed certificate (<quarantine dir>/../admin-tls) and a log file
# in /var/log/mukai.
read -r -a rw_paths <<<"$(sed -n 's/^ReadWritePaths=//p' "$unit")"
for w in /var/spool/mukai/incoming /var/lib/mukai/quarantine/index.sqlite /var/lib/mukai/quarantine/audit.log \
         /var/lib/mukai/admin-tls/cert.pem /var/log/mukai/mukai.log; do
  covered=0
  for r in "${rw_paths[@]}"; do [[ $w == "$r"/* ]] && covered=1; done
  [[ $covered == 1 ]] && ok "unit: $w is writable (ReadWritePaths)" || fail "unit: $w is not under ReadWritePaths (${rw_paths[*]})"
done

# ---- 3. run the installed relay as mukai ------------------------------------------------------
echo "== installed relay as user mukai"
run="$work/run"
install -d -o mukai -g mukai -m 0700 "$run" "$run/spool" "$run/quarantine" "$run/outbox"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
admin_port=$(free_port)
[[ $admin_port != "$port" ]] || admin_port=$(free_port)
sed -e "s|^listen = .*|listen = [\"127.0.0.1:$port\"]|" \
    -e "s|^dir = \"/var/spool/mukai\"|dir = \"$run/spool\"|" \
    -e "s|^dir = \"/var/lib/mukai/quarantine\"|dir = \"$run/quarantine\"|" \
    -e "s|^next_hop = .*|next_hop = [\"maildir:$run/outbox\"]|" \
    -e "s|^max_backoff = .*|max_backoff = \"60s\"|" \
    /etc/mukai/mukai.toml >"$run/mukai.toml"
# The packaged config leaves [admin] commented out; the console is switched on by adding it. No
# users: /metrics, /readyz and /healthz need none (metrics_networks' default is loopback).
grep -q '^\[admin' "$run/mukai.toml" && die "the packaged config has an active [admin] table: cannot add one"
printf '\n[admin]\nlisten = "127.0.0.1:%s"\n' "$admin_port" >>"$run/mukai.toml"
for want in "127.0.0.1:$port" "$run/spool" "$run/quarantine" "maildir:$run/outbox"; do
  grep -qF "$want" "$run/mukai.toml" || die "could not adapt the installed config ($want)"
done
chown mukai:mukai "$run/mukai.toml"; chmod 0600 "$run/mukai.toml"
# As root without [service] user: refused before anything is bound or created.
refusal=$(timeout 30 /usr/sbin/mukai serve --config "$run/mukai.toml" 2>&1); rc=$?
[[ $rc == 2 && $refusal == *"refusing to run as root"* ]] && ok "root without [service] user: refused, exit 2" \
  || fail "root without [service] user: exit $rc: $refusal"
[[ -z $(ls -A "$run/spool") ]] && ok "refused run created nothing in the spool" || fail "refused run touched the spool"
# systemd's side of Type=notify: a datagram socket the service (as mukai) may write to.
notify_out="$work/notify.out"
python3 - "$run/notify" "$notify_out" <<'PY' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o666)
s.settimeout(150)
with open(sys.argv[2], "a") as out:
    try:
        while True:
            msg = s.recv(4096).decode("utf-8", "replace")
            out.write(msg.replace("\n", " ") + "\n"); out.flush()
            if msg.startswith("STOPPING=1"):
                break
    except socket.timeout:
        pass
PY
notify_pid=$!
for _ in $(seq 1 50); do [[ -S $run/notify ]] && break; sleep 0.1; done
log="$work/serve.log"
(cd / && NOTIFY_SOCKET="$run/notify" exec setpriv --reuid=mukai --regid=mukai --init-groups /usr/sbin/mukai serve --config "$run/mukai.toml") >"$log" 2>&1 &
server_pid=$!
up=0
for _ in $(seq 1 100); do
  kill -0 "$server_pid" 2>/dev/null || break
  python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 1).close()" 2>/dev/null && { up=1; break; }
  sleep 0.2
done
[[ $up == 1 ]] || { cat "$log"; die "the installed relay did not start listening on 127.0.0.1:$port"; }
for _ in $(seq 1 50); do grep -q '^READY=1' "$notify_out" 2>/dev/null && break; sleep 0.1; done
grep -q '^READY=1' "$notify_out" && ok "sd_notify READY=1 once listening" || fail "no READY=1 on NOTIFY_SOCKET"
[[ $(stat -c %U /proc/$server_pid) == mukai ]] && ok "relay runs as mukai" || fail "relay does not run as mukai"
timeout 60 python3 - "$port" "$src/docs/examples/sample.eml" <<'PY' || fail "SMTP submission failed"
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=30) as s:
    s.sendmail("alice@example.com", ["staff@example.lg.jp"], open(sys.argv[2], "rb").read())
PY
delivered=""
for _ in $(seq 1 300); do
  delivered=$(find "$run/outbox/new" -type f 2>/dev/null | head -1)
  [[ -n $delivered ]] && break
  sleep 0.2
done
# [log] format = "json" (the packaged default): every line one JSON object; the message's
# received, sanitized and delivered events carry one queue ID.
python3 - "$log" <<'PY' && ok "JSON log: received, sanitized, delivered events of one queue ID" || fail "JSON log lines"
import json, sys
events = {}
for n, line in enumerate(open(sys.argv[1], encoding="utf-8"), 1):
    o = json.loads(line)  # raises on an invalid line
    assert "time" in o and "level" in o, f"line {n}: no time/level"
    if "event" in o:
        events.setdefault(o["event"], []).append(o)
for e in ("received", "delivered"):
    assert e in events, f"no {e} event; have {sorted(events)}"
done = events.get("sanitized", []) + events.get("quarantined", [])
assert done, "no sanitized/quarantined event"
qid = events["received"][0]["queue_id"]
assert done[0]["queue_id"] == qid and events["delivered"][0]["queue_id"] == qid, "queue IDs differ"
r = events["received"][0]
assert r["from"] == "alice@example.com" and r["rcpt"] == ["staff@example.lg.jp"] and r["client"] == "127.0.0.1", r
assert events["delivered"][0]["finished"] is True
print("  events:", {k: len(v) for k, v in events.items()}, "queue ID", qid)
PY
if [[ -n $delivered ]]; then
  ok "delivered: $delivered"
  expect_stat "$delivered" 600 mukai:mukai
  grep -qi '^Content-Type: text/plain' "$delivered" && ok "delivered message is text/plain" || fail "delivered message is not text/plain"
  grep -qiE '^Content-Type: (multipart|application)/' "$delivered" && fail "delivered message still has non-text parts" || ok "no non-text part delivered"
  [[ -n $(find "$run/quarantine" -type f 2>/dev/null | head -1) ]] && ok "quarantine holds the removed PDF" || fail "quarantine is empty"
else
  fail "no message in $run/outbox/new"; cat "$log"
fi
# The admin listener (HTTPS, self-signed): the certificate it serves is the one whose fingerprint
# the log shows, made at first start in <quarantine dir>/../admin-tls (under the unit's
# ReadWritePaths for the packaged paths; checked below); then the operations endpoints.
timeout 90 python3 - "$admin_port" "$log" "$run" <<'PY' && ok "admin listener: certificate, /healthz, /readyz, /metrics" \
  || fail "admin listener (https://127.0.0.1:$admin_port)"
import hashlib, http.client, json, os, pwd, re, ssl, sys, time
port, log, run = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE  # self-signed: pinned below by its fingerprint instead
ctx.minimum_version = ssl.TLSVersion.TLSv1_2

def get(path):
    c = http.client.HTTPSConnection("127.0.0.1", port, timeout=20, context=ctx)
    try:
        c.request("GET", path)
        r = c.getresponse()
        body = r.read().decode("utf-8", "replace")
        return r.status, r.getheader("Content-Type", ""), body, c.sock.getpeercert(binary_form=True) if c.sock else None
    finally:
        c.close()

msgs = [json.loads(l).get("msg", "") for l in open(log, encoding="utf-8")]
cert_lines = [m for m in msgs if m.startswith("admin: generated a self-signed certificate ")]
assert len(cert_lines) == 1, f"no (or several) certificate lines: {[m for m in msgs if m.startswith('admin:')]}"
m = re.fullmatch(r"admin: generated a self-signed certificate (\S+), SHA-256 fingerprint ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})", cert_lines[0])
assert m, cert_lines[0]
cert_path, logged = m.group(1), m.group(2)
assert os.path.dirname(cert_path) == os.path.join(run, "admin-tls"), f"certificate at {cert_path}"
st = os.stat(cert_path)
assert pwd.getpwuid(st.st_uid).pw_name == "mukai", "certificate not owned by mukai"
keys = [f for f in os.listdir(os.path.dirname(cert_path)) if f != os.path.basename(cert_path)]
assert keys and all(os.stat(os.path.join(run, "admin-tls", k)).st_mode & 0o077 == 0 for k in keys), f"key file modes: {keys}"
assert any(f"admin: listening on https://127.0.0.1:{port}/" == m for m in msgs), "no 'admin: listening' line"

status, _, body, der = get("/healthz")
assert status == 200 and body == "ok\n", (status, body)
served = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
assert served == logged, f"served certificate {served} != logged {logged}"
print("  certificate", cert_path, "SHA-256", logged)

# /readyz: spool writable and the next hop (the maildir) reached by the delivery; bounded wait for
# the start-up probe should the answer still be "not checked yet".
deadline = time.monotonic() + 20
while True:
    status, _, body, _ = get("/readyz")
    if status == 200 or time.monotonic() > deadline:
        break
    time.sleep(0.5)
assert status == 200 and body == "ready\n", ("readyz", status, body)

def sample(text, name):
    """The value of the sample `name` (with its labels, as printed), None when absent."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line[len(name) + 1:])
    return None

def family_sum(text, name):
    return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(name + "{") or l.startswith(name + " "))

# The delivered counter moves once the attempt is settled, just after the file appears: bounded wait.
deadline = time.monotonic() + 20
while True:
    status, ctype, text, _ = get("/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4"), (status, ctype, text[:200])
    if sample(text, "mukai_messages_delivered_total") == 1 or time.monotonic() > deadline:
        break
    time.sleep(0.5)
figures = {
    "mukai_messages_received_total": sample(text, "mukai_messages_received_total"),
    "mukai_messages_sanitized_total (all verdicts)": family_sum(text, "mukai_messages_sanitized_total"),
    "mukai_messages_delivered_total": sample(text, "mukai_messages_delivered_total"),
    "mukai_messages_deferred_total": sample(text, "mukai_messages_deferred_total"),
    "mukai_messages_bounced_total": sample(text, "mukai_messages_bounced_total"),
    "mukai_parts_removed_total (all)": family_sum(text, "mukai_parts_removed_total"),
    "mukai_smtp_connections_total": sample(text, "mukai_smtp_connections_total"),
    'mukai_smtp_replies_total{class="2xx"}': sample(text, 'mukai_smtp_replies_total{class="2xx"}'),
    'mukai_smtp_replies_total{class="3xx"}': sample(text, 'mukai_smtp_replies_total{class="3xx"}'),
    'mukai_smtp_replies_total{class="4xx"}': sample(text, 'mukai_smtp_replies_total{class="4xx"}'),
    'mukai_smtp_replies_total{class="5xx"}': sample(text, 'mukai_smtp_replies_total{class="5xx"}'),
    "mukai_smtp_tls_sessions_total": sample(text, "mukai_smtp_tls_sessions_total"),
}
print("  metrics:", json.dumps(figures))
f = figures
assert f["mukai_messages_received_total"] == 1, "received"
assert f["mukai_messages_sanitized_total (all verdicts)"] == 1, "sanitized"
assert sample(text, 'mukai_messages_sanitized_total{verdict="sanitized"}') == 1, "verdict sanitized (the PDF removed)"
assert f["mukai_messages_delivered_total"] == 1, "delivered"
assert f["mukai_messages_deferred_total"] == 0 and f["mukai_messages_bounced_total"] == 0, "deferred/bounced"
assert f["mukai_parts_removed_total (all)"] >= 1, "parts removed"
# Two connections: the start-up check above and smtplib's session.
assert f["mukai_smtp_connections_total"] >= 2, "connections"
# 220 greeting, EHLO, MAIL, RCPT, end of data, QUIT: at least 5 (221 after QUIT may race the read);
# DATA's 354 the only 3xx; no 4xx/5xx.
assert f['mukai_smtp_replies_total{class="2xx"}'] >= 5, "2xx replies"
assert f['mukai_smtp_replies_total{class="3xx"}'] == 1, "3xx replies"
assert f['mukai_smtp_replies_total{class="4xx"}'] == 0 and f['mukai_smtp_replies_total{class="5xx"}'] == 0, "4xx/5xx"
assert f["mukai_smtp_tls_sessions_total"] == 0, "no STARTTLS was used"
for family in ("mukai_smtp_sessions_active", "mukai_queue_messages", "mukai_queue_oldest_message_age_seconds",
               "mukai_sanitize_duration_seconds_count", "mukai_delivery_latency_seconds_count"):
    assert any(l.startswith(family) for l in text.splitlines()), f"no {family}"
assert sample(text, "mukai_sanitize_duration_seconds_count") == 1, "one sanitize timed"
PY
# MemoryDenyWriteExecute=yes in the unit: no mapping of the relay or its workers may be W+X.
wx=""
children=$( (cat /proc/"$server_pid"/task/*/children 2>/dev/null; pgrep -P "$server_pid" 2>/dev/null) | tr ' ' '\n' | sort -u)
[[ -n $children ]] && ok "worker processes: $(echo $children)" || echo "note: no worker process found to inspect"
for p in "$server_pid" $children; do
  [[ -r /proc/$p/maps ]] && wx+=$(awk '$2 ~ /w.x/' /proc/"$p"/maps)
done
[[ -z $wx ]] && ok "no writable+executable mapping (relay and workers)" || fail "W+X mappings: $wx"
kill -TERM "$server_pid"
rc=""
for _ in $(seq 1 450); do
  kill -0 "$server_pid" 2>/dev/null || { wait "$server_pid"; rc=$?; break; }
  sleep 0.2
done
if [[ -z $rc ]]; then fail "relay did not stop within 90 s of SIGTERM"; kill -KILL "$server_pid"; wait "$server_pid"; else
  [[ $rc == 0 ]] && ok "SIGTERM -> exit 0" || { fail "SIGTERM -> exit $rc"; tail -20 "$log"; }
fi
server_pid=""
wait "$notify_pid" 2>/dev/null
grep -q '^STOPPING=1' "$notify_out" && ok "sd_notify STOPPING=1 at SIGTERM" || fail "no STOPPING=1: $(cat "$notify_out")"
echo "--- relay log"; cat "$log"; echo "---"

# ---- 4. remove, conffile, purge ---------------------------------------------------------------
echo "== dpkg -r"
timeout 120 dpkg -r mukai </dev/null >"$work/dpkg-r.log" 2>&1 || { cat "$work/dpkg-r.log"; die "dpkg -r failed"; }
[[ ! -e /usr/sbin/mukai ]] && ok "binary gone after dpkg -r" || fail "/usr/sbin/mukai still there after dpkg -r"
[[ ! -e /lib/systemd/system/mukai.service ]] && ok "unit gone" || fail "unit still there after dpkg -r"
[[ -f /etc/mukai/mukai.toml ]] && ok "conffile kept by dpkg -r" || fail "dpkg -r removed the conffile"
dpkg-query -W -f='${Status}\n' mukai | grep -q 'config-files' && ok "state config-files" || fail "state: $(dpkg-query -W -f='${Status}' mukai)"

echo "== edited conffile survives a reinstall"
printf '\n# edited by deb_test.sh\n' >>/etc/mukai/mukai.toml
sed -i 's/^count = 2 /count = 3 /' /etc/mukai/mukai.toml
sum=$(sha256sum </etc/mukai/mukai.toml)
timeout 300 dpkg -i --force-confold "$deb" </dev/null >"$work/dpkg-i2.log" 2>&1 || { cat "$work/dpkg-i2.log"; die "reinstall failed"; }
[[ $(sha256sum </etc/mukai/mukai.toml) == "$sum" ]] && ok "edited config kept (--force-confold)" || fail "dpkg overwrote the edited config"
timeout 300 dpkg -i "$deb" </dev/null >"$work/dpkg-i3.log" 2>&1 || { cat "$work/dpkg-i3.log"; die "upgrade-reinstall failed"; }
[[ $(sha256sum </etc/mukai/mukai.toml) == "$sum" ]] && ok "edited config kept (plain dpkg -i, no prompt)" || fail "dpkg overwrote the edited config"
ls /etc/mukai/mukai.toml.dpkg-* >/dev/null 2>&1 && fail "unexpected $(ls /etc/mukai/mukai.toml.dpkg-*)"
expect_stat /etc/mukai/mukai.toml 640 root:mukai
[[ -x /usr/sbin/mukai ]] && ok "binary back" || fail "binary missing after reinstall"

echo "== dpkg -P"
# Simulated mail in the spool: purge must keep it (and the directory holding it).
install -d -o mukai -g mukai -m 0700 /var/spool/mukai/queue
install -o mukai -g mukai -m 0600 /dev/null /var/spool/mukai/queue/pending-message
timeout 120 dpkg -P mukai </dev/null >"$work/dpkg-p.log" 2>&1 || { cat "$work/dpkg-p.log"; die "dpkg -P failed"; }
cat "$work/dpkg-p.log"
dpkg-query -W -f='${Status}' mukai 2>/dev/null | grep -qv 'not-installed' && fail "mukai still known to dpkg after purge"
[[ ! -e /etc/mukai ]] && ok "/etc/mukai gone" || fail "/etc/mukai left after purge: $(ls -A /etc/mukai)"
[[ ! -e /var/log/mukai ]] && ok "/var/log/mukai gone" || fail "/var/log/mukai left after purge"
for f in /usr/sbin/mukai /lib/systemd/system/mukai.service /usr/lib/sysusers.d/mukai.conf /usr/lib/tmpfiles.d/mukai.conf \
         /usr/share/man/man8/mukai.8.gz; do
  [[ ! -e $f ]] || fail "$f left after purge"
done
[[ -f /var/spool/mukai/queue/pending-message ]] && ok "spool with mail kept on purge" || fail "purge deleted mail in the spool"
[[ ! -e /var/lib/mukai ]] && ok "empty /var/lib/mukai removed" || fail "empty /var/lib/mukai left: $(find /var/lib/mukai)"
getent passwd mukai >/dev/null && ok "mukai user kept on purge (Debian practice)" || fail "purge removed the mukai user"

if ((failures)); then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all checks passed"
exit 0
