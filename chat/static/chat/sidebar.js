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
