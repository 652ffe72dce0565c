// The report vocabulary (see report_words.hpp). The Japanese follows the municipal policies' terms
// (無害化, テキスト化 of 無害化通信) and the notices' wording, which staff already know.
#include "sanitizers/report_words.hpp"

namespace mukai::sanitize {

namespace {

struct entry {
  std::string_view token, ja, en;
};

// A token ending in ':' or '=' is a prefix: "rule:" matches "rule:executables".
constexpr bool is_prefix(std::string_view t) noexcept { return !t.empty() && (t.back() == ':' || t.back() == '='); }

template <std::size_t N>
std::optional<token_words> lookup(const entry (&table)[N], std::string_view token) noexcept {
  const entry* best = nullptr;
  for (const auto& e : table) {
    const bool hit = token == e.token || (is_prefix(e.token) && token.starts_with(e.token));
    if (hit && (!best || e.token.size() > best->token.size())) best = &e;
  }
  if (!best) return std::nullopt;
  return token_words{best->ja, best->en, token.substr(best->token.size())};
}

constexpr entry reasons[] = {
    // Why a message is held whole.
    {"limit:message-size", "メッセージのサイズが上限を超えています", "the message is larger than the limit"},
    {"limit:header-size", "ヘッダーが大きすぎます", "the header block is larger than the limit"},
    {"limit:mime-depth", "MIME の入れ子が深すぎます", "MIME nesting is deeper than the limit"},
    {"limit:parts", "パートの数が上限を超えています", "the message has more parts than the limit"},
    {"limit:time", "処理時間が上限を超えました", "processing took longer than the limit"},
    {"limit:html-size", "HTML 本文が大きすぎます", "the HTML body is larger than the limit"},
    {"limit:html-complexity", "HTML の構造が複雑すぎます", "the HTML is too complex to convert safely"},
    {"limit:output-size", "変換後の本文が大きすぎます", "the converted text is larger than the limit"},
    {"unparseable", "メッセージを解析できません", "the message cannot be parsed"},
    {"encrypted", "暗号化されたメッセージは無害化できません", "encrypted messages cannot be made harmless"},
    {"ambiguous:", "MIME 構造があいまいです（メールソフトにより解釈が異なる恐れ）",
     "the MIME structure is ambiguous (mail programs may read it differently)"},
    {"internal:", "内部エラー", "internal error"},
    {"worker:", "無害化処理が異常終了しました", "the sanitizer process failed"},
    // Why a part was removed or how it was shown.
    {"attachment", "添付ファイル", "attachment"},
    {"inline-image", "本文中の画像", "inline image"},
    {"signature", "電子署名", "digital signature"},
    {"active-text-type", "実行可能な内容を含み得るテキスト形式", "text type that can carry active content"},
    {"html-attachment", "HTML ファイル", "HTML file"},
    {"encoded-block", "本文中の符号化データ", "encoded data inside the text"},
    {"binary-as-text", "テキストと偽った非テキストデータ", "binary data declared as text"},
    {"message-partial", "分割メッセージ", "partial message"},
    {"external-body", "外部参照パート", "external body reference"},
    {"rule:", "ポリシー規則", "policy rule"},
    {"alternative-not-shown", "表示しなかった代替パート", "alternative not shown"},
    {"empty", "空のパート", "empty part"},
    {"text", "テキスト本文", "text body"},
    {"text-attachment-inline", "テキストの添付ファイル（本文に表示）", "text attachment shown in the body"},
    // What was done to a sanitized message (its X-Mukai-Sanitized list, also its reasons).
    {"html-to-text", "HTML 本文をテキスト化", "HTML body converted to text"},
    {"attachments-removed=", "添付ファイル等を削除", "attachments removed"},
    {"encoded-blocks-removed=", "本文中の符号化データを削除", "encoded data removed from the text"},
    {"signature-removed", "電子署名を削除", "digital signature removed"},
    {"links=defanged", "リンクを無害化（クリック不可）", "links defanged (not clickable)"},
    {"links-removed=", "リンク先を削除", "link targets removed"},
    {"phishing-cues=", "表示と異なるリンク先（なりすましの恐れ）", "links that point elsewhere than shown (phishing)"},
    {"charset-detected", "文字コードを推定して変換", "character set guessed"},
    {"alternative-dropped", "代替パートを表示せず", "alternative part not shown"},
};

constexpr entry flags[] = {
    {"executable", "実行ファイル", "executable"},
    {"macro-office", "マクロ付き Office 文書", "Office document with macros"},
    {"encrypted-archive", "暗号化圧縮ファイル", "encrypted archive"},
    {"encrypted-document", "暗号化文書", "encrypted document"},
    {"double-extension", "二重拡張子", "double extension"},
    {"type-mismatch", "種別と拡張子の不一致", "type does not match the name"},
    {"archive-with-executable", "実行ファイルを含む圧縮ファイル", "archive containing an executable"},
};

constexpr entry part_actions[] = {
    {"kept-as-text", "本文として表示", "shown as text"},
    {"converted", "テキストに変換", "converted to text"},
    {"quarantined", "隔離", "quarantined"},
    {"discarded", "破棄", "discarded"},
};

constexpr entry verdicts[] = {
    {"clean", "問題なし", "clean"},
    {"sanitized", "無害化して配送", "sanitized and delivered"},
    {"held", "保留（配送せず）", "held (not delivered)"},
};

}  // namespace

std::optional<token_words> reason_words(std::string_view token) noexcept { return lookup(reasons, token); }
std::optional<token_words> flag_words(std::string_view token) noexcept { return lookup(flags, token); }
std::optional<token_words> part_action_words(std::string_view token) noexcept { return lookup(part_actions, token); }
std::optional<token_words> verdict_words(std::string_view token) noexcept { return lookup(verdicts, token); }

}  // namespace mukai::sanitize
