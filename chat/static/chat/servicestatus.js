// DeepSeek's status, site-wide: the page is rendered with the banner shown or not, and a `service.status`
// event (from any socket of the page) shows or hides it live. The sentences are the template's, one per kind.

/** Show the banner while `degraded`, in the words of its code (a refused key, no credit, or an outage); else hide it. */
export function showServiceStatus({ status, code = "" }) {
  const region = document.getElementById("service-status");
  if (!region) return;
  region.dataset.status = status;
  region.dataset.code = code;
  const banner = region.querySelector(".service-banner");
  const sentences = [...banner.querySelectorAll("[data-code]")];
  const chosen =
    sentences.find((sentence) => sentence.dataset.code === code) ||
    sentences.find((sentence) => !sentence.dataset.code);
  for (const sentence of sentences) sentence.hidden = sentence !== chosen;
  banner.hidden = status !== "degraded";
}

/** A reply this page saw DeepSeek answer: the site's status is `ok` again (the server counts it the same way). */
export function answered(event) {
  if (event.status === "complete") showServiceStatus({ status: "ok" });
}
