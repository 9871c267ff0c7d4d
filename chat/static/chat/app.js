// The chat page: one socket per open conversation, the transcript, the composer and the sidebar.

import { apiFetch } from "./api.js";
import { removeConversation, setUpSearch, showConversation } from "./sidebar.js";
import { ReconnectingSocket } from "./socket.js";
import { Transcript } from "./transcript.js";
import { refreshUserUsage } from "./usage.js";

const config = JSON.parse(document.getElementById("chat-config").textContent);
const transcript = new Transcript(document.getElementById("transcript"), {
  regenerate: () => sendFrame({ type: "message.regenerate" }),
  edit: (messageId, content) => sendFrame({ type: "message.edit", message_id: messageId, content }),
  select: (messageId) => sendFrame({ type: "branch.select", message_id: messageId }),
  older: (messageId) => socket.send({ type: "messages.older", before: messageId }),
});
transcript.followScrolling(document.getElementById("jump-latest"));
const input = document.getElementById("composer-input");
const form = document.getElementById("composer");
const sendButton = document.getElementById("send");
const stopButton = document.getElementById("stop");
const notice = document.getElementById("notice");
const connection = document.getElementById("connection");
const title = document.getElementById("conversation-title");
const modelSelect = document.getElementById("model-select");
const thinkingToggle = document.getElementById("thinking-toggle");
const conversationUsage = document.getElementById("conversation-usage");
let pendingClientId = null;

function showNotice(text) {
  notice.textContent = text;
  notice.hidden = !text;
}

function sendFrame(frame) {
  if (!socket.send(frame)) showNotice("Not connected; try again in a moment. Reconnecting…");
}

function refreshControls() {
  // Screen readers wait for the end of a reply instead of reading every delta.
  document.getElementById("transcript").setAttribute("aria-busy", String(transcript.isStreaming));
  stopButton.hidden = !transcript.isStreaming;
  sendButton.hidden = transcript.isStreaming;
  transcript.refreshActions();
  const totals = transcript.usageTotals();
  conversationUsage.textContent = totals.replies ? `${totals.tokens.toLocaleString()} tokens here` : "";
}

function applyConversation(conversation) {
  if (conversation.id === config.id) {
    title.textContent = conversation.title || "New conversation";
    document.title = `${conversation.title || "New conversation"} · DeepSeek Chat`;
    modelSelect.value = conversation.model;
    thinkingToggle.checked = conversation.thinking;
  }
  showConversation(conversation, config.id);
}

const handlers = {
  "conversation.state": (event) => {
    transcript.reset(event);
    applyConversation(event.conversation);
  },
  "message.created": (event) => {
    transcript.add(event.message);
    if (event.message.client_id && event.message.client_id === pendingClientId) {
      input.value = "";
      pendingClientId = null;
      autosize();
    }
  },
  "messages.older": (event) => transcript.older(event),
  "message.delta": (event) => transcript.delta(event),
  "message.completed": (event) => {
    transcript.completed(event);
    refreshUserUsage();
  },
  "conversation.updated": (event) => applyConversation(event.conversation),
  "conversation.deleted": (event) => {
    removeConversation(event.conversation.id);
    if (event.conversation.id === config.id) {
      socket.close();
      location.assign("/");
    }
  },
  error: (event) => {
    pendingClientId = null;
    showNotice(event.detail);
  },
};

const socket = new ReconnectingSocket(config.socketPath, {
  onEvent(event) {
    const handler = handlers[event.type];
    if (handler) handler(event);
    refreshControls();
  },
  onStatus(text, level) {
    connection.textContent = text;
    connection.dataset.level = level;
  },
});

function send() {
  const content = input.value;
  if (!content.trim()) return;
  if (content.length > config.maxChars) {
    showNotice(`The message is ${content.length} characters long; the limit is ${config.maxChars}.`);
    return;
  }
  pendingClientId = crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2);
  if (!socket.send({ type: "message.send", content, client_id: pendingClientId })) {
    showNotice("Not connected; the message was not sent. Reconnecting…");
    pendingClientId = null;
    return;
  }
  showNotice("");
}

function autosize() {
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight, 240)}px`;
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  send();
});
input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    send();
  } else if (event.key === "Escape" && transcript.isStreaming) {
    socket.send({ type: "generation.stop" });
  }
});
document.addEventListener("keydown", (event) => {
  const typing = event.target.closest("input, textarea, select, [contenteditable]");
  if (event.key === "/" && !typing) {
    event.preventDefault();
    input.focus();
  } else if (event.key.toLowerCase() === "k" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    if (getComputedStyle(sidebarToggle).display !== "none") showSidebar(true);
    document.getElementById("conversation-search").focus();
  }
});
input.addEventListener("input", autosize);
stopButton.addEventListener("click", () => socket.send({ type: "generation.stop" }));

async function saveSettings(changes) {
  try {
    await apiFetch(config.apiPath, { method: "PATCH", body: changes });
    showNotice("");
  } catch (error) {
    showNotice(error.message);
  }
}
modelSelect.addEventListener("change", () => saveSettings({ model: modelSelect.value }));
thinkingToggle.addEventListener("change", () => saveSettings({ thinking: thinkingToggle.checked }));
function startRename() {
  const field = document.createElement("input");
  field.id = "title-input";
  field.value = title.textContent;
  field.maxLength = 200;
  field.setAttribute("aria-label", "Conversation title");
  title.replaceWith(field);
  field.focus();
  field.select();
  let done = false;
  const finish = async (save) => {
    if (done) return;
    done = true;
    field.replaceWith(title);
    if (save && field.value.trim() && field.value.trim() !== title.textContent) {
      title.textContent = field.value.trim();
      await saveSettings({ title: field.value.trim() });
    }
    document.getElementById("rename").focus();
  };
  field.addEventListener("keydown", (event) => {
    if (event.key === "Enter") finish(true);
    if (event.key === "Escape") finish(false);
  });
  field.addEventListener("blur", () => finish(true));
}

document.getElementById("rename").addEventListener("click", startRename);
document.getElementById("delete").addEventListener("click", async () => {
  if (!confirm("Delete this conversation for good? Every device will lose it.")) return;
  try {
    await apiFetch(config.apiPath, { method: "DELETE" });
    location.assign("/");
  } catch (error) {
    showNotice(error.message);
  }
});
const sidebarToggle = document.getElementById("sidebar-toggle");
function showSidebar(open) {
  document.body.classList.toggle("sidebar-open", open);
  sidebarToggle.setAttribute("aria-expanded", String(open));
  if (open) document.getElementById("conversation-search").focus();
}
sidebarToggle.addEventListener("click", () => showSidebar(!document.body.classList.contains("sidebar-open")));
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && document.body.classList.contains("sidebar-open")) {
    showSidebar(false);
    sidebarToggle.focus();
  }
});
setUpSearch(apiFetch);
input.focus();
refreshUserUsage();
