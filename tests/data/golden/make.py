#!/usr/bin/env python3
"""Generates the golden charset pairs used by tests/unit/sanitizers/engine_test.cpp.

Each NAME.eml is a text/plain message whose body is the UTF-8 text of NAME.txt encoded in one
charset (with Python's codecs, independent of the engine's ICU/iconv code); the engine's output
body must decode to NAME.txt exactly. Run it from anywhere: `python3 tests/data/golden/make.py`.
The generated files are committed; re-running must reproduce them byte for byte.

ISO-2022-JP with CP932 extensions is built by hand: Python's iso2022_jp codec rejects NEC row 13
(①, ㈱, Ⅲ) and half-width katakana, but Windows senders (CP50221) write them as JIS row 13 in
ESC $ B and as JIS X 0201 katakana in ESC ( I, so we convert CP932 bytes the same way.
"""
import base64
import os
import quopri
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))

ESC_ASCII = b"\x1b(B"
ESC_JIS0208 = b"\x1b$B"
ESC_KANA = b"\x1b(I"


def sjis_pair_to_jis(b1, b2):
    """Shift_JIS/CP932 double byte -> JIS X 0208 row/cell bytes (0x21..0x7E each)."""
    if b1 >= 0xE0:
        b1 -= 0x40
    row = (b1 - 0x81) * 2 + 1
    if b2 >= 0x9F:
        row += 1
        cell = b2 - 0x9F + 1
    else:
        cell = b2 - 0x40 + 1 - (1 if b2 >= 0x80 else 0)
    return bytes([row + 0x20, cell + 0x20])


def cp50221(text):
    """UTF-8 text -> ISO-2022-JP as Windows writes it (CP932 repertoire, ESC ( I for kana)."""
    out = bytearray()
    mode = "ascii"
    for line in text.split("\n"):
        raw = line.encode("cp932")
        i = 0
        while i < len(raw):
            b = raw[i]
            if b < 0x80:
                if mode != "ascii":
                    out += ESC_ASCII
                    mode = "ascii"
                out.append(b)
                i += 1
            elif 0xA1 <= b <= 0xDF:
                if mode != "kana":
                    out += ESC_KANA
                    mode = "kana"
                out.append(b - 0x80)
                i += 1
            else:
                if mode != "jis":
                    out += ESC_JIS0208
                    mode = "jis"
                out += sjis_pair_to_jis(b, raw[i + 1])
                i += 2
        if mode != "ascii":
            out += ESC_ASCII
            mode = "ascii"
        out += b"\n"
    return bytes(out[:-1])


def crlf(b):
    return b.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def message(subject, charset_param, cte, body_bytes, extra_headers=""):
    # body_bytes has LF line ends; the canonical form of text (RFC 2045) has CRLF.
    if cte == "base64":
        enc = base64.encodebytes(crlf(body_bytes))
    elif cte == "quoted-printable":
        enc = quopri.encodestring(body_bytes)
    else:
        enc = body_bytes
    ctype = "text/plain" + (f"; charset={charset_param}" if charset_param else "")
    head = (
        "From: Golden Sender <sender@example.jp>\n"
        "To: Recipient <user@city.example.lg.jp>\n"
        f"Subject: {subject}\n"
        "Date: Sun, 22 Nov 2026 10:00:00 +0900\n"
        f"Message-ID: <golden-{zlib.crc32(subject.encode()):08x}@example.jp>\n"
        "MIME-Version: 1.0\n"
        f"Content-Type: {ctype}\n"
        f"Content-Transfer-Encoding: {cte}\n"
        f"{extra_headers}"
        "\n"
    ).encode("ascii")
    return crlf(head + enc)


# name -> (charset label or None, transfer encoding, UTF-8 text, encoder)
CASES = {
    "iso-2022-jp-cp932-ext": (
        "ISO-2022-JP", "7bit",
        "お世話になっております。\n"
        "株式会社サンプルの髙橋です。\n"
        "\n"
        "①会議は㈱ミライ本社で行います。\n"
        "②第Ⅲ期の資料をご確認ください。\n"
        "ﾊﾝｶｸｶﾀｶﾅ(ｱｲｳｴｵ)も正しく表示されること。\n"
        "\n"
        "よろしくお願いいたします。\n",
        cp50221),
    "shift_jis": (
        "Shift_JIS", "8bit",
        "ご連絡ありがとうございます。\n"
        "納期は５月１０日～１５日の予定です。\n"
        "表示・ソフト・能力・予定（第二バイトが 0x5C の文字）。\n"
        "半角ｶﾀｶﾅも含みます。\n",
        lambda t: t.encode("cp932")),
    "cp932": (
        "windows-31j", "base64",
        "①②③ ⅠⅡⅢ ㈱㈲ №℡ ∵∴\n"
        "髙﨑さん、よろしくお願いします。\n",
        lambda t: t.encode("cp932")),
    "euc-jp": (
        "EUC-JP", "8bit",
        "東京都千代田区の皆様へ\n"
        "本日は晴天なり。ﾊﾝｶｸ も EUC-JP で。\n"
        "漢字・ひらがな・カタカナ・ＡＢＣ\n",
        lambda t: t.encode("euc_jp")),
    "utf-8": (
        "UTF-8", "quoted-printable",
        "日本語と English と Ελληνικά と 😀 絵文字。\n"
        "Straße, naïve, 中文, 한국어.\n",
        lambda t: t.encode("utf-8")),
    "iso-8859-1": (
        "ISO-8859-1", "quoted-printable",
        "Café au lait, naïve façade, Ñandú, £10, ¿Qué? ½ © ®\n"
        "Grüße aus Köln.\n",
        lambda t: t.encode("iso-8859-1")),
    "windows-1252": (
        "windows-1252", "8bit",
        "\u201cSmart quotes\u201d \u2013 en dash \u2014 em dash\u2026 \u20ac20 \u2122 \u0160\u017e\n",
        lambda t: t.encode("cp1252")),
    "gbk": (
        "GBK", "base64",
        "你好，世界。这是一封测试邮件。\n"
        "请查收附件中的报告。\n",
        lambda t: t.encode("gbk")),
    "big5": (
        "Big5", "base64",
        "您好，這是一封測試郵件。\n"
        "繁體中文的內容應該正確顯示。\n",
        lambda t: t.encode("big5")),
    "euc-kr": (
        "EUC-KR", "8bit",
        "안녕하세요. 테스트 메일입니다.\n"
        "한국어 본문이 올바르게 표시되어야 합니다.\n",
        lambda t: t.encode("euc_kr")),
    "koi8-r": (
        "KOI8-R", "8bit",
        "Здравствуйте! Это тестовое письмо.\n"
        "Съешь же ещё этих мягких французских булок.\n",
        lambda t: t.encode("koi8_r")),
    # Wrong or missing labels: decoded right, and the report carries a charset warning.
    "mislabelled-utf-8-as-us-ascii": (
        "us-ascii", "8bit",
        "ラベルは us-ascii ですが、本文は UTF-8 です。\n"
        "正しく読めること。\n",
        lambda t: t.encode("utf-8")),
    "unlabelled-shift_jis": (
        None, "8bit",
        "文字コードの指定がないシフトJISのメールです。\n"
        "会議の日程についてご相談させてください。\n"
        "来週の火曜日か水曜日はいかがでしょうか。\n",
        lambda t: t.encode("cp932")),
}


def main():
    for name, (label, cte, text, encode) in CASES.items():
        eml = message(f"golden {name}", label, cte, encode(text))
        with open(os.path.join(HERE, name + ".eml"), "wb") as f:
            f.write(eml)
        with open(os.path.join(HERE, name + ".txt"), "wb") as f:
            f.write(text.encode("utf-8"))


if __name__ == "__main__":
    main()
