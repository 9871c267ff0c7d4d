// The chat page: one socket per open conversation, the transcript, the composer and the sidebar.

import { apiFetch } from "./api.js";
import { AttachmentTray } from "./attachments.js";
import { gettext, interpolate, pageLanguage } from "./i18n.js";
import { watchComposition } from "./keys.js";
import { showLength, tooLongText } from "./length.js";
import { regroup, removeConversation, setUpSearch, showConversation } from "./sidebar.js";
import { answered, showServiceStatus } from "./servicestatus.js";
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
const toolsToggle = document.getElementById("tools-toggle"); // only when staff allowed some tools
const effortSelect = document.getElementById("effort-select");
const conversationUsage = document.getElementById("conversation-usage");
const systemPrompt = document.getElementById("system-prompt");
const systemPromptInput = document.getElementById("system-prompt-input");
const systemPromptToggle = document.getElementById("system-prompt-toggle");
const counter = document.getElementById("composer-count");
// Files ride with the next message: each uploads when it is added, and sending waits for the uploads.
const tray = new AttachmentTray({
  list: document.getElementById("composer-files"),
  picker: document.getElementById("attach"),
  input: document.getElementById("attach-input"),
  pasteTarget: input,
  dropHint: document.getElementById("drop-hint"),
  limits: JSON.parse(document.getElementById("attachment-limits").textContent),
  onChange() {
    if (!tray.busy) clearNoticeAbout("files");
    refreshCount();
  },
});
let pendingClientId = null;
let pendingFiles = null; // the chips sent with the pending message, cleared once it is stored
let deletingHere = false;
let leaving = false;
// Leave the page once: the DELETE's answer and the socket's conversation.deleted both come, in either order,
// and a second navigation would abort the first.
function leave(url) {
  if (leaving) return;
  leaving = true;
  location.assign(url);
}
// What the notice is about: it clears itself once that is over ("connection": the socket is back;
// "busy": the reply being written has ended).
let noticeCause = null;

function showNotice(text, cause = null) {
  notice.textContent = text;
  notice.hidden = !text;
  noticeCause = text ? cause : null;
}

function clearNoticeAbout(cause) {
  if (noticeCause === cause) showNotice("");
}

function sendFrame(frame) {
  if (!socket.send(frame)) showNotice(gettext("Not connected; try again in a moment. Reconnecting…"), "connection");
}

const numberFormat = new Intl.NumberFormat(pageLanguage());

function refreshControls() {
  // Screen readers wait for the end of a reply instead of reading every delta.
  document.getElementById("transcript").setAttribute("aria-busy", String(transcript.isStreaming));
  stopButton.hidden = !transcript.isStreaming;
  sendButton.hidden = transcript.isStreaming;
  transcript.refreshActions();
  if (!transcript.isStreaming) clearNoticeAbout("busy");
  const totals = transcript.usageTotals();
  conversationUsage.textContent = totals.replies
    ? interpolate(gettext("%(tokens)s tokens here"), { tokens: numberFormat.format(totals.tokens) })
    : "";
}

function applyConversation(conversation) {
  if (conversation.id === config.id) {
    title.textContent = conversation.title || gettext("New conversation");
    document.title = `${conversation.title || gettext("New conversation")} · ${gettext("DeepSeek Chat")}`;
    modelSelect.value = conversation.model;
    thinkingToggle.checked = conversation.thinking;
    effortSelect.value = conversation.reasoning_effort || "";
    effortSelect.disabled = !conversation.thinking;
    if (toolsToggle) toolsToggle.checked = Boolean(conversation.tools_enabled);
    if (systemPrompt.hidden) systemPromptInput.value = conversation.system_prompt || "";
    showFlags(conversation);
  }
  showConversation(conversation, config.id);
}

const handlers = {
  "conversation.state": (event) => {
    transcript.reset(event);
    applyConversation(event.conversation);
    // Sent just before a resync: stored all the same, so the composer empties as its message.created would.
    const sent = pendingClientId && event.messages.find((message) => message.client_id === pendingClientId);
    if (sent) handlers["message.created"]({ message: sent });
  },
  "message.created": (event) => {
    transcript.add(event.message);
    if (event.message.client_id && event.message.client_id === pendingClientId) {
      input.value = "";
      pendingClientId = null;
      if (pendingFiles) tray.clear(pendingFiles);
      pendingFiles = null;
      autosize();
    }
  },
  "messages.older": (event) => transcript.older(event),
  "message.delta": (event) => transcript.delta(event),
  "tool.call.started": (event) => transcript.toolCall(event),
  "tool.call.finished": (event) => transcript.toolCall(event),
  "message.fallback": (event) => transcript.fallback(event),
  "message.completed": (event) => {
    transcript.completed(event);
    answered(event);
    refreshUserUsage();
  },
  "conversation.updated": (event) => applyConversation(event.conversation),
  "service.status": (event) => showServiceStatus(event),
  "conversation.deleted": (event) => {
    removeConversation(event.conversation.id);
    if (event.conversation.id === config.id) {
      socket.close();
      // Deleted on another device: the home page says why this one left the conversation.
      leave(deletingHere ? "/" : "/?left=deleted");
    }
  },
  error: (event) => {
    pendingClientId = null;
    pendingFiles = null;
    showNotice(event.detail, event.code === "busy" ? "busy" : null);
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
    if (level === "ok") clearNoticeAbout("connection");
  },
});

function send() {
  const content = input.value;
  if (!content.trim()) return;
  if (content.length > config.maxChars) {
    showNotice(tooLongText(content.length, config.maxChars), "length");
    return;
  }
  if (tray.busy) {
    showNotice(gettext("Wait for the files to finish uploading, then send."), "files");
    return;
  }
  pendingClientId = crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2);
  const frame = { type: "message.send", content, client_id: pendingClientId };
  const files = tray.snapshot();
  if (tray.ids.length) frame.attachments = tray.ids;
  if (!socket.send(frame)) {
    showNotice(gettext("Not connected; the message was not sent. Reconnecting…"), "connection");
    pendingClientId = null;
    return;
  }
  pendingFiles = files;
  showNotice("");
}

/** Over the limit (a long paste, say), the text stays as it is and the box says by how much. */
function refreshCount() {
  showLength({
    input,
    counter,
    send: sendButton,
    limit: config.maxChars,
    report: (text) => (text ? showNotice(text, "length") : clearNoticeAbout("length")),
  });
  if (tray.busy) sendButton.disabled = true; // the files' uploads first
}

function autosize() {
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight, 240)}px`;
  refreshCount();
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  send();
});
const composerComposing = watchComposition(input);
input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !composerComposing(event)) {
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
toolsToggle?.addEventListener("change", () => saveSettings({ tools_enabled: toolsToggle.checked }));
effortSelect.addEventListener("change", () => saveSettings({ reasoning_effort: effortSelect.value }));
function startRename() {
  const field = document.createElement("input");
  field.id = "title-input";
  field.value = title.textContent;
  field.maxLength = 200;
  field.setAttribute("aria-label", gettext("Conversation title"));
  const fieldComposing = watchComposition(field);
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
    if (fieldComposing(event)) return; // Enter confirms the pinyin; Escape cancels the composition only
    if (event.key === "Enter") finish(true);
    if (event.key === "Escape") finish(false);
  });
  field.addEventListener("blur", () => finish(true));
}

document.getElementById("rename").addEventListener("click", startRename);

// Pin and archive: the sidebar of every device follows (conversation.updated).
const pinButton = document.getElementById("pin");
const archiveButton = document.getElementById("archive");
function showFlags(conversation) {
  pinButton.setAttribute("aria-pressed", String(conversation.pinned));
  pinButton.textContent = conversation.pinned ? gettext("Unpin") : gettext("Pin");
  archiveButton.setAttribute("aria-pressed", String(conversation.archived));
  archiveButton.textContent = conversation.archived ? gettext("Unarchive") : gettext("Archive");
}
pinButton.addEventListener("click", () => saveSettings({ pinned: pinButton.getAttribute("aria-pressed") !== "true" }));
archiveButton.addEventListener("click", () =>
  saveSettings({ archived: archiveButton.getAttribute("aria-pressed") !== "true" }),
);

// The conversation's system prompt, edited in place; every device gets the change.
function showSystemPrompt(open) {
  systemPrompt.hidden = !open;
  systemPromptToggle.setAttribute("aria-expanded", String(open));
  if (open) systemPromptInput.focus();
}
systemPromptToggle.addEventListener("click", () => showSystemPrompt(systemPrompt.hidden));
document.getElementById("system-prompt-cancel").addEventListener("click", () => showSystemPrompt(false));
systemPrompt.addEventListener("submit", async (event) => {
  event.preventDefault();
  await saveSettings({ system_prompt: systemPromptInput.value });
  if (notice.hidden) showSystemPrompt(false);
});
document.getElementById("delete").addEventListener("click", async () => {
  if (!confirm(gettext("Delete this conversation for good? Every device will lose it."))) return;
  deletingHere = true;
  try {
    await apiFetch(config.apiPath, { method: "DELETE" });
    leave("/");
  } catch (error) {
    showNotice(error.message);
  }
});
// On a phone the conversation's actions fold behind one button, leaving the height to the transcript.
const actionsToggle = document.getElementById("actions-toggle");
actionsToggle.addEventListener("click", () => {
  const open = !document.body.classList.contains("actions-open");
  document.body.classList.toggle("actions-open", open);
  actionsToggle.setAttribute("aria-expanded", String(open));
});
const sidebarToggle = document.getElementById("sidebar-toggle");
function showSidebar(open) {
  document.body.classList.toggle("sidebar-open", open);
  sidebarToggle.setAttribute("aria-expanded", String(open));
  // The drawer takes the focus itself, not its search box: on a phone that would open the keyboard.
  if (open) document.getElementById("sidebar").focus();
}
sidebarToggle.addEventListener("click", () => showSidebar(!document.body.classList.contains("sidebar-open")));
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && document.body.classList.contains("sidebar-open")) {
    showSidebar(false);
    sidebarToggle.focus();
  }
});
regroup();
setUpSearch(apiFetch);
input.focus();
refreshUserUsage();
