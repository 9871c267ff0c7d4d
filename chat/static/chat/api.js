// JSON API calls from the page, with the CSRF token Django expects on unsafe methods.

import { gettext, interpolate } from "./i18n.js";

export function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

export async function apiFetch(path, { method = "GET", body } = {}) {
  const response = await fetch(path, {
    method,
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const detail = data && data.error ? data.error.detail : interpolate(gettext("Request failed (HTTP %(status)s)."), { status: response.status });
    throw new Error(detail);
  }
  return data;
}
