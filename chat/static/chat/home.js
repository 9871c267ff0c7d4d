// The page with no conversation open: only the sidebar follows the user's other devices.

import { apiFetch } from "./api.js";
import { removeConversation, setUpSearch, showConversation } from "./sidebar.js";
import { ReconnectingSocket } from "./socket.js";
import { refreshUserUsage } from "./usage.js";

refreshUserUsage();
setUpSearch(apiFetch);

new ReconnectingSocket("/ws/sidebar/", {
  onEvent(event) {
    if (event.type === "conversation.updated") showConversation(event.conversation, null);
    if (event.type === "conversation.deleted") removeConversation(event.conversation.id);
  },
  onStatus() {},
});
