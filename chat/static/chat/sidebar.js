// The sidebar's list of conversations, kept in step with conversation.updated / .deleted events.

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
  item.querySelector("a").textContent = conversation.title || "New conversation";
  if (conversation.id === activeId) {
    item.classList.add("active");
    item.setAttribute("aria-current", "page");
  }
  sidebar.prepend(item); // most recently updated first
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
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const query = input.value.trim();
      const items = [...list().querySelectorAll("li[data-id]")];
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
    if (event.key === "Escape" && input.value) {
      event.stopPropagation(); // the first Escape clears the search; the next closes the drawer
      input.value = "";
      input.dispatchEvent(new Event("input"));
    }
  });
}
