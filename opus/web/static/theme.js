/*
 * theme.js: light or dark pages (Bootstrap 5.3's data-bs-theme on <html>).  Loaded without defer in
 * <head>, so the page is drawn in its theme at once.  The choice ("light", "dark" or "auto": the
 * system's prefers-color-scheme) is remembered in localStorage under "opus-theme"; the navigation
 * bar's button (#theme-toggle) cycles through the three.
 */
(function () {
  "use strict";
  const KEY = "opus-theme";
  const CHOICES = ["auto", "light", "dark"];
  const LABEL = {auto: "Theme: as the system", light: "Theme: light", dark: "Theme: dark"};
  const ICON = {auto: "\u25D0", light: "\u2600", dark: "\u263E"};
  const dark = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;

  let current = "auto";  // the choice when localStorage is refused (private mode): this page only
  function stored() {
    try { const v = localStorage.getItem(KEY); current = CHOICES.includes(v) ? v : current; } catch (_) { /* keep */ }
    return current;
  }
  const effective = (choice) => (choice === "auto" ? (dark && dark.matches ? "dark" : "light") : choice);

  function apply(choice) {
    document.documentElement.setAttribute("data-bs-theme", effective(choice));
    document.documentElement.dataset.themeChoice = choice;
    const button = document.getElementById("theme-toggle");
    if (button) {
      button.setAttribute("aria-label", LABEL[choice] + " (change)");
      button.title = LABEL[choice];
      button.querySelector(".theme-icon").textContent = ICON[choice];
      button.dataset.choice = choice;
    }
  }

  apply(stored());
  if (dark && dark.addEventListener) dark.addEventListener("change", () => apply(stored()));
  window.addEventListener("storage", (e) => { if (e.key === KEY) apply(stored()); });  // other tabs
  document.addEventListener("DOMContentLoaded", () => {
    apply(stored());
    const button = document.getElementById("theme-toggle");
    if (!button) return;
    button.addEventListener("click", () => {
      const next = CHOICES[(CHOICES.indexOf(stored()) + 1) % CHOICES.length];
      current = next;
      try { localStorage.setItem(KEY, next); } catch (_) { /* private mode: this page only */ }
      apply(next);
    });
  });
})();
