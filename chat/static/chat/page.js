// What every page shares: the language picker applies a choice at once (without scripts its button
// does), the simulated-replies banner can be dismissed, for good on this device, and on a phone the
// account links fold into a menu.

const menuToggle = document.getElementById("menu-toggle");
if (menuToggle) {
  const setMenu = (open) => {
    document.body.classList.toggle("menu-open", open);
    menuToggle.setAttribute("aria-expanded", String(open));
  };
  menuToggle.addEventListener("click", () => setMenu(!document.body.classList.contains("menu-open")));
  document.addEventListener("click", (event) => {
    if (!event.target.closest(".topbar")) setMenu(false);
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && document.body.classList.contains("menu-open")) {
      setMenu(false);
      menuToggle.focus();
    }
  });
}

const form = document.getElementById("language-form");
if (form) {
  form.querySelector("#language-apply").hidden = true;
  form.querySelector("select").addEventListener("change", () => form.submit());
}

const BANNER_KEY = "simulated-banner-dismissed";
const banner = document.getElementById("simulated-banner");
if (banner) {
  let dismissed = false;
  try {
    dismissed = localStorage.getItem(BANNER_KEY) === "1";
  } catch {
    // storage refused (private mode): the banner shows, and can still be closed for this page
  }
  banner.hidden = dismissed;
  banner.querySelector(".banner-close").addEventListener("click", () => {
    banner.hidden = true;
    try {
      localStorage.setItem(BANNER_KEY, "1");
    } catch {
      // nothing to keep it in
    }
  });
}
