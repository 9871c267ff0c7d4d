// The page's words in the reader's language: Django's JavaScript catalog (/jsi18n/, a classic script
// loaded before any module) when it is there, the English text when it is not.

const catalog = () => globalThis.django;

/** The translation of a message. */
export function gettext(msgid) {
  const django = catalog();
  return django ? django.gettext(msgid) : msgid;
}

/** The singular or plural translation for a count. */
export function ngettext(singular, plural, count) {
  const django = catalog();
  if (django) return django.ngettext(singular, plural, count);
  return count === 1 ? singular : plural;
}

/** A translation that depends on its context (the same English word said of different things). */
export function pgettext(context, msgid) {
  const django = catalog();
  return django ? django.pgettext(context, msgid) : msgid;
}

/** Fill `%(name)s` placeholders, so that translators can move them within a sentence. */
export function interpolate(format, values) {
  return format.replace(/%\((\w+)\)s/g, (whole, name) => (name in values ? String(values[name]) : whole));
}

/** The page's language (its `<html lang>`), for dates and numbers. */
export function pageLanguage() {
  return document.documentElement.lang || "en";
}
