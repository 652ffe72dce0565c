// Ownership of GLib/GMime objects: one unique_ptr type per kind of handle.
// adopt() takes a "transfer full" return value (we own the reference); retain() takes a
// "transfer none" one (we add a reference). Objects belong to the thread that made them.
#pragma once

#include <glib-object.h>
#include <gmime/gmime.h>

#include <memory>

namespace mukai::sanitize {

struct gobject_unref {
  void operator()(gpointer p) const noexcept {
    if (p) g_object_unref(p);
  }
};
template <typename T>
using gobject_ptr = std::unique_ptr<T, gobject_unref>;

template <typename T>
[[nodiscard]] gobject_ptr<T> adopt(T* p) noexcept {
  return gobject_ptr<T>(p);
}
template <typename T>
[[nodiscard]] gobject_ptr<T> retain(T* p) noexcept {
  if (p) g_object_ref(p);
  return gobject_ptr<T>(p);
}

struct gfree {
  void operator()(gpointer p) const noexcept { g_free(p); }
};
using gchar_ptr = std::unique_ptr<char, gfree>;

struct parser_options_free {
  void operator()(GMimeParserOptions* p) const noexcept { g_mime_parser_options_free(p); }
};
using parser_options_ptr = std::unique_ptr<GMimeParserOptions, parser_options_free>;

struct format_options_free {
  void operator()(GMimeFormatOptions* p) const noexcept { g_mime_format_options_free(p); }
};
using format_options_ptr = std::unique_ptr<GMimeFormatOptions, format_options_free>;

struct date_time_unref {
  void operator()(GDateTime* p) const noexcept {
    if (p) g_date_time_unref(p);
  }
};
using date_time_ptr = std::unique_ptr<GDateTime, date_time_unref>;

struct references_free {
  void operator()(GMimeReferences* p) const noexcept {
    if (p) g_mime_references_free(p);
  }
};
using references_ptr = std::unique_ptr<GMimeReferences, references_free>;

// g_mime_init() once per process, before GMime is used from any thread.
void ensure_gmime_initialized();

}  // namespace mukai::sanitize
