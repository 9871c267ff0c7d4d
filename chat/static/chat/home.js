// The home page: a composer. The first message makes the conversation (nothing empty is left behind);
// the sidebar follows the user's other devices.

import { apiFetch } from "./api.js";
import { AttachmentTray } from "./attachments.js";
import { watchComposition } from "./keys.js";
import { showLength } from "./length.js";
import { regroup, removeConversation, setUpSearch, showConversation } from "./sidebar.js";
import { showServiceStatus } from "./servicestatus.js";
import { ReconnectingSocket } from "./socket.js";
import { refreshUserUsage } from "./usage.js";

const config = JSON.parse(document.getElementById("home-config").textContent);
const form = document.getElementById("home-composer");
const input = document.getElementById("home-input");
const send = document.getElementById("home-send");
const counter = document.getElementById("home-count");
const refusal = () => document.getElementById("home-refusal");
let sending = false;

// Files go with the first message: each uploads when added; the form carries their ids as `attachments`.
const tray = new AttachmentTray({
  list: document.getElementById("home-files"),
  picker: document.getElementById("home-attach"),
  input: document.getElementById("home-attach-input"),
  pasteTarget: input,
  dropHint: document.getElementById("drop-hint"),
  limits: JSON.parse(document.getElementById("attachment-limits").textContent),
  onChange() {
    form.querySelectorAll("input[name=attachments]").forEach((field) => field.remove());
    for (const id of tray.ids) {
      const field = document.createElement("input");
      field.type = "hidden";
      field.name = "attachments";
      field.value = id;
      form.append(field);
    }
    refreshCount();
  },
});

/** Over the length limit, or files still uploading: the form waits (true when it must). */
function refreshCount() {
  const over = showLength({
    input,
    counter,
    send,
    limit: config.maxChars,
    report(text) {
      let note = refusal();
      if (!note && text) {
        note = document.createElement("p");
        note.id = "home-refusal";
        note.className = "errorlist";
        note.setAttribute("role", "alert");
        input.after(note);
      }
      if (note && (text || note.dataset.length)) {
        note.textContent = text;
        note.dataset.length = "1";
        note.hidden = !text;
      }
    },
  });
  if (tray.busy) send.disabled = true;
  return over || tray.busy;
}

// The effort only matters when DeepSeek thinks.
const thinking = document.getElementById("home-thinking");
const effort = document.getElementById("home-effort");
const followThinking = () => (effort.disabled = !thinking.checked);
thinking.addEventListener("change", followThinking);
followThinking();

const composing = watchComposition(input);
input.addEventListener("keydown", (event) => {
  if (event.key !== "Enter" || event.shiftKey || composing(event)) return;
  event.preventDefault();
  if (!input.value.trim() || refreshCount() || sending) return;
  sending = true; // one conversation per Enter, however fast the key repeats
  form.requestSubmit();
});
form.addEventListener("submit", (event) => {
  if (refreshCount()) {
    event.preventDefault();
    sending = false;
  }
});
input.addEventListener("input", refreshCount);
tray.restore(config.attachments); // the files of a form the server refused, still uploaded
refreshCount();
input.focus();
input.setSelectionRange(input.value.length, input.value.length);

refreshUserUsage();
regroup();
setUpSearch(apiFetch);

new ReconnectingSocket("/ws/sidebar/", {
  onEvent(event) {
    if (event.type === "conversation.updated") showConversation(event.conversation, null);
    if (event.type === "conversation.deleted") removeConversation(event.conversation.id);
    if (event.type === "service.status") showServiceStatus(event);
  },
  onStatus() {},
});
