// Enter while an input method is composing (pinyin, zhuyin, kana…) confirms the composition: it must
// never send or save. Browsers tell in two orders: Chrome and Firefox mark the keydown itself
// (`isComposing`, keyCode 229); Safari ends the composition (`compositionend`) just before the
// keydown of the Enter that confirmed it, which then looks like a plain Enter.

// A keydown this soon after a compositionend belongs to the composition (Safari's order).
const SAFARI_GAP_MS = 100;

/** Follow an element's compositions; the returned test says whether a keydown belongs to one. */
export function watchComposition(element) {
  let composing = false;
  let endedAt = -Infinity;
  element.addEventListener("compositionstart", () => {
    composing = true;
  });
  element.addEventListener("compositionend", (event) => {
    composing = false;
    endedAt = event.timeStamp;
  });
  return (event) =>
    composing || event.isComposing || event.keyCode === 229 || event.timeStamp - endedAt < SAFARI_GAP_MS;
}

/** Whether a composition is going on in an element now (for work done on `input`, such as a search). */
export function composingNow(element) {
  return element.dataset.composing === "1";
}

/** Mark an element while it composes, so `input` handlers can wait for the composition to end. */
export function markComposition(element, onEnd) {
  element.addEventListener("compositionstart", () => (element.dataset.composing = "1"));
  element.addEventListener("compositionend", () => {
    delete element.dataset.composing;
    if (onEnd) onEnd();
  });
}
