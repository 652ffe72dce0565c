#!/usr/bin/python3
"""The benchmark's peer: the same job as mukai's engine, done the obvious way in Python.

Python stdlib `email` + Debian's python3-html2text, per message:
  parse (email.policy.default) -> pick the body (text/plain, else text/html converted with
  html2text) -> every other leaf is "removed": decoded and hashed (SHA-256, size), as the engine
  does to list it in the notice -> a fresh text/plain; charset=utf-8 message with the allow-listed
  headers, a notice listing the removed parts, quoted-printable -> serialized with CRLF.
It does less than the engine (no charset detection, no CP932 repair, no libmagic, no structure
checks, no link defanging, no RFC 2047 workaround), so the ratio flatters the peer slightly.

Timed like bench_engine: every message read into memory first, a few untimed warm-up messages,
then whole rounds until --min-seconds of timed work (at least --min-rounds, at most
--max-rounds), time.perf_counter around the rounds; peak RSS from resource.getrusage.
A message on which the pipeline raises counts as "failed" (the engine would hold it).
Use /usr/bin/python3 (Debian's, where python3-html2text is installed).
"""
import argparse
import email
import email.message
import email.policy
import hashlib
import os
import resource
import sys
import time

import html2text

ALLOWED = ('From', 'To', 'Cc', 'Reply-To', 'Subject', 'Date', 'Message-ID', 'In-Reply-To', 'References')
OUT_POLICY = email.policy.default.clone(linesep='\r\n')


def html_to_text(html):
    h = html2text.HTML2Text()
    h.body_width = 0          # no re-wrapping; the engine keeps paragraphs as lines too
    h.ignore_images = False   # images -> ![alt](src), like the engine's [画像: alt]
    h.ignore_links = False    # links kept with their URL
    return h.handle(html)


def decode_text(part):
    try:
        return part.get_content()  # decodes the CTE and the declared charset (errors='replace')
    except (LookupError, UnicodeError, ValueError):
        payload = part.get_payload(decode=True) or b''
        return payload.decode('utf-8', 'replace')


def leaves(part, in_alternative):
    """Yields (leaf, parent is multipart/alternative), depth first, in order."""
    if part.is_multipart():
        alt = part.get_content_type() == 'multipart/alternative'
        for sub in part.iter_parts():
            yield from leaves(sub, alt)
    else:
        yield part, in_alternative


def sanitize(raw):
    """Returns (output bytes, verdict)."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    body = msg.get_body(preferencelist=('plain', 'html'))
    if body is None:
        text = ''
        converted = False
    elif body.get_content_type() == 'text/html':
        text = html_to_text(decode_text(body))
        converted = True
    else:
        text = decode_text(body)
        converted = False
    removed = []
    for part, in_alternative in leaves(msg, False):
        if part is body or (in_alternative and part.get_content_type() in ('text/plain', 'text/html')):
            continue  # the body, or its unused text alternative: not an attachment
        data = part.get_payload(decode=True) or b''
        removed.append((part.get_filename() or '', part.get_content_type(), len(data),
                        hashlib.sha256(data).hexdigest()))
    out = email.message.EmailMessage(policy=OUT_POLICY)
    for name in ALLOWED:
        value = msg.get(name)
        if value is not None:
            out[name] = str(value).replace('\r', ' ').replace('\n', ' ')
    actions = (['html-to-text'] if converted else []) + (['attachments-removed=%d' % len(removed)] if removed else [])
    if actions:
        out['X-Mukai-Sanitized'] = '; '.join(actions)
    notice = ''
    if removed:
        notice = 'This message was sanitized. Removed parts:\n' + ''.join(
            '  - %s (%s, %d bytes, sha256 %s)\n' % r for r in removed) + '\n'
    out.set_content(notice + text, charset='utf-8', cte='quoted-printable')
    return out.as_bytes(policy=OUT_POLICY), ('sanitized' if actions else 'clean')


def load(paths, sample):
    files = []
    for p in paths:
        if os.path.isdir(p):
            files += [os.path.join(p, f) for f in os.listdir(p)
                      if f.endswith('.eml') and os.path.isfile(os.path.join(p, f))]
        else:
            files.append(p)
    files.sort()
    if sample and sample < len(files):
        files = [files[i * len(files) // sample] for i in range(sample)]
    out = []
    for f in files:
        with open(f, 'rb') as fh:
            out.append((os.path.basename(f), fh.read()))
    return out


def current_rss_kib():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') // 1024


def main():
    ap = argparse.ArgumentParser(description='Python email + html2text peer for bench/run')
    ap.add_argument('paths', nargs='+')
    ap.add_argument('--set', default='set')
    ap.add_argument('--min-seconds', type=float, default=5)
    ap.add_argument('--min-rounds', type=int, default=1)
    ap.add_argument('--max-rounds', type=int, default=100)
    ap.add_argument('--warmup', type=int, default=20)
    ap.add_argument('--sample', type=int, default=0)
    ap.add_argument('--large', action='store_true')
    ap.add_argument('--tsv', action='store_true')
    a = ap.parse_args()
    if a.large:
        a.warmup, a.min_rounds, a.max_rounds, a.min_seconds = 0, 1, 1, 0
    msgs = load(a.paths, a.sample)
    if not msgs:
        sys.exit('peer_python: no messages under the given paths')
    set_bytes = sum(len(r) for _, r in msgs)
    for i in range(a.warmup):
        try:
            sanitize(msgs[i % len(msgs)][1])
        except Exception:
            pass
    rss_before = current_rss_kib()
    verdicts = {'clean': 0, 'sanitized': 0, 'held': 0}
    failed = 0
    slowest, slowest_name = 0.0, ''
    rounds, seconds = 0, 0.0
    cpu_start = time.process_time()  # next to wall time: shows whether other processes took the core
    while rounds < a.max_rounds and (rounds < a.min_rounds or seconds < a.min_seconds):
        t_round = time.perf_counter()
        for name, raw in msgs:
            t0 = time.perf_counter()
            try:
                _, v = sanitize(raw)
                if rounds == 0:
                    verdicts[v] += 1
            except Exception:  # noqa: BLE001 - any failure is a "could not sanitize"
                if rounds == 0:
                    failed += 1
            dt = time.perf_counter() - t0
            if dt > slowest:
                slowest, slowest_name = dt, name
        seconds += time.perf_counter() - t_round
        rounds += 1
    cpu_seconds = time.process_time() - cpu_start
    n = len(msgs) * rounds
    msg_s = n / seconds
    mb_s = set_bytes * rounds / 1e6 / seconds
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print('[peer ] %s: %d messages, %.2f MB, %d round(s) in %.2f s (CPU %.2f s): %.1f msg/s, %.2f MB/s; peak RSS %.1f MiB '
          '(%.1f MiB before the timed rounds)\n[peer ] %s: clean=%d sanitized=%d failed=%d; slowest %s %.3f s'
          % (a.set, len(msgs), set_bytes / 1e6, rounds, seconds, cpu_seconds, msg_s, mb_s, peak / 1024, rss_before / 1024,
             a.set, verdicts['clean'], verdicts['sanitized'], failed, slowest_name, slowest), file=sys.stderr)
    if a.tsv:
        print('RESULT\t%s\tpython\t%d\t%d\t%d\t%.6f\t%.3f\t%.4f\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%.4f\t%.6f'
              % (a.set, len(msgs), set_bytes, rounds, seconds, msg_s, mb_s, peak, rss_before, verdicts['clean'],
                 verdicts['sanitized'], verdicts['held'], failed, slowest_name, slowest, cpu_seconds))


if __name__ == '__main__':
    main()
