// The sidebar's list of conversations, kept in step with conversation.updated / .deleted events.

import { gettext } from "./i18n.js";
import { composingNow, markComposition } from "./keys.js";

const list = () => document.getElementById("conversation-list");

export function showConversation(conversation, activeId) {
  const sidebar = list();
  let item = sidebar.querySelector(`li[data-id="${conversation.id}"]`);
  if (!item) {
    sidebar.querySelector(".empty-note")?.remove();
    item = document.createElement("li");
    item.dataset.id = conversation.id;
    const link = document.createElement("a");
    link.href = `/c/${conversation.id}/`;
    item.append(link);
  }
  item.querySelector("a").textContent = conversation.title || gettext("New conversation");
  if (conversation.id === activeId) {
    item.classList.add("active");
    item.setAttribute("aria-current", "page");
  }
  if (conversation.updated_at) item.dataset.updated = conversation.updated_at;
  for (const flag of ["pinned", "archived"]) {
    if (conversation[flag]) item.dataset[flag] = "1";
    else delete item.dataset[flag];
  }
  sidebar.prepend(item); // most recently updated first
  regroup();
}

const GROUPS = {
  pinned: gettext("Pinned"),
  today: gettext("Today"),
  yesterday: gettext("Yesterday"),
  week: gettext("Previous 7 days"),
  older: gettext("Older"),
  archived: gettext("Archived"),
};
const ORDER = Object.keys(GROUPS);

/** Which heading a conversation last changed at `when` goes under, by the reader's own calendar. */
function groupOf(when, now = new Date()) {
  const midnight = new Date(now.getFullYear(), now.getMonth(), now.getDate()).getTime();
  const day = 24 * 3600 * 1000;
  if (when >= midnight) return "today";
  if (when >= midnight - day) return "yesterday";
  if (when >= midnight - 7 * day) return "week";
  return "older";
}

/** Sort the list newest first under headings: pinned, then by date (today … older), then archived (folded). */
export function regroup() {
  const sidebar = list();
  if (!sidebar) return;
  sidebar.querySelectorAll(":scope > li.group-heading").forEach((heading) => heading.remove());
  const items = [...sidebar.querySelectorAll(":scope > li[data-id]")];
  const time = (item) => Date.parse(item.dataset.updated || "") || 0;
  const group = (item) => (item.dataset.archived ? "archived" : item.dataset.pinned ? "pinned" : groupOf(time(item)));
  items.sort((a, b) => ORDER.indexOf(group(a)) - ORDER.indexOf(group(b)) || time(b) - time(a));
  let current = null;
  for (const item of items) {
    const name = group(item);
    if (name !== current) {
      const heading = document.createElement("li");
      heading.className = "group-heading";
      heading.dataset.group = name;
      if (name === "archived") {
        // Archived conversations stay folded away until asked for.
        const toggle = document.createElement("button");
        toggle.type = "button";
        toggle.classList.add("link", "archived-toggle");
        toggle.setAttribute("aria-expanded", String(sidebar.classList.contains("show-archived")));
        toggle.textContent = GROUPS.archived;
        toggle.addEventListener("click", () => {
          const open = sidebar.classList.toggle("show-archived");
          toggle.setAttribute("aria-expanded", String(open));
        });
        heading.append(toggle);
      } else {
        heading.textContent = GROUPS[name];
      }
      sidebar.append(heading);
      current = name;
    }
    sidebar.append(item);
  }
}

export function removeConversation(conversationId) {
  list().querySelector(`li[data-id="${conversationId}"]`)?.remove();
}

/** Filter the list as the user types: titles and message text, searched by the server. */
export function setUpSearch(apiFetch) {
  const input = document.getElementById("conversation-search");
  if (!input) return;
  const empty = document.getElementById("search-empty");
  let timer = null;
  let asked = 0;
  // Half-typed pinyin is not searched for: the search runs when the composition ends.
  markComposition(input, () => input.dispatchEvent(new Event("input")));
  input.addEventListener("input", () => {
    if (composingNow(input)) return;
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const query = input.value.trim();
      const items = [...list().querySelectorAll("li[data-id]")];
      list().classList.toggle("searching", Boolean(query)); // date headings hide while searching
      if (!query) {
        items.forEach((item) => (item.hidden = false));
        empty.hidden = true;
        return;
      }
      const ticket = ++asked;
      try {
        const found = await apiFetch(`/api/conversations/?q=${encodeURIComponent(query)}`);
        if (ticket !== asked) return; // a newer search is on its way
        const ids = new Set(found.conversations.map((c) => c.id));
        items.forEach((item) => (item.hidden = !ids.has(item.dataset.id)));
        empty.hidden = ids.size > 0;
      } catch {
        empty.hidden = true;
      }
    }, 200);
  });
  input.addEventListener("keydown", (event) => {
    if (event.isComposing || event.keyCode === 229) return; // the input method's own keys
    if (event.key === "Escape" && input.value) {
      event.stopPropagation(); // the first Escape clears the search; the next closes the drawer
      input.value = "";
      input.dispatchEvent(new Event("input"));
    }
  });
}
