// Staff read a transcript as its author saw it: Markdown, code and maths, through the chat's own
// sanitiser (markdown.js), so nothing the model wrote runs in the admin either.

import { renderMarkdown } from "./markdown.js";

for (const element of document.querySelectorAll(".admin-markdown[data-markdown]")) {
  const text = element.textContent;
  if (text.trim()) renderMarkdown(element, text);
  element.removeAttribute("data-markdown");
}
