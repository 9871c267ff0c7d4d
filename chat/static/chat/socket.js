// A WebSocket that reconnects by itself with backoff and reports its state.
// Every (re)connection starts with `conversation.state`, so the page simply rebuilds from it.

import { gettext, interpolate } from "./i18n.js";

// Close codes the server sends (chat/consumers.py).
const SIGNED_OUT = 4401;
const TOO_MANY = 4429;

export class ReconnectingSocket {
  constructor(path, { onEvent, onStatus }) {
    this.url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
    this.onEvent = onEvent;
    this.onStatus = onStatus;
    this.attempt = 0;
    this.closedForGood = false;
    this.ws = null;
    this.connect();
    window.addEventListener("online", () => this.reconnectNow());
  }

  connect() {
    this.onStatus(this.attempt ? gettext("reconnecting…") : gettext("connecting…"), "pending");
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.addEventListener("open", () => {
      this.attempt = 0;
      this.onStatus(gettext("connected"), "ok");
    });
    ws.addEventListener("message", (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      this.onEvent(event);
    });
    ws.addEventListener("close", (event) => {
      if (this.ws !== ws || this.closedForGood) return;
      if (event.code === SIGNED_OUT) {
        // Logged out, a new password, or the account is gone: reconnecting would be refused.
        this.closedForGood = true;
        this.onStatus(gettext("signed out"), "bad");
        location.assign(`/accounts/login/?next=${encodeURIComponent(location.pathname)}`);
        return;
      }
      if (event.code === TOO_MANY) {
        // Too many sockets open for this user: say so, and try again only slowly.
        this.attempt = Math.max(this.attempt, 6);
        this.scheduleReconnect(gettext("too many open tabs"));
        return;
      }
      this.scheduleReconnect();
    });
  }

  scheduleReconnect(reason = gettext("offline")) {
    this.attempt += 1;
    const delay = Math.min(10000, 500 * 2 ** (this.attempt - 1)) * (0.75 + Math.random() * 0.5);
    this.onStatus(interpolate(gettext("%(reason)s, retrying in %(seconds)s s"), { reason, seconds: Math.ceil(delay / 1000) }), "bad");
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  reconnectNow() {
    if (this.closedForGood || (this.ws && this.ws.readyState <= WebSocket.OPEN)) return;
    clearTimeout(this.timer);
    this.connect();
  }

  send(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  close() {
    this.closedForGood = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close();
  }
}
