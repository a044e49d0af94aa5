// What every page shares: the language switch, the large-type (kiosk) toggle, error and status lines.
import { boot } from "./boot.js";
import { applyLabels, lang, onLangChange, setLang, t } from "./i18n.js";

const KIOSK_KEY = "sf-kiosk";

function setKiosk(on) {
  document.body.classList.toggle("kiosk", on);
  const button = document.getElementById("kiosk-toggle");
  if (button) button.setAttribute("aria-pressed", on ? "true" : "false");
  try {
    window.localStorage.setItem(KIOSK_KEY, on ? "1" : "0");
  } catch {
    // storage refused (private mode): the toggle still works for this page
  }
}

function langButton() {
  const button = document.getElementById("lang-switch");
  if (!button || button.tagName !== "BUTTON") return; // signed out: a plain link to ?lang=
  const other = lang() === "en" ? "id" : "en";
  // The button names the language it switches to, in that language.
  button.textContent = boot.labels[other].web_lang_name;
  button.setAttribute("lang", other);
  button.dataset.to = other;
}

/** Wire the page chrome; call once from each page module. */
export function initShell() {
  const params = new URLSearchParams(window.location.search);
  let kiosk = params.get("kiosk") === "1";
  if (!params.has("kiosk")) {
    try {
      kiosk = window.localStorage.getItem(KIOSK_KEY) === "1";
    } catch {
      kiosk = false;
    }
  }
  setKiosk(kiosk);
  const kioskButton = document.getElementById("kiosk-toggle");
  if (kioskButton) kioskButton.addEventListener("click", () => setKiosk(!document.body.classList.contains("kiosk")));
  const button = document.getElementById("lang-switch");
  if (button && button.tagName === "BUTTON") {
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await setLang(button.dataset.to);
      } catch (err) {
        showError(err);
      } finally {
        button.disabled = false;
      }
    });
  }
  onLangChange(langButton);
  applyLabels();
  langButton();
}

/** Show an error in the page's alert line (role=alert, so screen readers hear it). */
export function showError(err) {
  const el = document.getElementById("page-error");
  if (!el) return;
  el.hidden = false;
  el.textContent = t("web_load_error", { detail: err && err.detail ? err.detail : String(err) });
}

/** Clear the page's alert line. */
export function clearError() {
  const el = document.getElementById("page-error");
  if (el) {
    el.hidden = true;
    el.textContent = "";
  }
}

/** Create an element with attributes and children (strings become text nodes: never HTML). */
export function h(tag, attrs = {}, ...children) {
  const svg = ["svg", "rect", "g", "text", "title", "line"].includes(tag);
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.setAttribute("class", v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
