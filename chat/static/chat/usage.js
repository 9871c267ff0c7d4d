// The user's token usage, shown at the foot of the sidebar.

import { apiFetch } from "./api.js";
import { gettext, interpolate, pageLanguage } from "./i18n.js";

export async function refreshUserUsage() {
  const target = document.getElementById("usage-summary");
  if (!target) return;
  try {
    const usage = await apiFetch("/api/usage/");
    const format = new Intl.NumberFormat(pageLanguage());
    const tokens = (u) => format.format(u.prompt_tokens + u.completion_tokens);
    target.textContent = interpolate(gettext("Your usage: %(today)s tokens today, %(total)s in all."), {
      today: tokens(usage.today),
      total: tokens(usage.total),
    });
  } catch {
    target.textContent = "";
  }
}
