// Encoded payloads hidden in text bodies: uuencode (also "begin-base64"), yEnc, BinHex 4.0,
// ASCII armour (PGP, PKCS7/CMS, other PEM) and bare base64 runs. A plain-text body can carry
// a whole program this way, so the engine cuts them out and treats each like an attachment.
// Invariants: one forward pass over the lines (every line is classified a bounded number of
// times), no regex; the text grows by at most one placeholder per blob (plus one byte per
// neutralised literal placeholder); decoded bytes are bounded (BinHex run-length expansion is
// capped at 64 MiB). Never throws except std::bad_alloc.
// Threading: pure function; safe from any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace mukai::sanitize {

// The placeholders a text stands in for cut-out blocks with: "[[mukai-blob:N]]" for the blobs
// cut_encoded_blobs cuts, "[[mukai-yenc:N]]" for the yEnc blocks the engine cuts from a part's bytes
// before charset decoding (yenc_blocks.hpp). Two prefixes, so that the second pass (this one) can
// neutralise literal "[[mukai-blob:" in the text without touching the first pass's placeholders.
inline constexpr std::string_view blob_marker_prefix = "[[mukai-blob:";
inline constexpr std::string_view yenc_marker_prefix = "[[mukai-yenc:";

struct text_blob {
  // Byte range in the input: from the start of the blob's first line to the end of its last
  // line's content (the last line's CR/LF stays in the text, after the placeholder).
  std::size_t begin = 0, end = 0;
  std::string kind;      // "uuencode" | "yenc" | "binhex" | "base64" | "pgp"
  std::string filename;  // as written in the encoding's header ("" if it carries none)
  // uuencode/yenc: the decoded bytes. base64: the decoded bytes, or the raw lines when only the
  // loose rule matched (see below). binhex: the data fork, or the raw block if it
  // does not decode (bad CRC, truncated). pgp (PGP, PKCS7, CMS armour): the raw armoured block,
  // which is what a recipient would save as .asc/.p7m. Other PEM labels are kind "base64"
  // with the decoded body.
  std::string decoded;
};

struct blob_split {
  // The input with each blob replaced by "[[mukai-blob:N]]", N the blob's index in `blobs`
  // (0-based). A literal "[[mukai-blob:" already present in the input is rewritten to
  // "[ [mukai-blob:" so every placeholder in `text` is one of ours.
  std::string text;
  std::vector<text_blob> blobs;
};

// Recognised shapes (lines end in LF, CRLF or a lone CR):
//  uuencode  "begin NNN name" (3-4 octal digits, name may be empty), data lines whose length
//            matches their length character, optional zero-length line, "end". Without "end"
//            the blob stops after the last line that looks like uuencoded data.
//            "begin-base64 NNN name" ... "====" (uuencode -m) is kind "uuencode" too.
//  yenc      "=ybegin ... name=..." [=ypart ...] data "=yend ...". Without "=yend" the blob runs
//            to the next "=ybegin" or the end of the text (the data can look like anything).
//            Not verified (no size or CRC check): in text/plain parts the engine cuts yEnc from
//            the raw bytes first (yenc_blocks.hpp, exact and verified), so this one only sees
//            yEnc that appears after charset decoding or HTML conversion.
//  binhex    "(This file must be converted with BinHex ..." then ':' data ':' .
//  pgp       "-----BEGIN PGP MESSAGE|SIGNATURE|PUBLIC KEY BLOCK|...-----", "-----BEGIN PKCS7-----",
//            "-----BEGIN CMS-----" .. matching END line. "PGP SIGNED MESSAGE" (clear-signed text)
//            is left alone; only its SIGNATURE block is cut.
//  base64    strict: >= 4 consecutive lines of [A-Za-z0-9+/] with '=' padding only at the very
//            end, at least half letters/digits, all but the last of one width that is a multiple
//            of 4 and >= 40, the last not wider; not only hex digits (checksum lists); decodes
//            cleanly -> decoded bytes. Loose (when the strict rule fails): >= 4 lines of >= 40
//            base64-alphabet characters, at least half letters/digits, not hex-only, whether or
//            not they decode (ragged or damaged on purpose) -> the raw lines as `decoded`.
[[nodiscard]] blob_split cut_encoded_blobs(std::string_view utf8_text);

// The same, with `utf8_text` replaced by blob_split::text in place. Why: nearly every text body has
// no blob and no literal placeholder, and is then left as it is instead of being copied.
[[nodiscard]] std::vector<text_blob> cut_encoded_blobs_in_place(std::string& utf8_text);

// Appends `segment` to `out` with every literal `prefix` in it written as "[ " + prefix without its
// first '[', so that afterwards only the caller's own placeholders spell `prefix`.
void append_neutralised(std::string& out, std::string_view segment, std::string_view prefix);

}  // namespace mukai::sanitize
