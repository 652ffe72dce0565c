#!/usr/bin/env bash
# quarantine_cli_test.sh MUKAI SHARED_DIR: `mukai quarantine` end to end on the binary.
#   1. `mukai sanitize --quarantine-dir` on corpus messages with attachments (a PDF, an inline
#      multipart, ClamAV's clam.exe mbox) and on a built message with clam.exe whose Subject and
#      file name carry an ANSI escape and a bidi override: each is indexed as it is stored.
#   2. list (table, --json, every filter, paging), show (headers, parts with hashes, the sanitized
#      text; nothing raw reaches the terminal), stats.
#   3. release: the spool's outbound/ gets the original byte for byte under a new queue ID; refused
#      for the executables (policy.release_forbidden) and, without --unverified, for a message held
#      whole (never inspected); the history and audit.log say who.
#   4. delete, purge with a short retention, rebuild-index after deleting index.sqlite (status and
#      history kept), exit codes 0/1/2.
set -uo pipefail

mukai=${1:?usage: quarantine_cli_test.sh MUKAI SHARED_DIR}
shared=${2:?usage: quarantine_cli_test.sh MUKAI SHARED_DIR}
corpus=$shared/corpus
command -v python3 >/dev/null || { echo "SKIP: python3 is missing"; exit 77; }
[[ -d $corpus ]] || { echo "SKIP: no corpus at $corpus"; exit 77; }

work=$(mktemp -d "${TMPDIR:-/tmp}/mukai-qcli.XXXXXX")
trap '[[ -n ${KEEP:-} ]] || rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
check() {  # check DESCRIPTION COMMAND...
  local what=$1; shift
  "$@" || fail "$what"
}
# expect_rc RC DESCRIPTION COMMAND...: runs COMMAND, output in $work/out and $work/err.
expect_rc() {
  local want=$1 what=$2; shift 2
  "$@" >"$work/out" 2>"$work/err"
  local rc=$?
  [[ $rc == "$want" ]] || fail "$what: exit $rc, wanted $want; stderr: $(head -c 500 "$work/err")"
}
q() { env -u SUDO_USER "$mukai" quarantine "$@" --config "$work/mukai.toml"; }
json() { python3 -c "import json,sys; d=json.load(open('$work/out')); print($1)"; }
# No byte that drives a terminal: ESC, other C0 controls but tab/newline, C1 (UTF-8 C2 80-9F),
# bidi overrides/isolates (E2 80 AA-AE, E2 81 A6-A9).
terminal_clean() {
  python3 - "$1" <<'EOF'
import re, sys
data = open(sys.argv[1], 'rb').read()
bad = re.search(rb'[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xaa-\xae]|\xe2\x81[\xa6-\xa9]', data)
sys.exit(1 if bad else 0)
EOF
}

cat >"$work/mukai.toml" <<EOF
[spool]
dir = "$work/spool"
[quarantine]
dir = "$work/q"
retention = "30d"
[policy]
release_forbidden = ["executable"]
EOF

# --- 1. store through mukai sanitize -----------------------------------------------------------
exe_b64=$(base64 -w 76 "$corpus/attachments-clamav/clam.exe")
printf '%s\r\n' \
  "From: Attacker <attacker@example.com>" \
  "To: staff@example.lg.jp" \
  "Subject: =?UTF-8?B?$(printf 'Invoice \033[31mred\xe2\x80\xaeexe.pdf' | base64 -w0)?=" \
  "Message-ID: <hostile-1@example.com>" \
  "MIME-Version: 1.0" \
  "Content-Type: multipart/mixed; boundary=zz" \
  "" \
  "--zz" \
  "Content-Type: text/plain; charset=utf-8" \
  "" \
  "see attachment" \
  "--zz" \
  "Content-Type: application/octet-stream" \
  "Content-Disposition: attachment; filename*=UTF-8''evil%1B%5B2J%E2%80%AEfdp.exe" \
  "Content-Transfer-Encoding: base64" \
  "" >"$work/hostile.eml"
printf '%s\r\n' "$exe_b64" "--zz--" >>"$work/hostile.eml"

for m in "$corpus/deltachat__pdf_filename_simple.eml" "$corpus/enmime__inlinemultipart.eml" \
         "$corpus/clamav-testfiles__clam.exe.mbox.base64__0000.eml" "$work/hostile.eml"; do
  expect_rc 0 "sanitize $(basename "$m")" \
    "$mukai" sanitize --config "$work/mukai.toml" --quarantine-dir "$work/q" "$m" -o "$work/sanitized.eml" --report "$work/report.json"
done
check "index.sqlite created by mukai sanitize" test -f "$work/q/index.sqlite"

# --- 2. list, show, stats --------------------------------------------------------------------
expect_rc 0 "list" q list
check "list shows 4 items" grep -q '^4 of 4 items$' "$work/out"
check "list table names the PDF" grep -q 'simple.pdf' "$work/out"
check "list output is terminal-clean" terminal_clean "$work/out"
check "list shows the bidi override escaped" grep -qF '\xE2\x80\xAE' "$work/out"

expect_rc 0 "list --json" q list --json
check "json total" test "$(json 'd["total"]')" == 4
check "json output is terminal-clean" terminal_clean "$work/out"
# The engine removes controls from the Subject and C0 controls from file names; the bidi override
# of the file name is kept as sent (the report's rule), so it is the CLI's job to escape it.
check "json keeps the hostile file name as data" test "$(json 'sum("[2J\u202efdp.exe" in p["filename"] for i in d["items"] for p in i["parts"])')" == 1

count() { q list --json "$@" >"$work/out" 2>"$work/err" || fail "list $*"; json 'd["total"]'; }
check "--filename" test "$(count --filename SIMPLE.PDF)" == 1
check "--filename exe" test "$(count --filename .exe)" == 2
check "--sender" test "$(count --sender attacker@)" == 1
check "--recipient (header To)" test "$(count --recipient staff@example.lg.jp)" == 1
check "--subject" test "$(count --subject 'simple named')" == 1
check "--reason" test "$(count --reason attachments-removed)" == 4
check "--text (Message-ID)" test "$(count --text hostile-1@)" == 1
check "--status held" test "$(count --status held)" == 4
check "--since an hour ago" test "$(count --since 1h)" == 4
check "--until an hour ago" test "$(count --until 1h)" == 0
check "--since a future day" test "$(count --since 2999-01-01)" == 0
q list --json --limit 3 --offset 2 >"$work/out" || fail "paging"
check "paging: total" test "$(json 'd["total"]')" == 4
check "paging: page size" test "$(json 'len(d["items"])')" == 2

pdf_id=$(q list --json --filename simple.pdf | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])')
exe_id=$(q list --json --sender attacker@ | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])')
clam_id=$(q list --json --text clam.exe --status held | python3 -c 'import json,sys; print([i["id"] for i in json.load(sys.stdin)["items"] if not i["mail_from"] and "attacker" not in i["from"]][0])')
[[ -n $pdf_id && -n $exe_id && -n $clam_id ]] || { echo "FAIL: IDs not found"; exit 1; }

expect_rc 0 "show pdf" q show "$pdf_id"
check "show: subject" grep -q '^Subject:     Re: simple named pdf' "$work/out"
check "show: part with sha256" grep -qE '^      sha256 [0-9a-f]{64}$' "$work/out"
check "show: detected type" grep -q 'detected application/pdf' "$work/out"
check "show: the sanitized text" grep -q '^  | mail body' "$work/out"
check "show: the notice names the part" grep -q '^  | .*simple.pdf' "$work/out"
expect_rc 0 "show hostile" q show "$exe_id"
check "show hostile: terminal-clean" terminal_clean "$work/out"
check "show hostile: flags" grep -q 'flags .*executable' "$work/out"
check "show hostile: bidi override escaped" grep -qF '\xE2\x80\xAE' "$work/out"
expect_rc 1 "show unknown ID" q show 20260101T000000Z-0000000000
expect_rc 1 "show a path" q show ../../../etc/passwd

expect_rc 0 "stats" q stats
check "stats: 4 held" grep -q '^Items:       4 (held 4,' "$work/out"
check "stats: executable type" grep -q 'portable-executable' "$work/out"

# --- 3. release --------------------------------------------------------------------------------
expect_rc 1 "release without recipients (mukai sanitize keeps no envelope)" q release "$pdf_id"
expect_rc 0 "release --to" q release "$pdf_id" --to kikaku@example.lg.jp --to soumu@example.lg.jp
queue_id=$(sed -n 's/^released to 2 recipients as queue ID \([0-9a-z]*\)$/\1/p' "$work/out")
check "release names the queue ID" test -n "$queue_id"
check "outbound/ has the released copy" test -f "$work/spool/outbound/$queue_id"
check "the copy holds the original byte for byte" python3 - "$work/spool/outbound/$queue_id" "$work/q/items/$pdf_id/original.eml" "$corpus/deltachat__pdf_filename_simple.eml" <<'EOF'
import sys
spooled, original, corpus = (open(p, 'rb').read() for p in sys.argv[1:])
# The spool file: header, "data\n", the message verbatim, a 105-byte trailer (server/spool.hpp).
body = spooled[spooled.index(b'\ndata\n') + 6:-105]
sys.exit(0 if original == corpus and body == original and b'\nrcpt kikaku@example.lg.jp' in spooled else 1)
EOF
expect_rc 0 "show after release" q show "$pdf_id"
check "status released" grep -q '^Status:      released' "$work/out"
check "history names the OS user" grep -qE "cli:$(id -un)  release  ok  queue=$queue_id" "$work/out"
check "audit.log names the OS user" grep -q "\"who\":\"cli:$(id -un)\",\"client\":\"local\",\"action\":\"release\",\"target\":\"$pdf_id\",\"result\":\"ok\"" "$work/q/audit.log"
for id in "$exe_id" "$clam_id"; do
  expect_rc 1 "release of an executable is refused" q release "$id" --to kikaku@example.lg.jp
  check "refusal says why" grep -q 'executable' "$work/err"
done
check "nothing else queued" test "$(ls "$work/spool/outbound" | wc -l)" == 1
check "refusal recorded" grep -q "\"target\":\"$exe_id\",\"result\":\"refused\"" "$work/q/audit.log"
expect_rc 1 "release to a bad address" q release "$pdf_id" --to 'x@y>\r\nDATA'
expect_rc 2 "--to on delete is a usage error" q delete "$pdf_id" --to a@b
expect_rc 2 "no ID" q release
expect_rc 2 "unknown command" q frobnicate
expect_rc 2 "bad --status" q list --status lost
expect_rc 2 "bad config" "$mukai" quarantine list --config "$work/missing.toml"

# A message held whole (encrypted: nothing inside was inspected) needs the operator's --unverified.
printf '%s\r\n' "From: a@example.com" "To: kikaku@example.lg.jp" "Subject: sealed" "MIME-Version: 1.0" \
  'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="e"' "" \
  "--e" "Content-Type: application/pgp-encrypted" "" "Version: 1" \
  "--e" "Content-Type: application/octet-stream" "" "-----BEGIN PGP MESSAGE-----" "hQEMA1234" \
  "-----END PGP MESSAGE-----" "--e--" >"$work/sealed.eml"
expect_rc 0 "sanitize an encrypted message" \
  "$mukai" sanitize --config "$work/mukai.toml" --quarantine-dir "$work/q" "$work/sealed.eml" -o "$work/sanitized.eml" --report "$work/report.json"
held_id=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["verdict"] == "held"; print(r["quarantine_id"])' "$work/report.json") ||
  fail "the encrypted message was not held"
expect_rc 1 "release of a message held whole without --unverified" q release "$held_id" --to kikaku@example.lg.jp
check "refusal says it was never inspected" grep -q 'held whole' "$work/err"
check "refusal names the option" grep -q -- '--unverified' "$work/err"
expect_rc 0 "release --unverified" q release "$held_id" --to kikaku@example.lg.jp --unverified
check "the confirmation is in the history" grep -q "\"target\":\"$held_id\",\"result\":\"ok\".*unverified=confirmed" "$work/q/audit.log"
expect_rc 2 "--unverified on delete is a usage error" q delete "$held_id" --unverified

if [[ $(id -u) == 0 ]]; then
  # root must not leave root-owned files in a quarantine that belongs to the relay's user.
  chown 65534 "$work/q"
  expect_rc 1 "root refused on another user's quarantine" q delete "$clam_id"
  check "refusal names sudo -u" grep -q 'sudo -u' "$work/err"
  expect_rc 0 "root may still list" q list
  chown 0 "$work/q"
fi
SUDO_USER=yamada "$mukai" quarantine release "$pdf_id" --to chief@example.lg.jp --config "$work/mukai.toml" >/dev/null ||
  fail "release under sudo"
check "audit.log keeps the sudo user" grep -q '"client":"local sudo:yamada","action":"release"' "$work/q/audit.log"
rm -f "$work/spool/outbound/"*

# --- 4. delete, rebuild-index, purge ----------------------------------------------------------
expect_rc 0 "delete" q delete "$clam_id"
check "files gone" test ! -e "$work/q/items/$clam_id"
expect_rc 1 "delete again" q delete "$clam_id"
check "deleted listed" test "$(count --status deleted)" == 1

rm -f "$work/q/index.sqlite" "$work/q/index.sqlite-wal" "$work/q/index.sqlite-shm"
expect_rc 0 "rebuild-index" q rebuild-index
check "rebuild indexed the 4 remaining items" grep -q '^indexed 4 items$' "$work/out"
check "rebuilt: released kept" test "$(count --status released)" == 2
check "rebuilt: held" test "$(count --status held)" == 2
expect_rc 0 "show after rebuild" q show "$pdf_id"
check "rebuilt: history kept" grep -qE "cli:$(id -un)  release  ok" "$work/out"

expect_rc 0 "purge with 30d retention" q purge
check "nothing purged" grep -q '^purged 0 items' "$work/out"
sed -i 's/^retention = "30d"/retention = "1s"/' "$work/mukai.toml"
sleep 2
expect_rc 0 "purge with 1s retention" q purge
check "4 purged" grep -q '^purged 4 items' "$work/out"
check "items/ empty" test -z "$(ls "$work/q/items")"
check "expired listed" test "$(count --status expired)" == 4
expect_rc 0 "stats after purge" q stats
check "stats: expired 4" grep -q 'expired 4)' "$work/out"

if [[ $failures -gt 0 ]]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "quarantine CLI: all checks passed"
