// The fleet board: one tile per machine, filled from the live stream (no polling); ages tick locally.
import { lang, onLangChange, t } from "./i18n.js";
import * as fmt from "./fmt.js";
import { initShell } from "./shell.js";
import { openStream } from "./stream.js";
import { agoText, noDataText, occupantText, stateClass, stateText } from "./tiles.js";

const received = new Map(); // machine id -> Date.now() when its data arrived (age_s is as of then)
let machines = new Map();

function tileOf(id) {
  let tile = document.querySelector(`[data-testid="tile-${CSS.escape(id)}"]`);
  if (!tile) {
    // A machine the page was not rendered with (the site changed): add a tile of the same shape.
    const template = document.getElementById("tile-template");
    tile = template.content.firstElementChild.cloneNode(true);
    tile.dataset.testid = `tile-${id}`;
    tile.setAttribute("data-testid", `tile-${id}`);
    tile.dataset.machine = id;
    const link = tile.querySelector("[data-field=name]");
    link.textContent = id;
    link.setAttribute("href", `/machines/${encodeURIComponent(id)}`);
    document.getElementById("board").append(tile);
  }
  return tile;
}

function set(tile, field, text) {
  const el = tile.querySelector(`[data-field=${field}]`);
  if (el && el.textContent !== text) el.textContent = text;
}

function ageOf(m) {
  if (m.age_s === null || m.age_s === undefined) return null;
  return m.age_s + (Date.now() - (received.get(m.id) || Date.now())) / 1000;
}

function render(m) {
  const tile = tileOf(m.id);
  const unknown = m.state === "UNKNOWN";
  for (const c of [...tile.classList]) if (c.startsWith("state-")) tile.classList.remove(c);
  tile.classList.add(stateClass(m.state));
  tile.dataset.state = m.state === null || m.state === undefined ? "HIDDEN" : m.state;
  set(tile, "state", stateText(m.state));
  const nodata = tile.querySelector("[data-field=nodata]");
  nodata.hidden = !unknown;
  nodata.textContent = unknown ? noDataText(m, Date.now()) : "";
  set(tile, "tenant", occupantText(m));
  set(tile, "job", m.job || "-");
  const na = t("not_available");
  const shift = m.shift;
  set(tile, "parts", shift ? `${fmt.integer(shift.good, lang())} ${t("good")} / ${fmt.integer(shift.reject, lang())} ${t("reject")}` : na);
  set(tile, "oee", shift ? fmt.ratio(shift.oee, lang(), na) : na);
  set(tile, "shift", shift && shift.name ? shift.name : na);
  set(tile, "power", m.power_kw === null || m.power_kw === undefined ? na : fmt.kw(m.power_kw, lang()));
  const age = ageOf(m);
  set(tile, "age", age === null ? na : agoText(age));
}

function renderAll() {
  for (const m of machines.values()) render(m);
}

function status(state) {
  const el = document.getElementById("conn-status");
  el.dataset.state = state;
  el.textContent = t({ connecting: "web_connecting", live: "web_live", reconnecting: "web_reconnecting" }[state]);
  document.body.classList.toggle("offline", state === "reconnecting");
}

initShell();
onLangChange(renderAll);
openStream((all, changed) => {
  machines = all;
  const now = Date.now();
  if (changed === null) {
    for (const id of all.keys()) received.set(id, now);
    renderAll();
  } else {
    received.set(changed, now);
    render(all.get(changed));
  }
}, status);
// Only the "x s ago" texts tick here; data arrives by the stream alone.
window.setInterval(() => {
  for (const m of machines.values()) {
    const tile = tileOf(m.id);
    const age = ageOf(m);
    set(tile, "age", age === null ? t("not_available") : agoText(age));
  }
}, 1000);
