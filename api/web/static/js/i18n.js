// Labels in the viewer's language, and the language switch (POST /v1/me/lang, then re-render without a reload).
import { boot } from "./boot.js";
import { postJson } from "./api.js";

let current = boot.lang;
const listeners = [];

/** Return the current language ("en" or "id"). */
export function lang() {
  return current;
}

/** Return the label key in the current language, placeholders {name} filled from vars. */
export function t(key, vars = {}) {
  const table = boot.labels[current] || {};
  const text = table[key];
  if (text === undefined) {
    console.warn(`label ${key} not in this page's boot labels`);
    return key;
  }
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
}

/** Return whether the page has a label for key. */
export function has(key) {
  return key in (boot.labels[current] || {});
}

/** Call fn after every language change (pages re-render their dynamic parts). */
export function onLangChange(fn) {
  listeners.push(fn);
}

/** Re-render every element carrying data-label (text) or data-label-aria (aria-label) in the current language. */
export function applyLabels(root = document) {
  // Placeholders are filled from the element's other data- attributes (data-name for {name}).
  for (const el of root.querySelectorAll("[data-label]")) el.textContent = t(el.dataset.label, el.dataset);
  for (const el of root.querySelectorAll("[data-label-aria]")) el.setAttribute("aria-label", t(el.dataset.labelAria));
  document.documentElement.lang = current;
}

/** Store the language on the server (remembered per user), then re-render labels and figures in it. */
export async function setLang(next) {
  if (!(next in boot.labels) || next === current) return;
  await postJson("/v1/me/lang", { lang: next });
  current = next;
  applyLabels();
  for (const fn of listeners) fn(current);
}
