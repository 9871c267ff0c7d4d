// Model text as safe Markdown: GitHub-flavoured, highlighted code, and nothing that runs or loads.
// Three layers: raw HTML in the text is shown as text, DOMPurify keeps only plain formatting tags,
// and the page's Content-Security-Policy refuses scripts, frames and foreign images anyway.

import DOMPurify from "./vendor/dompurify/purify.es.mjs";
import hljs from "./vendor/highlight/highlight.min.js";
import { Marked } from "./vendor/marked/marked.esm.js";

const escapeHtml = (text) =>
  text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

const marked = new Marked({
  gfm: true,
  breaks: false,
  renderer: {
    // Raw HTML written by the model is shown as the text it is.
    html({ text }) {
      return escapeHtml(text);
    },
    // Images are never loaded (a Markdown image can carry data out in its URL): the alt text stays.
    image({ text }) {
      return `<span class="image-alt">[image${text ? `: ${escapeHtml(text)}` : ""}]</span>`;
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

/** Sanitised HTML for Markdown text. */
export function toSafeHtml(text) {
  return DOMPurify.sanitize(marked.parse(text), {
    ALLOWED_TAGS,
    ALLOWED_ATTR,
    ALLOW_DATA_ATTR: false,
    ADD_ATTR: ["target", "rel"],
  });
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
    () => (button.textContent = "Copied"),
    () => (button.textContent = "Copy failed"),
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
    copy.textContent = "Copy";
    copy.setAttribute("aria-label", `Copy ${label.textContent} code`);
    copy.addEventListener("click", () => copyWithFeedback(copy, code.textContent));
    bar.append(label, copy);
    const block = document.createElement("div");
    block.className = "code-block";
    pre.replaceWith(block);
    block.append(bar, pre);
  }
}

/** Render Markdown text into an element: sanitised, with code blocks labelled and copyable. */
export function renderMarkdown(element, text) {
  element.innerHTML = toSafeHtml(text);
  decorateCode(element);
}
