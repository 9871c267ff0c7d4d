// Model text as safe Markdown: GitHub-flavoured, highlighted code, maths typeset, and nothing that runs or loads.
// Three layers: raw HTML in the text is shown as text, DOMPurify keeps only plain formatting tags,
// and the page's Content-Security-Policy refuses scripts, frames, foreign images and style attributes anyway.
// Maths goes through the same layers as TeX text in placeholders; KaTeX then builds each formula into its
// placeholder as DOM nodes (their styles set through the CSSOM, which the CSP allows), trusting no command.

import DOMPurify from "./vendor/dompurify/purify.es.mjs";
import hljs from "./vendor/highlight/highlight.min.js";
import { gettext, interpolate } from "./i18n.js";
import katex from "./vendor/katex/katex.mjs";
import { Marked, Tokenizer } from "./vendor/marked/marked.esm.js";

const escapeHtml = (text) =>
  text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

// KaTeX's stylesheet (and through it its fonts) comes with this module, unless the page already links it.
const KATEX_CSS = new URL("./vendor/katex/katex.min.css", import.meta.url).href;
if (![...document.querySelectorAll("link[rel=stylesheet]")].some((link) => link.href === KATEX_CSS)) {
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = KATEX_CSS;
  document.head.append(link);
}

// --- Finding maths: $…$, $$…$$, \(…\) and \[…\] outside code, as marked extensions (so marked's own
// code spans and code blocks, which it reads first, never reach them).

const isSpace = (c) => c === undefined || /\s/.test(c);

/**
 * Where `close` ends the formula in `src` from `from` (-1: not before `end`); \x pairs are skipped, and a
 * backtick ends the search (code, which marked reads first, is never part of a formula).
 */
function closingAt(src, from, close, end = src.length) {
  for (let i = from; i < end; i++) {
    if (src[i] === "`") return -1;
    if (src.startsWith(close, i) && i + close.length <= end) {
      if (close !== "$") return i;
      // The next lone $ closes only after a non-space and before a non-digit ("costs $5 and $10" stays prose).
      return !isSpace(src[i - 1]) && !/\d/.test(src[i + 1] || "") ? i : -1;
    }
    if (src[i] === "\\") i++; // an escaped character (\$, \\, \{) closes nothing
  }
  return -1;
}

// TeX cannot have a blank line inside display maths: a display formula ends before the next one.
const blankLineAt = (src, from) => {
  const match = /\n[ \t]*\n/.exec(src.slice(from));
  return match ? from + match.index : src.length;
};

const DISPLAY_CLOSE = { $$: "$$", "\\[": "\\]" };

// The text being rendered, and whether it may still grow: a formula left open at its end is being
// written, and is held back as plain text until it closes; an opener left open anywhere else is just text.
let rendering = { text: "", unfinished: false };
const lastLine = (src) => src.trimEnd().split("\n").pop().trim();
const beingWritten = (src) => rendering.unfinished && rendering.text.trimEnd().endsWith(lastLine(src));

const mathBlock = {
  name: "mathBlock",
  level: "block",
  // A display formula may start a line inside a paragraph ("so:\n\[ … \]"): cut the paragraph there
  // (looking no further than the paragraph's end, a blank line).
  start(src) {
    const match = /\n {0,3}(\$\$|\\\[)|\n[ \t]*\n/.exec(src);
    return match && match[1] ? match.index + 1 : undefined;
  },
  tokenizer(src) {
    const open = /^ {0,3}(\$\$|\\\[)/.exec(src);
    if (!open) return undefined;
    const from = open[0].length;
    const end = blankLineAt(src, from);
    const at = closingAt(src, from, DISPLAY_CLOSE[open[1]], end);
    if (at < 0) {
      // Still being written (the text ends inside it): held as plain text until it closes.
      if (src.slice(end).trim() || !beingWritten(src)) return undefined;
      return { type: "mathPending", raw: src, text: src.trim(), block: true };
    }
    const tex = src.slice(from, at);
    if (!tex.trim()) return undefined;
    const closeEnd = at + DISPLAY_CLOSE[open[1]].length;
    const rest = /^[ \t]*(?:\n|$)/.exec(src.slice(closeEnd));
    return { type: "mathBlock", raw: src.slice(0, closeEnd) + (rest ? rest[0] : ""), text: tex };
  },
  renderer(token) {
    return `<p class="math-block"><span class="math-display">${escapeHtml(token.text)}</span></p>\n`;
  },
};

const mathInline = {
  name: "mathInline",
  level: "inline",
  start(src) {
    const index = src.search(/\$|\\[([]/);
    return index < 0 ? undefined : index;
  },
  tokenizer(src) {
    let open;
    let close;
    if (src.startsWith("$$")) [open, close] = ["$$", "$$"];
    else if (src.startsWith("\\[")) [open, close] = ["\\[", "\\]"];
    else if (src.startsWith("\\(")) [open, close] = ["\\(", "\\)"];
    else if (src[0] === "$" && !isSpace(src[1])) [open, close] = ["$", "$"];
    else return undefined;
    const at = closingAt(src, open.length, close);
    if (at < 0) {
      if (open === "$" || !beingWritten(src)) return undefined; // a dollar sign, or an opener left open
      return { type: "mathPending", raw: src, text: src, block: false }; // still being written
    }
    const tex = src.slice(open.length, at);
    if (!tex.trim()) return undefined;
    const display = open === "$$" || open === "\\["; // shown on a line of its own, even mid-sentence
    return { type: "mathInline", raw: src.slice(0, at + close.length), text: tex, display };
  },
  renderer(token) {
    return `<span class="math-${token.display ? "display" : "inline"}">${escapeHtml(token.text)}</span>`;
  },
};

const mathPending = {
  name: "mathPending",
  renderer(token) {
    const text = escapeHtml(token.text);
    return token.block ? `<p class="math-pending">${text}</p>\n` : `<span class="math-pending">${text}</span>`;
  },
};

/**
 * `masked` (marked's copy of a paragraph, in which it looks for where emphasis closes) with the formulas
 * of `src` (the paragraph from here on) blanked out, so that "*see $a*b$*" is emphasis around a formula.
 */
function maskMaths(src, masked) {
  const offset = masked.length - src.length;
  let result = masked;
  for (let i = 0; i < src.length; i++) {
    if (src[i] !== "$" && src[i] !== "\\") continue;
    const token = mathInline.tokenizer(src.slice(i));
    if (token) {
      result = result.slice(0, offset + i) + "a".repeat(token.raw.length) + result.slice(offset + i + token.raw.length);
      i += token.raw.length - 1;
    } else if (src[i] === "\\") {
      i++; // an escaped character
    }
  }
  return result;
}

const marked = new Marked({
  gfm: true,
  breaks: false,
  extensions: [mathBlock, mathInline, mathPending],
  tokenizer: {
    emStrong(src, masked, previous) {
      return Tokenizer.prototype.emStrong.call(this, src, maskMaths(src, masked), previous);
    },
  },
  renderer: {
    // Raw HTML written by the model is shown as the text it is.
    html({ text }) {
      return escapeHtml(text);
    },
    // Images are never loaded (a Markdown image can carry data out in its URL): the alt text stays.
    image({ text }) {
      const label = text ? interpolate(gettext("[image: %(alt)s]"), { alt: text }) : gettext("[image]");
      return `<span class="image-alt">${escapeHtml(label)}</span>`;
    },
  },
});

const ALLOWED_TAGS = [
  "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "s", "code", "pre",
  "blockquote", "ul", "ol", "li", "table", "thead", "tbody", "tr", "th", "td", "a", "span", "input",
];
const ALLOWED_ATTR = ["href", "title", "class", "align", "start", "type", "checked", "disabled"];
const SAFE_LINK = /^(https?:|mailto:|#)/i;

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    const href = node.getAttribute("href") || "";
    if (!SAFE_LINK.test(href)) node.removeAttribute("href");
    node.setAttribute("rel", "noopener noreferrer nofollow");
    node.setAttribute("target", "_blank");
  }
  if (node.tagName === "INPUT" && node.getAttribute("type") !== "checkbox") node.remove();
  if (node.tagName === "INPUT") node.setAttribute("disabled", "");
});

/**
 * Sanitised HTML for Markdown text, formulas still as TeX in their placeholders; `unfinished`: the text may
 * still grow (a formula open at its end is shown as plain text, not read as Markdown).
 */
export function toSafeHtml(text, { unfinished = false } = {}) {
  rendering = { text, unfinished };
  try {
    return DOMPurify.sanitize(marked.parse(text), {
      ALLOWED_TAGS,
      ALLOWED_ATTR,
      ALLOW_DATA_ATTR: false,
      ADD_ATTR: ["target", "rel"],
    });
  } finally {
    rendering = { text: "", unfinished: false };
  }
}

function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
  const area = document.createElement("textarea");
  area.value = text;
  document.body.append(area);
  area.select();
  document.execCommand("copy");
  area.remove();
  return Promise.resolve();
}

/** Copy to the clipboard and say so on the button for a moment. */
export function copyWithFeedback(button, text) {
  const label = button.textContent;
  copyText(text).then(
    () => (button.textContent = gettext("Copied")),
    () => (button.textContent = gettext("Copy failed")),
  );
  setTimeout(() => (button.textContent = label), 1500);
}

function decorateCode(root) {
  for (const code of root.querySelectorAll("pre > code")) {
    const pre = code.parentElement;
    const match = /language-([\w+#.-]+)/.exec(code.className);
    const language = match && hljs.getLanguage(match[1]) ? match[1] : null;
    if (language) {
      code.innerHTML = hljs.highlight(code.textContent, { language, ignoreIllegals: true }).value;
      code.classList.add("hljs");
    }
    const bar = document.createElement("div");
    bar.className = "code-bar";
    const label = document.createElement("span");
    label.textContent = match ? match[1] : "text";
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "copy-code";
    copy.textContent = gettext("Copy");
    copy.setAttribute("aria-label", interpolate(gettext("Copy %(language)s code"), { language: label.textContent }));
    copy.addEventListener("click", () => copyWithFeedback(copy, code.textContent));
    bar.append(label, copy);
    const block = document.createElement("div");
    block.className = "code-block";
    pre.replaceWith(block);
    block.append(bar, pre);
  }
}

// --- Typesetting: KaTeX builds DOM nodes, never HTML text, and is trusted with nothing (no \href, \url,
// \includegraphics, \htmlStyle…). Sizes written in the TeX are capped so that a formula cannot cover the page.
const KATEX_OPTIONS = {
  throwOnError: false,
  trust: false,
  strict: "ignore",
  output: "htmlAndMathml",
  maxSize: 10,
  maxExpand: 500,
};

/**
 * Run `build` with style attributes set through the CSSOM: KaTeX sets a few with setAttribute (widths of
 * its SVG parts, the colour of an error), which the CSP refuses, while element.style is allowed.
 */
function stylesThroughCssom(build) {
  const setAttribute = Element.prototype.setAttribute;
  Element.prototype.setAttribute = function (name, value) {
    if (String(name).toLowerCase() !== "style") return setAttribute.call(this, name, value);
    for (const declaration of String(value).split(";")) {
      const colon = declaration.indexOf(":");
      if (colon > 0) this.style.setProperty(declaration.slice(0, colon).trim(), declaration.slice(colon + 1).trim());
    }
    return undefined;
  };
  try {
    return build();
  } finally {
    Element.prototype.setAttribute = setAttribute;
  }
}

// What each element showed last time, formula by formula, so that re-rendering a streaming reply moves
// the typeset nodes into the new placeholders rather than laying the same formulas out again.
const typesetIn = new WeakMap(); // element -> Map(key -> [node])
const typesetCache = new Map(); // key -> node to clone (a few hundred formulas, oldest dropped first)
const CACHE_SIZE = 300;

const keyOf = (tex, displayMode) => `${displayMode ? "D" : "I"}${tex}`;

/** The typeset formula, as a node of its own. */
function typeset(tex, displayMode) {
  const key = keyOf(tex, displayMode);
  const cached = typesetCache.get(key);
  if (cached) {
    typesetCache.delete(key);
    typesetCache.set(key, cached); // the most recently used last
    return cached.cloneNode(true);
  }
  const holder = document.createElement("span");
  stylesThroughCssom(() => katex.render(tex, holder, { ...KATEX_OPTIONS, displayMode }));
  const node = holder.firstChild;
  if (!node) throw new Error("KaTeX rendered nothing");
  typesetCache.set(key, node.cloneNode(true));
  if (typesetCache.size > CACHE_SIZE) typesetCache.delete(typesetCache.keys().next().value);
  return node;
}

/** Typeset every formula placeholder in `root`, reusing the nodes it showed for the same TeX last time. */
function typesetMaths(root) {
  const before = typesetIn.get(root);
  const now = new Map();
  for (const slot of root.querySelectorAll("span.math-inline, span.math-display")) {
    if (slot.closest("pre, code")) continue;
    const displayMode = slot.classList.contains("math-display");
    const tex = slot.textContent;
    const key = keyOf(tex, displayMode);
    let node = before?.get(key)?.shift();
    try {
      node ||= typeset(tex, displayMode);
    } catch (error) {
      console.error("KaTeX failed on", tex, error); // the TeX stays, as text
      continue;
    }
    slot.replaceChildren(node);
    if (!now.has(key)) now.set(key, []);
    now.get(key).push(node);
  }
  if (now.size) typesetIn.set(root, now);
  else typesetIn.delete(root);
}

/**
 * Render Markdown text into an element: sanitised, code blocks labelled and copyable, maths typeset.
 * A reply that is not known to be complete (its message's data-status, set before each render) may end
 * inside a formula still being written.
 */
export function renderMarkdown(element, text) {
  const unfinished = element.closest("[data-status]")?.dataset.status !== "complete";
  element.innerHTML = toSafeHtml(text, { unfinished });
  decorateCode(element);
  typesetMaths(element);
}
