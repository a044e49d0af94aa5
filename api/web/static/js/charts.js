// SVG charts drawn from data (no library): a state strip chart and horizontal bar charts. Every mark has a text
// equivalent (a <title> and a table or value text), so colour is never the only carrier of meaning.
import { zone } from "./boot.js";
import * as fmt from "./fmt.js";
import { lang, t } from "./i18n.js";
import { h } from "./shell.js";
import { stateClass, stateText } from "./tiles.js";

/** Draw intervals [{startMs, endMs, state, reason}] over [fromMs, toMs] as a strip chart with hour ticks. */
export function stripChart(intervals, fromMs, toMs, title) {
  const width = 1000;
  const height = 64;
  const band = 40;
  const span = Math.max(1, toMs - fromMs);
  const x = (ms) => ((Math.min(Math.max(ms, fromMs), toMs) - fromMs) / span) * width;
  const svg = h("svg", {
    viewBox: `0 0 ${width} ${height}`, class: "strip", role: "img", "aria-label": title,
    preserveAspectRatio: "none", "data-testid": "timeline-chart",
  });
  svg.append(h("title", { text: title }));
  for (const iv of intervals) {
    const x0 = x(iv.startMs);
    const w = Math.max(0.5, x(iv.endMs) - x0);
    const rect = h("rect", { x: x0.toFixed(2), y: 0, width: w.toFixed(2), height: band, class: `mark ${stateClass(iv.state)}` });
    rect.append(h("title", { text: `${stateText(iv.state)}: ${fmt.span(iv.startMs, iv.endMs, zone, lang())}` }));
    svg.append(rect);
  }
  const hourMs = 3600000;
  const step = span > 12 * hourMs ? 3 * hourMs : hourMs;
  for (let ms = Math.ceil(fromMs / step) * step; ms <= toMs; ms += step) {
    const px = x(ms);
    svg.append(h("line", { x1: px, x2: px, y1: band, y2: band + 6, class: "tick" }));
    svg.append(h("text", { x: px, y: height - 4, class: "tick-label", "text-anchor": "middle", text: fmt.time(ms, zone) }));
  }
  return svg;
}

/** Draw bars [{label, value (0..1 or null), text}] as a horizontal bar chart; null values show "n/a". */
export function barChart(rows, title) {
  const rowH = 34;
  const labelW = 260;
  const barW = 560;
  const width = labelW + barW + 150;
  const height = Math.max(1, rows.length) * rowH + 8;
  const svg = h("svg", {
    viewBox: `0 0 ${width} ${height}`, class: "bars", role: "img",
    "aria-label": t("web_chart_label", { title }),
  });
  svg.append(h("title", { text: t("web_chart_label", { title }) }));
  const max = Math.max(1, ...rows.map((r) => (r.value === null || r.value === undefined ? 0 : r.value)));
  rows.forEach((r, i) => {
    const y = i * rowH + 4;
    svg.append(h("text", { x: labelW - 10, y: y + rowH / 2 + 6, "text-anchor": "end", class: "bar-label", text: r.label }));
    const w = r.value === null || r.value === undefined ? 0 : (r.value / max) * barW;
    const rect = h("rect", { x: labelW, y: y + 4, width: Math.max(0, w).toFixed(2), height: rowH - 10, class: "bar" });
    rect.append(h("title", { text: `${r.label}: ${r.text}` }));
    svg.append(rect);
    svg.append(h("text", { x: labelW + w + 8, y: y + rowH / 2 + 6, class: "bar-value", text: r.text }));
  });
  return svg;
}

/** Build a table: headers [label keys or texts], rows [[cells]]; numeric columns (indexes) align right. */
export function table(headers, rows, { numeric = [], testid = null, caption = null } = {}) {
  const head = h("tr", {}, headers.map((text, i) => h("th", { scope: "col", class: numeric.includes(i) ? "num" : null }, text)));
  const body = rows.map((cells) => h("tr", {}, cells.map((c, i) => h(i === 0 ? "th" : "td", {
    scope: i === 0 ? "row" : null, class: numeric.includes(i) ? "num" : null,
  }, c))));
  return h("div", { class: "table-wrap" }, h("table", { "data-testid": testid },
    caption ? h("caption", { class: "sr-only" }, caption) : null,
    h("thead", {}, head), h("tbody", {}, body)));
}

/** Return a paragraph saying there is nothing to show. */
export function empty() {
  return h("p", { class: "muted" }, t("web_none"));
}
