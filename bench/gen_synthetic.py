#!/usr/bin/python3
"""Deterministic synthetic mail for bench/run (Python stdlib only, fixed seed).

The mix (per message, drawn from one seeded RNG, so the same seed gives the same bytes):
  * newsletter HTML of about 20 KB: nested layout tables, inline styles and a <style> block,
    an MSO conditional comment, a hidden preheader, tracking links, images with alt text,
    a product table, entities;
  * a share of the messages (--ja-share, default 0.3) entirely in ISO-2022-JP: the Subject as
    several RFC 2047 B-words, the text and HTML bodies, the attachment name; the text contains
    CP932 extensions (①, ㈱, Ⅲ) and half-width katakana (ESC ( I), as real Japanese senders
    write "ISO-2022-JP";
  * multipart/alternative (text/plain + text/html) for most messages; a share (--html-only-share,
    default 0.5) carries the HTML only, so that the default policy (which prefers a non-empty
    text/plain alternative) has HTML to convert;
  * half of the messages (--attach-share) in multipart/mixed with a ~100 KB base64 attachment,
    alternately a PDF-like file and a real ZIP archive (incompressible payload).
--large writes one message of --large-mib MiB (default 25): the newsletter HTML repeated to about
1 MiB plus one base64 attachment filling the rest (about 24 MiB of base64 text).
All line ends are CRLF, as mail arrives over SMTP.
"""
import argparse
import base64
import io
import os
import random
import sys
import zipfile

# ---------------------------------------------------------------- ISO-2022-JP (CP932 semantics)

def _sjis_to_jis(b):
    s1, s2 = b[0], b[1]
    s1 = (s1 - 0x71 if s1 <= 0x9F else s1 - 0xB1) * 2 + 1
    if s2 > 0x7F:
        s2 -= 1
    if s2 >= 0x9E:
        s2 -= 0x7D
        s1 += 1
    else:
        s2 -= 0x1F
    return bytes([s1, s2])


def iso2022jp(text):
    """Encodes like Outlook/Thunderbird-era Japanese mailers: JIS X 0208 with the CP932 NEC row 13
    (①, ㈱, Ⅲ) in ESC $ B, half-width katakana in ESC ( I. Returns to ASCII before every line end."""
    out = bytearray()
    mode = 'ascii'
    for ch in text:
        cp = ord(ch)
        if ch in '\r\n' or cp < 0x80:
            want = 'ascii'
        elif 0xFF61 <= cp <= 0xFF9F:
            want = 'kana'
        else:
            want = 'jis'
        if want != mode:
            out += {'ascii': b'\x1b(B', 'kana': b'\x1b(I', 'jis': b'\x1b$B'}[want]
            mode = want
        if want == 'ascii':
            out.append(cp)
        elif want == 'kana':
            out.append(cp - 0xFF61 + 0x21)
        else:
            sj = ch.encode('cp932')
            if len(sj) != 2 or sj[0] >= 0xED:
                raise ValueError('not encodable in ISO-2022-JP/CP932: %r' % ch)
            out += _sjis_to_jis(sj)
    if mode != 'ascii':
        out += b'\x1b(B'
    return bytes(out)


def rfc2047_jis(text, chunk=9):
    """Subject as several ISO-2022-JP B-words, each self-contained (the way mailers split them;
    padded words followed by more words trigger GMime bug #133)."""
    words = []
    for i in range(0, len(text), chunk):
        b = base64.b64encode(iso2022jp(text[i:i + chunk])).decode('ascii')
        words.append('=?ISO-2022-JP?B?%s?=' % b)
    return '\r\n '.join(words)


def rfc2047_utf8(text):
    return '=?UTF-8?B?%s?=' % base64.b64encode(text.encode('utf-8')).decode('ascii')


# ---------------------------------------------------------------- text material

EN_WORDS = ('the of and to in for with on from your our new this that more offer free limited time members '
            'update service account report quarterly product release customers team today week sale shipping '
            'event webinar register discover learn about best price order save percent exclusive early access '
            'support security improvement feature performance city office schedule meeting notice holiday '
            'program community partner survey results download guide library research market growth').split()
JA_PHRASES = ('いつもご利用いただき誠にありがとうございます', '本日のお知らせをお届けします', '期間限定セール開催中',
              '新商品のご案内', '会員様限定の特別価格', '送料無料キャンペーン', 'ﾒｰﾙﾏｶﾞｼﾞﾝ', 'ｷｬﾝﾍﾟｰﾝ実施中',
              '①お申し込み方法', '②お支払いについて', '③配送のご案内', '㈱ムカイ商事', 'Ⅲ期決算のお知らせ',
              '詳しくはウェブサイトをご覧ください', '市役所からのお知らせ', '住民税の納付期限について',
              '窓口の受付時間を変更します', '説明会を開催いたします', 'ご不明な点はお問い合わせください',
              '今後ともよろしくお願い申し上げます', '東京都千代田区霞が関', '午前9時から午後5時まで',
              'ｱﾝｹｰﾄにご協力ください', '資料をダウンロード', 'セミナー参加者募集', '環境への取り組み')
COLORS = ('#333333', '#0a58ca', '#ffffff', '#f4f4f4', '#e74c3c', '#2c3e50', '#777777')
DOMAINS = ('news.example.com', 'mail.shop-example.jp', 'click.mailer-example.net', 'www.city.example.lg.jp',
           'cdn.example-img.com', 'campaign.example.org')


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)

    def words(self, n):
        w = [self.r.choice(EN_WORDS) for _ in range(n)]
        return ' '.join(w).capitalize()

    def ja(self, n):
        return '、'.join(self.r.choice(JA_PHRASES) for _ in range(n)) + '。'

    def text(self, ja, n):
        return self.ja(n) if ja else self.words(n * 6) + '.'

    def url(self):
        r = self.r
        return 'https://%s/%s?utm_source=newsletter&amp;utm_medium=email&amp;id=%08x' % (
            r.choice(DOMAINS), '/'.join(self.words(1).lower() for _ in range(r.randint(1, 3))), r.getrandbits(32))

    # -------------------------------------------------------------- HTML newsletter
    def html(self, ja, target, charset):
        r = self.r
        c = lambda: r.choice(COLORS)
        head = ('<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" '
                '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n'
                '<html xmlns="http://www.w3.org/1999/xhtml"><head>\n'
                '<meta http-equiv="Content-Type" content="text/html; charset=%s" />\n'
                '<meta name="viewport" content="width=device-width, initial-scale=1.0" />\n'
                '<title>%s</title>\n<style type="text/css">\n' % (charset, self.text(ja, 1)))
        for sel in ('body', '.wrapper', '.content', 'h1', 'h2', 'p', 'a.button', '.footer', 'td.col', '.preheader'):
            head += '%s { margin:0; padding:%dpx; color:%s; background-color:%s; font-family:Helvetica,Arial,' \
                    'sans-serif; font-size:%dpx; line-height:1.5; }\n' % (sel, r.randint(0, 24), c(), c(),
                                                                          r.randint(11, 22))
        head += '@media only screen and (max-width:600px){ .content{width:100%!important} td.col{display:block' \
                '!important} }\n</style>\n<!--[if mso]><style>table{border-collapse:collapse}</style><![endif]-->\n' \
                '</head>\n'
        body = ['<body style="margin:0;padding:0;background-color:%s">\n' % c(),
                '<span class="preheader" style="display:none;max-height:0;overflow:hidden">%s</span>\n'
                % self.text(ja, 1),
                '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" '
                'class="wrapper"><tr><td align="center">\n'
                '<table role="presentation" width="600" cellpadding="0" cellspacing="0" border="0" class="content">\n',
                '<tr><td style="padding:20px 0;text-align:center"><a href="%s"><img src="https://%s/logo.png" '
                'width="200" height="50" alt="%s" style="display:block;border:0" /></a></td></tr>\n'
                % (self.url(), r.choice(DOMAINS), self.text(ja, 1)),
                '<tr><td style="padding:0 20px"><h1 style="color:%s;font-size:24px">%s</h1></td></tr>\n'
                % (c(), self.text(ja, 1))]
        size = len(head) + sum(map(len, body))
        foot = ('<tr><td class="footer" style="padding:20px;font-size:11px;color:#777">%s<br />'
                '<a href="%s">%s</a> &middot; <a href="mailto:unsubscribe@%s">unsubscribe</a> &copy; 2024 '
                '&amp; &quot;Example&quot;</td></tr>\n</table>\n</td></tr></table>\n'
                '<img src="https://%s/open.gif?u=%08x" width="1" height="1" alt="" />\n</body></html>\n'
                % (self.text(ja, 2), self.url(), self.text(ja, 1), r.choice(DOMAINS), r.choice(DOMAINS),
                   r.getrandbits(32)))
        k = 0
        while size + len(foot) < target:
            k += 1
            if k % 4 == 0:  # a product / price table
                rows = ''.join('<tr><td class="col" style="padding:4px;border-bottom:1px solid #ddd">%s</td>'
                               '<td class="col" style="padding:4px;text-align:right">&yen;%d</td>'
                               '<td class="col"><a href="%s">%s</a></td></tr>\n'
                               % (self.text(ja, 1), r.randint(100, 99999), self.url(), self.text(ja, 1))
                               for _ in range(r.randint(3, 6)))
                block = ('<tr><td style="padding:10px 20px"><table width="100%%" cellpadding="0" cellspacing="0" '
                         'border="0"><tr><th align="left">%s</th><th align="right">%s</th><th></th></tr>\n%s'
                         '</table></td></tr>\n' % (self.text(ja, 1), 'Price' if not ja else '価格', rows))
            else:  # an article: image, heading, paragraphs, a button
                block = ('<tr><td style="padding:10px 20px">\n<a href="%s"><img src="https://%s/img/%d.jpg" '
                         'width="560" height="%d" alt="%s" style="display:block;width:100%%;height:auto" /></a>\n'
                         '<h2 style="font-size:18px;color:%s"><a href="%s" style="color:%s;text-decoration:none">'
                         '%s</a></h2>\n<p style="margin:0 0 12px 0">%s</p>\n<p style="margin:0 0 12px 0">%s '
                         '<strong>%s</strong> <em>%s</em></p>\n<table cellpadding="0" cellspacing="0" border="0">'
                         '<tr><td bgcolor="%s" style="border-radius:4px"><a class="button" href="%s" '
                         'style="display:inline-block;padding:10px 18px;color:#fff">%s &raquo;</a></td></tr>'
                         '</table>\n</td></tr>\n'
                         % (self.url(), r.choice(DOMAINS), r.randint(1, 9999), r.randint(150, 300),
                            self.text(ja, 1), c(), self.url(), c(), self.text(ja, 1), self.text(ja, 4),
                            self.text(ja, 3), self.text(ja, 1), self.text(ja, 1), c(), self.url(),
                            'Read more' if not ja else '続きを読む'))
            body.append(block)
            size += len(block)
        return head + ''.join(body) + foot

    def plain(self, ja, paras):
        return '\n\n'.join(self.text(ja, self.r.randint(2, 5)) for _ in range(paras)) + '\n'

    # -------------------------------------------------------------- attachments
    def pdf_like(self, size):
        r = self.r
        parts = [b'%PDF-1.4\n%\xe2\xe3\xcf\xd3\n']
        n = 1
        while sum(map(len, parts)) < size - 200:
            chunk = r.randbytes(min(8192, size - 200 - sum(map(len, parts))))
            parts.append(b'%d 0 obj\n<< /Length %d /Filter /FlateDecode >>\nstream\n' % (n, len(chunk)) + chunk +
                         b'\nendstream\nendobj\n')
            n += 1
        parts.append(b'xref\n0 %d\ntrailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n0\n%%%%EOF\n' % (n, n))
        return b''.join(parts)

    def zip_like(self, size):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, 'w', zipfile.ZIP_DEFLATED) as z:
            z.writestr(zipfile.ZipInfo('data/report.csv', (2024, 11, 1, 9, 0, 0)),
                       '\n'.join('%d,%s,%d' % (i, self.words(2), self.r.randint(0, 10**6)) for i in range(300)))
            z.writestr(zipfile.ZipInfo('data/scan.bin', (2024, 11, 1, 9, 0, 0)), self.r.randbytes(size - 4000))
        return buf.getvalue()


def b64_lines(data, width=76):
    s = base64.b64encode(data).decode('ascii')
    return '\r\n'.join(s[i:i + width] for i in range(0, len(s), width)) + '\r\n'


def qp(text_bytes):
    import quopri
    return quopri.encodestring(text_bytes).decode('ascii').replace('\r\n', '\n').replace('\n', '\r\n')


def crlf(s):
    return s.replace('\r\n', '\n').replace('\n', '\r\n')


def headers(g, i, ja, subject):
    r = g.r
    dom = r.choice(DOMAINS)
    h = []
    for hop in range(r.randint(2, 4)):
        h.append('Received: from mx%d.%s (mx%d.%s [192.0.2.%d])\r\n\tby relay.example.lg.jp (Postfix) with ESMTPS '
                 'id %010X\r\n\tfor <user%d@city.example.lg.jp>; Fri, 1 Nov 2024 09:%02d:%02d +0900'
                 % (hop, dom, hop, dom, r.randint(1, 254), r.getrandbits(40), i, r.randint(0, 59), r.randint(0, 59)))
    h.append('DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=%s; s=s1;\r\n\th=from:to:subject:date:'
             'message-id; bh=%s;\r\n\tb=%s' % (dom, base64.b64encode(r.randbytes(32)).decode(),
                                              '\r\n\t'.join(base64.b64encode(r.randbytes(48)).decode()
                                                            for _ in range(4))))
    sender = ('%s <news@%s>' % (rfc2047_jis('ムカイ商事ﾆｭｰｽ') if ja else '"Example News"', dom))
    h += ['From: %s' % sender, 'To: user%d@city.example.lg.jp' % i,
          'Subject: %s' % (rfc2047_jis(subject) if ja else subject),
          'Date: Fri, 1 Nov 2024 09:%02d:%02d +0900' % (i % 60, r.randint(0, 59)),
          'Message-ID: <%016x.%d@%s>' % (r.getrandbits(64), i, dom), 'MIME-Version: 1.0',
          'List-Unsubscribe: <https://%s/unsub?u=%08x>, <mailto:unsub@%s>' % (dom, r.getrandbits(32), dom),
          'X-Mailer: ExampleMailer 4.2', 'Precedence: bulk']
    return '\r\n'.join(h) + '\r\n'


def body_part(g, ja, kind, content):
    """One text leaf: ISO-2022-JP 7bit for Japanese, UTF-8 quoted-printable or base64 otherwise."""
    if ja:
        return ('Content-Type: text/%s; charset="ISO-2022-JP"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n'
                % kind + iso2022jp(crlf(content)).decode('ascii'))
    if g.r.random() < 0.3:
        return ('Content-Type: text/%s; charset="UTF-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n' % kind +
                b64_lines(content.encode('utf-8')))
    return ('Content-Type: text/%s; charset="UTF-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
            % kind + qp(content.encode('utf-8')))


def multipart(boundary, subtype, parts):
    out = 'Content-Type: multipart/%s;\r\n\tboundary="%s"\r\n\r\n' % (subtype, boundary)
    for p in parts:
        out += '--%s\r\n%s\r\n' % (boundary, p.rstrip('\r\n') + '\r\n')
    return out + '--%s--\r\n' % boundary


def attachment(g, i, ja, size):
    if i % 4 < 2:
        data, ctype, name = g.pdf_like(size), 'application/pdf', ('請求書_%d.pdf' % i if ja else 'invoice-%d.pdf' % i)
    else:
        data, ctype, name = g.zip_like(size), 'application/zip', ('資料_%d.zip' % i if ja else 'report-%d.zip' % i)
    enc = rfc2047_jis(name, 20) if ja else name
    return ('Content-Type: %s;\r\n\tname="%s"\r\nContent-Disposition: attachment;\r\n\tfilename="%s"\r\n'
            'Content-Transfer-Encoding: base64\r\n\r\n%s' % (ctype, enc, enc, b64_lines(data)))


def message(g, i, args):
    r = g.r
    ja = r.random() < args.ja_share
    html_only = r.random() < args.html_only_share
    attach = r.random() < args.attach_share
    subject = (r.choice(JA_PHRASES) + '【' + r.choice(JA_PHRASES) + '】' + r.choice(JA_PHRASES)) if ja \
        else g.words(r.randint(4, 9))
    charset = 'ISO-2022-JP' if ja else 'UTF-8'
    target = int(args.html_kb * 1024 * r.uniform(0.85, 1.15))
    html = body_part(g, ja, 'html', g.html(ja, target, charset))
    if html_only:
        alt = multipart('alt-%08x' % r.getrandbits(32), 'alternative', [html])
    else:
        alt = multipart('alt-%08x' % r.getrandbits(32), 'alternative',
                        [body_part(g, ja, 'plain', g.plain(ja, r.randint(4, 12))), html])
    if attach:
        size = int(args.attach_kb * 1024 * r.uniform(0.8, 1.2))
        body = multipart('mix-%08x' % r.getrandbits(32), 'mixed', [alt, attachment(g, i, ja, size)])
    else:
        body = alt
    return headers(g, i, ja, subject) + body, (ja, html_only, attach)


def large_message(g, args):
    html = ''
    while len(html) < 1024 * 1024:
        html += g.html(False, 20 * 1024, 'UTF-8')
    head = headers(g, 0, False, 'Large message: 25 MB benchmark')
    alt = multipart('alt-large', 'alternative', [body_part(g, False, 'html', html)])
    total = int(args.large_mib * 1024 * 1024)
    budget = total - len(head) - len(alt) - 400
    raw_size = budget * 76 // 78 * 3 // 4  # base64 with CRLF every 76 characters
    data = g.pdf_like(raw_size)
    att = ('Content-Type: application/pdf; name="large.pdf"\r\nContent-Disposition: attachment; '
           'filename="large.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n' + b64_lines(data))
    return head + multipart('mix-large', 'mixed', [alt, att])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', required=True, help='directory for NNNN.eml (created)')
    ap.add_argument('--count', type=int, default=200)
    ap.add_argument('--seed', type=int, default=20241101)
    ap.add_argument('--html-kb', type=float, default=20)
    ap.add_argument('--attach-kb', type=float, default=100)
    ap.add_argument('--attach-share', type=float, default=0.5)
    ap.add_argument('--ja-share', type=float, default=0.3)
    ap.add_argument('--html-only-share', type=float, default=0.5)
    ap.add_argument('--large', metavar='FILE', help='also write the large single message here')
    ap.add_argument('--large-mib', type=float, default=25)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    g = Gen(args.seed)
    stats = [0, 0, 0]
    total = 0
    for i in range(args.count):
        text, flags = message(g, i, args)
        data = text.encode('ascii')
        total += len(data)
        stats = [s + f for s, f in zip(stats, flags)]
        with open(os.path.join(args.out, '%04d.eml' % i), 'wb') as f:
            f.write(data)
    print('gen_synthetic: %d messages, %.2f MB in %s (ISO-2022-JP %d, HTML-only %d, with attachment %d; seed %d)'
          % (args.count, total / 1e6, args.out, stats[0], stats[1], stats[2], args.seed), file=sys.stderr)
    if args.large:
        data = large_message(Gen(args.seed + 1), args).encode('ascii')
        os.makedirs(os.path.dirname(os.path.abspath(args.large)), exist_ok=True)
        with open(args.large, 'wb') as f:
            f.write(data)
        print('gen_synthetic: large message %.2f MiB in %s' % (len(data) / 2**20, args.large), file=sys.stderr)


if __name__ == '__main__':
    main()
