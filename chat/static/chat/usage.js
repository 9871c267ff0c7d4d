// The user's token usage, shown at the foot of the sidebar.

import { apiFetch } from "./api.js";

export async function refreshUserUsage() {
  const target = document.getElementById("usage-summary");
  if (!target) return;
  try {
    const usage = await apiFetch("/api/usage/");
    const tokens = (u) => (u.prompt_tokens + u.completion_tokens).toLocaleString();
    target.textContent = `Your usage: ${tokens(usage.today)} tokens today, ${tokens(usage.total)} in all.`;
  } catch {
    target.textContent = "";
  }
}
