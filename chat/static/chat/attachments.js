// Files attached to a message. In the composer each file uploads as soon as it is picked, dropped or
// pasted, and shows as a chip (a spinner while it uploads, the server's sentence when it is refused, an ×
// to take it off); sending waits for the uploads. Under a sent message the files show as chips that
// download them. Names are user text: they only ever go into the page as textContent.

import { csrfToken } from "./api.js";
import { gettext, interpolate, ngettext, pageLanguage } from "./i18n.js";

const UPLOAD_PATH = "/api/attachments/";
const SVG = "http://www.w3.org/2000/svg";
const integers = new Intl.NumberFormat(pageLanguage());
const decimals = new Intl.NumberFormat(pageLanguage(), { maximumFractionDigits: 1 });

/** A size as people read it: bytes, then KB, MB, GB (by 1024, as the server counts its limits). */
export function formatSize(bytes) {
  if (bytes < 1024) return interpolate(ngettext("%(size)s byte", "%(size)s bytes", bytes), { size: integers.format(bytes) });
  const units = [gettext("%(size)s KB"), gettext("%(size)s MB"), gettext("%(size)s GB")];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return interpolate(units[unit], { size: decimals.format(value) });
}

/** What a chip says beside the name: the size, and the pages of a PDF. */
export function describeFile(attachment) {
  const parts = [formatSize(attachment.size)];
  if (attachment.pages != null) {
    parts.push(interpolate(ngettext("%(count)s page", "%(count)s pages", attachment.pages), { count: integers.format(attachment.pages) }));
  }
  return parts.join(" · ");
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A small line icon (no text for screen readers: the name beside it says what it is). */
function icon(paths, className) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.setAttribute("class", className);
  for (const d of paths) {
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("d", d);
    svg.append(path);
  }
  return svg;
}

const fileIcon = () => icon(["M14 3H7a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h10a2 2 0 0 0 2-2V8z", "M14 3v5h5", "M9 13h6M9 17h6"], "file-icon");

/** A link the server made (a path on this site), or null for anything else. */
function sitePath(url) {
  return typeof url === "string" && url.startsWith("/") && !url.startsWith("//") ? url : null;
}

/** The files of a sent message, as chips that download them; `list` is emptied and hidden when there are none. */
export function showMessageFiles(list, attachments) {
  const files = Array.isArray(attachments) ? attachments : [];
  list.hidden = files.length === 0;
  list.replaceChildren(
    ...files.map((file) => {
      const item = el("li");
      const href = sitePath(file.url);
      const chip = el(href ? "a" : "span", "file-chip");
      if (href) {
        chip.href = href;
        chip.download = file.name;
        chip.title = interpolate(gettext("Download %(name)s"), { name: file.name });
      }
      chip.dataset.id = file.id;
      chip.append(fileIcon(), el("span", "file-name", file.name), el("span", "file-size", describeFile(file)));
      item.append(chip);
      return item;
    }),
  );
}

/** The refusal of a type the site does not read (the server's own sentence). */
function typeRefusal(name) {
  return interpolate(
    gettext("Files of this type (%(name)s) cannot be attached: attach text, Markdown, code, CSV or JSON, a PDF or a Word document (.docx)."),
    { name },
  );
}

/** Whether a drag or a clipboard carries files (not just text). */
function carriesFiles(transfer) {
  return Boolean(transfer) && [...transfer.types].some((type) => type.toLowerCase() === "files");
}

/**
 * The composer's files. `list`: the <ul> of chips; `picker`: the attach button; `input`: its hidden
 * <input type=file>; `pasteTarget`: the message box; `dropHint`: shown while files are dragged over the
 * page; `limits`: {max_bytes, max_files, accept}; `onChange()`: called whenever the files or their
 * uploads change (to enable sending and keep form fields in step).
 */
export class AttachmentTray {
  constructor({ list, picker, input, pasteTarget, dropHint, limits, onChange = () => {} }) {
    this.list = list;
    this.input = input;
    this.limits = limits;
    this.onChange = onChange;
    this.chips = [];
    this.accepted = new Set(
      String(limits.accept || "")
        .split(",")
        .map((ext) => ext.trim().toLowerCase())
        .filter(Boolean),
    );
    picker.addEventListener("click", () => input.click());
    input.addEventListener("change", () => {
      this.add(input.files);
      input.value = ""; // the same file can be picked again after it was removed
    });
    pasteTarget.addEventListener("paste", (event) => this.paste(event));
    this.followDrags(dropHint);
  }

  /** Ids of the uploaded files, in the order they were added. */
  get ids() {
    return this.ready().map((chip) => chip.attachment.id);
  }

  /** Whether a file is still uploading (sending waits for it). */
  get busy() {
    return this.chips.some((chip) => chip.state === "uploading");
  }

  ready() {
    return this.chips.filter((chip) => chip.state === "ready");
  }

  /** Pasted files attach; pasted text (even with a picture of it beside, as office programs copy) pastes as text. */
  paste(event) {
    const data = event.clipboardData;
    if (!carriesFiles(data) || !data.files.length) return;
    const text = data.types.includes("text/plain") && data.getData("text/plain");
    if (text && [...data.files].every((file) => file.type.startsWith("image/"))) return;
    event.preventDefault();
    this.add(data.files);
  }

  /** Files dragged over the page: the hint shows, and a drop anywhere attaches them (never opens them). */
  followDrags(hint) {
    let depth = 0;
    const show = (on) => {
      if (hint) hint.hidden = !on;
      document.body.classList.toggle("dragging-files", on);
    };
    document.addEventListener("dragenter", (event) => {
      if (!carriesFiles(event.dataTransfer)) return;
      depth += 1;
      show(true);
    });
    document.addEventListener("dragover", (event) => {
      if (!carriesFiles(event.dataTransfer)) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
    });
    document.addEventListener("dragleave", (event) => {
      if (!carriesFiles(event.dataTransfer)) return;
      depth = Math.max(0, depth - 1);
      if (depth === 0) show(false);
    });
    const end = () => {
      depth = 0;
      show(false);
    };
    document.addEventListener("drop", (event) => {
      if (!carriesFiles(event.dataTransfer)) return;
      event.preventDefault();
      end();
      this.add(event.dataTransfer.files);
    });
    document.addEventListener("dragend", end);
  }

  /** Take files: each is checked here against the limits, then uploaded at once. */
  add(fileList) {
    const files = [...(fileList || [])];
    for (const file of files) {
      const chip = { file, name: file.name || gettext("file"), state: "uploading", attachment: null, error: "" };
      const refusal = this.refusal(file);
      if (refusal) {
        chip.state = "refused";
        chip.error = refusal;
      }
      this.chips.push(chip);
      this.paint(chip);
      if (chip.state === "uploading") this.upload(chip);
    }
    if (files.length) this.changed();
  }

  /** The sentence the server would answer for a file over a limit, said before it is sent. */
  refusal(file) {
    const taken = this.chips.filter((chip) => chip.state !== "refused").length;
    if (taken >= this.limits.max_files) {
      return interpolate(gettext("A message can carry at most %(limit)s files."), { limit: integers.format(this.limits.max_files) });
    }
    if (file.size > this.limits.max_bytes) {
      return interpolate(gettext("This file is %(size)s; files of at most %(limit)s can be attached."), {
        size: formatSize(file.size),
        limit: formatSize(this.limits.max_bytes),
      });
    }
    if (file.size === 0) return gettext("This file is empty.");
    const dot = file.name.lastIndexOf(".");
    // A name without an extension (README, Makefile) is the server's to judge.
    if (dot > 0 && this.accepted.size && !this.accepted.has(file.name.slice(dot).toLowerCase())) return typeRefusal(file.name);
    return "";
  }

  async upload(chip) {
    const body = new FormData();
    body.append("file", chip.file, chip.name);
    chip.controller = new AbortController();
    let answer = null;
    try {
      const response = await fetch(UPLOAD_PATH, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRFToken": csrfToken() },
        body,
        signal: chip.controller.signal,
      });
      answer = await response.json().catch(() => null);
      if (response.ok && answer && answer.id) {
        chip.attachment = answer;
        chip.state = "ready";
      } else {
        chip.state = "refused";
        chip.error =
          answer && answer.error && answer.error.detail
            ? answer.error.detail
            : interpolate(gettext("Request failed (HTTP %(status)s)."), { status: response.status });
      }
    } catch {
      chip.state = "refused";
      chip.error = gettext("The file could not be uploaded; check the connection and try again.");
    }
    if (chip.removed) {
      if (chip.attachment) this.forget(chip.attachment);
      return;
    }
    this.paint(chip);
    this.changed();
  }

  /** Take a file off: the server forgets an upload that was not sent. */
  remove(chip) {
    chip.removed = true;
    this.chips = this.chips.filter((other) => other !== chip);
    chip.node?.remove();
    if (chip.state === "uploading") chip.controller?.abort();
    else if (chip.attachment) this.forget(chip.attachment);
    this.changed();
  }

  forget(attachment) {
    fetch(`${UPLOAD_PATH}${encodeURIComponent(attachment.id)}/`, {
      method: "DELETE",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken() },
    }).catch(() => {}); // unsent files the server was not told about expire on their own
  }

  /** The chips to clear once the message that carries them was sent (those refused go too). */
  snapshot() {
    return this.chips.filter((chip) => chip.state !== "uploading");
  }

  /** Clear chips after their message was sent: their files belong to the message now. */
  clear(chips = this.snapshot()) {
    const gone = new Set(chips);
    for (const chip of gone) chip.node?.remove();
    this.chips = this.chips.filter((chip) => !gone.has(chip));
    this.changed();
  }

  /** Files uploaded earlier (a refused home form shown again): ready chips again. */
  restore(attachments) {
    for (const attachment of attachments || []) {
      const chip = { file: null, name: attachment.name, state: "ready", attachment, error: "" };
      this.chips.push(chip);
      this.paint(chip);
    }
    this.changed();
  }

  changed() {
    this.list.hidden = this.chips.length === 0;
    this.list.setAttribute("aria-busy", String(this.busy));
    this.onChange();
  }

  /** Draw one chip (again): name, size or spinner, the × and, when refused, why. */
  paint(chip) {
    const node = chip.node || el("li", "file-chip");
    if (!chip.node) {
      chip.node = node;
      this.list.append(node);
    }
    node.dataset.state = chip.state;
    if (chip.attachment) node.dataset.id = chip.attachment.id;
    const parts = [fileIcon(), el("span", "file-name", chip.name)];
    if (chip.state === "uploading") {
      parts.push(el("span", "spinner"), el("span", "visually-hidden", gettext("Uploading…")));
    } else if (chip.state === "ready") {
      parts.push(el("span", "file-size", describeFile(chip.attachment)));
    }
    const remove = el("button", "file-remove", "×");
    remove.type = "button";
    remove.title = gettext("Remove");
    remove.setAttribute("aria-label", interpolate(gettext("Remove %(name)s"), { name: chip.name }));
    remove.addEventListener("click", () => this.remove(chip));
    parts.push(remove);
    if (chip.state === "refused") {
      const why = el("span", "file-error", chip.error);
      why.setAttribute("role", "alert");
      parts.push(why);
    }
    node.title = chip.name;
    node.replaceChildren(...parts);
  }
}
