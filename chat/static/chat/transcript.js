// The transcript: messages as the server states them, replies growing delta by delta.
// Replies render as sanitised Markdown (markdown.js), re-rendered at most once a frame while they
// stream; the user's own text is shown as typed.

import { showMessageFiles } from "./attachments.js";
import { gettext, interpolate, pageLanguage } from "./i18n.js";
import { watchComposition } from "./keys.js";
import { copyWithFeedback, renderMarkdown } from "./markdown.js";

const numbers = new Intl.NumberFormat(pageLanguage());
const timeOfDay = new Intl.DateTimeFormat(pageLanguage(), { hour: "numeric", minute: "2-digit" });
const dayAndTime = new Intl.DateTimeFormat(pageLanguage(), { month: "short", day: "numeric", hour: "numeric", minute: "2-digit" });
const fullTime = new Intl.DateTimeFormat(pageLanguage(), { dateStyle: "full", timeStyle: "medium" });

// Why a reply failed, by its code, in the reader's language (the stored detail is in English and may
// quote DeepSeek; it stays available on hover).
const REPLY_ERRORS = {
  bad_request: gettext("DeepSeek rejected the request as invalid."),
  bad_key: gettext("DeepSeek refused the API key; check DEEPSEEK_API_KEY."),
  insufficient_balance: gettext("The DeepSeek account has run out of credit; top up its balance and try again."),
  rate_limited: gettext("DeepSeek is rate-limiting requests; wait a moment and try again."),
  unavailable: gettext("DeepSeek is overloaded or unavailable right now; try again in a few minutes."),
  stalled: gettext("DeepSeek stopped sending in the middle of the reply."),
  cut_off: gettext("The connection to DeepSeek was cut before the reply finished."),
  connection_failed: gettext("Could not connect to DeepSeek (connection refused or reset)."),
  upstream_error: gettext("DeepSeek reported an error in the middle of the reply."),
  internal_error: gettext("The reply failed because of an unexpected error on this site."),
};

// Which model answered a reply whose own model failed before its first byte, and why, by the failure's code.
const FALLBACK_REASONS = {
  unavailable: gettext("Answered by %(model)s: %(failed)s was unavailable."),
  connection_failed: gettext("Answered by %(model)s: %(failed)s could not be reached."),
};

/** The sentence under a reply's header when another model answered it, or "" (model names are text, never HTML). */
function fallbackSentence(message) {
  if (!message.fallback) return "";
  const format = FALLBACK_REASONS[message.fallback.code] || gettext("Answered by %(model)s instead of %(failed)s.");
  return interpolate(format, { model: message.model || "", failed: message.fallback.from });
}

function replyError(error) {
  if (pageLanguage().startsWith("en")) return error.detail;
  return REPLY_ERRORS[error.code] || error.detail;
}

/** When a message was written: the time of day today, the day and time before; all of it on hover. */
function sentAt(iso) {
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return null;
  const today = new Date().toDateString() === when.toDateString();
  return { short: (today ? timeOfDay : dayAndTime).format(when), full: fullTime.format(when), iso };
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function describeUsage(message) {
  const parts = [];
  if (message.model) parts.push(message.model);
  if (message.usage) {
    const u = message.usage;
    parts.push(
      interpolate(gettext("%(prompt)s in · %(completion)s out"), {
        prompt: numbers.format(u.prompt_tokens),
        completion: numbers.format(u.completion_tokens),
      }),
    );
    if (u.reasoning_tokens) parts.push(interpolate(gettext("%(count)s reasoning"), { count: numbers.format(u.reasoning_tokens) }));
    if (u.prompt_cache_hit_tokens) parts.push(interpolate(gettext("%(count)s cached"), { count: numbers.format(u.prompt_cache_hit_tokens) }));
  }
  if (message.time_to_first_token_ms != null) {
    const seconds = new Intl.NumberFormat(pageLanguage(), { minimumFractionDigits: 1, maximumFractionDigits: 1 });
    parts.push(interpolate(gettext("first token %(seconds)s s"), { seconds: seconds.format(message.time_to_first_token_ms / 1000) }));
  }
  return parts.join(" · ");
}

function button(label, className, onClick, ariaLabel) {
  const node = el("button", className, label);
  node.type = "button";
  if (ariaLabel) node.setAttribute("aria-label", ariaLabel);
  node.addEventListener("click", onClick);
  return node;
}

export class Transcript {
  /** `actions`: {regenerate(), edit(id, text), select(id)}, each sent to the server as a socket event. */
  constructor(root, actions = {}) {
    this.root = root;
    this.actions = actions;
    this.views = new Map(); // message id -> {article, content, reasoning, details, meta, seq, data}
    this.streamingId = null;
    // A long conversation arrives newest first: older turns come a page at a time, asked for near the top.
    this.hasMore = false;
    this.loadingOlder = null;
    this.olderButton = button(gettext("Show earlier messages"), "older-messages", () => this.requestOlder());
    root.addEventListener("scroll", () => this.maybeLoadOlder(), { passive: true });
    setInterval(() => this.tick(), 1000); // the "thinking… N s" timer
  }

  get isStreaming() {
    return this.streamingId !== null;
  }

  reset(state) {
    this.views.clear();
    this.streamingId = null;
    this.loadingOlder = null;
    this.root.replaceChildren();
    for (const message of state.messages) this.add(message);
    const streaming = state.streaming;
    if (streaming) {
      const view = this.views.get(streaming.message_id);
      if (view) {
        view.data.content = streaming.content;
        view.data.reasoning = streaming.reasoning;
        view.seq = streaming.seq;
        view.data.truncated = Boolean(streaming.truncated);
        // Joined mid-reply: the thinking began when the reply did, not now.
        if (streaming.reasoning) view.thinkingSince = Date.parse(view.data.created_at) || Date.now();
        this.paint(view);
      }
    }
    this.showOlder(Boolean(state.has_more));
    this.showEmpty();
  }

  /** The "earlier messages" control at the top, while the server has older turns than those shown. */
  showOlder(hasMore) {
    this.hasMore = hasMore;
    this.olderButton.textContent = gettext("Show earlier messages");
    if (hasMore) this.root.prepend(this.olderButton);
    else this.olderButton.remove();
    this.maybeLoadOlder();
  }

  /** Ask for the page before the oldest shown turn once the reader is near the top (or it all fits). */
  maybeLoadOlder() {
    if (this.hasMore && this.root.scrollTop < 400) this.requestOlder();
  }

  requestOlder() {
    const first = this.views.values().next().value;
    if (!this.hasMore || !first || this.loadingOlder === first.data.id) return;
    if (!this.actions.older || !this.actions.older(first.data.id)) return; // not connected: the next state says
    this.loadingOlder = first.data.id;
    this.olderButton.textContent = gettext("Loading earlier messages…");
  }

  /** A page of older turns: shown above the oldest one, the reader staying where they were. */
  older(event) {
    const first = this.views.values().next().value;
    if (!first || first.data.id !== event.before) return; // the transcript was rebuilt since it was asked for
    this.loadingOlder = null;
    const root = this.root;
    const height = root.scrollHeight;
    const fromBottom = height - root.scrollTop;
    const views = event.messages.filter((message) => !this.views.has(message.id)).map((message) => this.build(message));
    first.article.before(...views.map((view) => view.article));
    this.views = new Map([...views.map((view) => [view.data.id, view]), ...this.views]); // display order
    for (const view of views) this.paint(view);
    root.scrollTop = root.scrollHeight - fromBottom;
    if (this.autoTop) this.autoTop += root.scrollHeight - height;
    this.showOlder(Boolean(event.has_more));
  }

  showEmpty() {
    if (this.views.size === 0) {
      this.root.append(el("p", "empty-note", gettext("Ask anything to start.")));
    } else {
      this.root.querySelectorAll(":scope > .empty-note").forEach((n) => n.remove());
    }
  }

  add(message) {
    if (this.views.has(message.id)) return;
    const view = this.build(message);
    this.root.append(view.article);
    this.views.set(message.id, view);
    if (message.status === "streaming") this.streamingId = message.id;
    this.paint(view);
    this.showEmpty();
    this.scroll();
  }

  /** A message's article and view, not yet placed. */
  build(message) {
    const article = el("article", `msg ${message.role}`);
    article.dataset.id = message.id;
    const header = el("div", "role", message.role === "user" ? gettext("You") : "DeepSeek");
    const time = sentAt(message.created_at);
    if (time) {
      const stamp = el("time", "sent-at", time.short);
      stamp.dateTime = time.iso;
      stamp.title = time.full;
      header.append(" ", stamp);
    }
    article.append(header);
    const fallback = el("p", "reply-fallback");
    fallback.hidden = true;
    article.append(fallback);
    const details = el("details", "reasoning");
    const summary = el("summary", "", gettext("Reasoning"));
    details.append(summary);
    const reasoning = el("div", "reasoning-text");
    details.append(reasoning);
    details.hidden = true;
    const content = el("div", "content");
    const calls = el("div", "tool-calls");
    calls.hidden = true;
    const meta = el("footer", "meta");
    const tools = el("div", "msg-actions");
    article.append(details, content, calls, meta, tools);
    return { article, content, reasoning, details, summary, calls, meta, tools, fallback, seq: 0, data: { ...message } };
  }

  delta(event) {
    const view = this.views.get(event.message_id);
    if (!view || event.seq <= view.seq) return; // already shown
    view.seq = event.seq;
    if (event.content) view.data.content += event.content;
    if (event.reasoning) view.data.reasoning += event.reasoning;
    this.paint(view);
    this.scroll();
  }

  /** The reply's model failed before its first byte: say which model answers it instead, and why. */
  fallback(event) {
    const view = this.views.get(event.message_id);
    if (!view) return;
    view.data.model = event.model;
    view.data.fallback = { from: event.fallback_from, code: event.fallback_code };
    this.paint(view);
  }

  completed(event) {
    const view = this.views.get(event.message_id);
    if (!view) return;
    Object.assign(view.data, event.message || {}, {
      status: event.status,
      content: event.content,
      reasoning: event.reasoning,
      usage: event.usage,
      error: event.error,
      truncated: false, // the whole final texts
    });
    if (this.streamingId === event.message_id) this.streamingId = null;
    this.paint(view);
    this.scroll();
  }

  renderContent(view) {
    if (view.data.role !== "assistant") {
      view.content.textContent = view.data.content;
      return;
    }
    if (view.data.status !== "streaming") {
      cancelAnimationFrame(view.frame);
      view.frame = null;
      renderMarkdown(view.content, view.data.content);
      return;
    }
    if (view.frame) return; // one render per frame, however many deltas arrive
    view.frame = requestAnimationFrame(() => {
      view.frame = null;
      renderMarkdown(view.content, view.data.content);
      this.scroll();
    });
  }

  thinkingLabel(view) {
    const data = view.data;
    if (data.status === "streaming" && !data.content) {
      const started = view.thinkingSince || Date.parse(data.created_at) || Date.now();
      return interpolate(gettext("Thinking… %(seconds)s s"), { seconds: Math.max(0, Math.round((Date.now() - started) / 1000)) });
    }
    if (view.thoughtFor != null) return interpolate(gettext("Thought for %(seconds)s s"), { seconds: view.thoughtFor });
    return data.usage && data.usage.reasoning_tokens
      ? interpolate(gettext("Reasoning (%(count)s tokens)"), { count: numbers.format(data.usage.reasoning_tokens) })
      : gettext("Reasoning");
  }

  /** A tool call of a reply started or finished: show the step where it belongs. */
  toolCall(event) {
    const view = this.views.get(event.message_id);
    if (!view) return;
    const calls = [...(view.data.tool_calls || [])];
    const at = calls.findIndex((call) => call.id === event.call.id);
    if (at >= 0) calls[at] = event.call;
    else calls.push(event.call);
    view.data.tool_calls = calls;
    this.paint(view);
    this.scroll();
  }

  /** The function calls a reply asked for, each folded like the reasoning: name, arguments, then the result. */
  paintCalls(view) {
    const calls = view.data.tool_calls || [];
    const key = JSON.stringify(calls);
    if (view.callsKey === key) return;
    view.callsKey = key;
    view.calls.replaceChildren();
    view.calls.hidden = calls.length === 0;
    for (const call of calls) {
      const block = el("details", "tool-call");
      block.dataset.id = call.id;
      const done = call.output !== undefined || call.error !== undefined;
      block.dataset.state = call.error !== undefined ? "failed" : done ? "done" : "running";
      const label = interpolate(gettext("Tool call: %(name)s"), { name: call.name });
      block.append(el("summary", "", done ? label : `${label} · ${gettext("running…")}`));
      block.append(el("pre", "tool-arguments", call.arguments));
      if (call.output !== undefined) {
        block.append(el("div", "tool-label", gettext("Result")), el("pre", "tool-output", call.output));
      }
      if (call.error !== undefined) {
        block.append(el("div", "tool-label", gettext("The tool failed")), el("pre", "tool-error", call.error));
      }
      view.calls.append(block);
    }
  }

  /** The files a message carries: chips under its text, each downloading its file. */
  /** Attached files whose text was cut to fit this reply's context: the user is told how much the model read. */
  paintFilesCut(view, cuts) {
    view.article.querySelectorAll(".files-cut-note").forEach((node) => node.remove());
    for (const cut of cuts) {
      const text = interpolate(
        gettext("%(name)s was too long for the context and was cut: the model read %(kept)s of its %(chars)s characters."),
        { name: cut.name, kept: cut.kept.toLocaleString(), chars: cut.chars.toLocaleString() },
      );
      const note = el("p", "reply-notice", text);
      note.classList.add("files-cut-note");
      view.article.append(note);
    }
  }

  paintFiles(view) {
    const files = view.data.attachments || [];
    const key = JSON.stringify(files);
    if (view.filesKey === key || (!view.files && files.length === 0)) return;
    view.filesKey = key;
    if (!view.files) {
      view.files = el("ul", "msg-files");
      view.files.setAttribute("aria-label", gettext("Attached files"));
      view.content.after(view.files);
    }
    showMessageFiles(view.files, files);
  }

  tick() {
    for (const view of this.views.values()) {
      if (!view.details.hidden) view.summary.textContent = this.thinkingLabel(view);
    }
  }

  paint(view) {
    const data = view.data;
    view.article.dataset.status = data.status;
    this.renderContent(view);
    if (data.reasoning) {
      if (view.details.hidden) {
        view.details.hidden = false;
        view.details.open = data.status === "streaming"; // open while thinking; the user may fold it
        if (data.status === "streaming" && !view.thinkingSince) view.thinkingSince = Date.now();
      }
      if (data.content && view.thinkingSince && view.thoughtFor == null) {
        view.thoughtFor = Math.max(1, Math.round((Date.now() - view.thinkingSince) / 1000));
      }
      view.reasoning.textContent = data.reasoning;
      view.summary.textContent = this.thinkingLabel(view);
    }
    this.paintCalls(view);
    this.paintFiles(view);
    const answeredBy = fallbackSentence(data);
    view.fallback.textContent = answeredBy;
    view.fallback.hidden = !answeredBy;
    const notes = [];
    if (data.role === "assistant") {
      if (data.status === "streaming" && !data.content && !data.reasoning) notes.push(gettext("waiting for DeepSeek…"));
      else if (data.status === "streaming") notes.push(gettext("writing…"));
      else if (data.status === "stopped") notes.push(gettext("stopped"));
      const usage = describeUsage(data);
      if (usage && data.status !== "streaming") notes.push(usage);
    }
    view.meta.textContent = notes.join(" · ");
    let notice = view.article.querySelector(".reply-notice");
    if (data.notice) {
      if (!notice) {
        notice = el("p", "reply-notice");
        view.article.append(notice);
      }
      notice.textContent = data.notice;
    } else if (notice) {
      notice.remove();
    }
    this.paintFilesCut(view, data.files_cut || []);
    const cut = view.article.querySelector(".truncated-note");
    if (data.truncated && !cut) {
      const text = gettext("Too long to show here in full: Export .md or .json above has all of it.");
      view.content.after(el("p", "truncated-note", text));
    } else if (!data.truncated && cut) {
      cut.remove();
    }
    let error = view.article.querySelector(".error");
    if (data.error) {
      if (!error) {
        error = el("p", "error");
        view.article.append(error);
      }
      error.textContent = replyError(data.error);
      error.title = data.error.detail;
    } else if (error) {
      error.remove();
    }
  }

  /** Buttons under each message, for what can be done now (nothing that changes turns while a reply streams). */
  refreshActions() {
    const views = [...this.views.values()];
    const last = views[views.length - 1];
    for (const view of views) {
      if (view.editing) continue;
      const data = view.data;
      // Rebuilt only when something they depend on changed, not on every delta.
      const key = [data.id, data.status, Boolean(data.content), this.isStreaming, view === last, data.versions].join("|");
      if (view.actionsKey === key) continue;
      view.actionsKey = key;
      const tools = [];
      if (data.versions && data.versions.length > 1) {
        const index = data.versions.indexOf(data.id);
        const previous = button("‹", "version", () => this.actions.select(data.versions[index - 1]), gettext("Previous version"));
        const next = button("›", "version", () => this.actions.select(data.versions[index + 1]), gettext("Next version"));
        previous.disabled = index <= 0 || this.isStreaming;
        next.disabled = index >= data.versions.length - 1 || this.isStreaming;
        tools.push(previous, el("span", "version-count", `${index + 1} / ${data.versions.length}`), next);
      }
      if (data.content && data.status !== "streaming") {
        const copyLabel = data.role === "user" ? gettext("Copy this message") : gettext("Copy this reply");
        const copy = button(gettext("Copy"), "", () => copyWithFeedback(copy, data.content), copyLabel);
        tools.push(copy);
      }
      if (!this.isStreaming && data.role === "user") {
        tools.push(button(gettext("Edit"), "", () => this.startEdit(view), gettext("Edit this message and send it again")));
      }
      if (!this.isStreaming && data.role === "assistant" && view === last) {
        tools.push(button(gettext("Regenerate"), "", () => this.actions.regenerate(), gettext("Write this reply again")));
      }
      view.tools.replaceChildren(...tools);
      if (view === last) this.scroll();
    }
  }

  startEdit(view) {
    view.editing = true;
    const box = el("textarea", "edit-box");
    box.value = view.data.content;
    box.setAttribute("aria-label", gettext("Edit your message"));
    const boxComposing = watchComposition(box);
    box.rows = Math.min(12, view.data.content.split("\n").length + 1);
    const stop = () => {
      view.editing = false;
      view.actionsKey = null;
      form.remove();
      view.content.hidden = false;
      this.refreshActions();
    };
    const save = button(gettext("Send"), "primary", () => {
      if (!box.value.trim()) return;
      this.actions.edit(view.data.id, box.value);
      stop();
    });
    const cancel = button(gettext("Cancel"), "", stop);
    const form = el("div", "edit-form");
    form.append(box, el("div", "edit-buttons"));
    form.lastChild.append(save, cancel);
    box.addEventListener("keydown", (event) => {
      if (boxComposing(event)) return; // the input method's Enter and Escape
      if (event.key === "Escape") stop();
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        save.click();
      }
    });
    view.content.hidden = true;
    view.tools.replaceChildren();
    view.content.after(form);
    box.focus();
  }

  usageTotals() {
    const totals = { tokens: 0, replies: 0 };
    for (const view of this.views.values()) {
      const usage = view.data.usage;
      if (!usage) continue;
      totals.tokens += usage.prompt_tokens + usage.completion_tokens;
      totals.replies += 1;
    }
    return totals;
  }

  /** Follow the newest text unless the user scrolled up to read; then offer a jump back down. */
  followScrolling(jumpButton) {
    this.jumpButton = jumpButton;
    this.pinned = true;
    this.autoTop = 0;
    const root = this.root;
    const unpin = () => {
      this.pinned = false;
    };
    // What the user does to read back: the wheel, a touch drag, keys; our own scrolling is told apart.
    root.addEventListener("wheel", (event) => event.deltaY < 0 && unpin(), { passive: true });
    root.addEventListener("touchmove", unpin, { passive: true });
    root.addEventListener("keydown", (event) => ["ArrowUp", "PageUp", "Home"].includes(event.key) && unpin());
    root.addEventListener("scroll", () => {
      const atBottom = root.scrollHeight - root.scrollTop - root.clientHeight < 60;
      if (atBottom) {
        this.pinned = true;
        jumpButton.hidden = true;
      } else if (root.scrollTop + 2 < this.autoTop) {
        unpin(); // moved up from where we put it: the scrollbar, or anything else
      }
    });
    jumpButton.addEventListener("click", () => {
      this.pinned = true;
      jumpButton.hidden = true;
      this.scroll();
    });
  }

  scroll() {
    const root = this.root;
    if (this.pinned === false && root.scrollHeight - root.scrollTop - root.clientHeight < 60 && root.scrollTop >= this.autoTop) {
      this.pinned = true; // unpinned, yet nothing was ever scrolled away from the bottom
    }
    if (this.pinned !== false) {
      root.scrollTop = root.scrollHeight;
      this.autoTop = root.scrollTop;
    } else if (this.jumpButton) {
      this.jumpButton.hidden = false;
    }
  }
}
