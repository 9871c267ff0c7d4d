// The home page: a composer. The first message makes the conversation (nothing empty is left behind);
// the sidebar follows the user's other devices.

import { apiFetch } from "./api.js";
import { watchComposition } from "./keys.js";
import { showLength } from "./length.js";
import { regroup, removeConversation, setUpSearch, showConversation } from "./sidebar.js";
import { ReconnectingSocket } from "./socket.js";
import { refreshUserUsage } from "./usage.js";

const config = JSON.parse(document.getElementById("home-config").textContent);
const form = document.getElementById("home-composer");
const input = document.getElementById("home-input");
const send = document.getElementById("home-send");
const counter = document.getElementById("home-count");
const refusal = () => document.getElementById("home-refusal");
let sending = false;

function refreshCount() {
  return showLength({
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
  if (refreshCount()) event.preventDefault();
});
input.addEventListener("input", refreshCount);
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
  },
  onStatus() {},
});
