// The page with no conversation open: only the sidebar follows the user's other devices.

import { showConversation, removeConversation } from "./sidebar.js";
import { ReconnectingSocket } from "./socket.js";
import { refreshUserUsage } from "./usage.js";

refreshUserUsage();

new ReconnectingSocket("/ws/sidebar/", {
  onEvent(event) {
    if (event.type === "conversation.updated") showConversation(event.conversation, null);
    if (event.type === "conversation.deleted") removeConversation(event.conversation.id);
  },
  onStatus() {},
});
