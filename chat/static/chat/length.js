// A message over the length limit (a long paste, say) is kept as it is: the box shows the count and
// says by how much it is over, and sending waits until it is short enough.

import { gettext, interpolate, pageLanguage } from "./i18n.js";

const numbers = new Intl.NumberFormat(pageLanguage());

/** The sentence for a message that is too long. */
export function tooLongText(length, limit) {
  return interpolate(gettext("The message is %(length)s characters long; the limit is %(limit)s. Shorten it to send."), {
    length: numbers.format(length),
    limit: numbers.format(limit),
  });
}

/** Show the count near the limit; over it, mark the box, disable sending and report (true when over). */
export function showLength({ input, counter, send, limit, report }) {
  const length = input.value.length;
  const over = length > limit;
  counter.hidden = length < limit * 0.9;
  counter.textContent = `${numbers.format(length)} / ${numbers.format(limit)}`;
  counter.classList.toggle("over", over);
  input.setAttribute("aria-invalid", String(over));
  send.disabled = over;
  report(over ? tooLongText(length, limit) : "");
  return over;
}
