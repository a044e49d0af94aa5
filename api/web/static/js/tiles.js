// How one machine of the live stream reads on screen: state text (never colour alone), occupant, why UNKNOWN.
import { boot, zone } from "./boot.js";
import { has, lang, t } from "./i18n.js";
import * as fmt from "./fmt.js";

export const STATE_CLASSES = ["RUNNING", "IDLE", "SETUP", "STOPPED", "MAINTENANCE", "OFF", "UNKNOWN"];

/** Return the CSS class of a state ("hidden": another tenant's, not the viewer's to see). */
export function stateClass(state) {
  if (state === null || state === undefined) return "state-hidden";
  return STATE_CLASSES.includes(state) ? `state-${state.toLowerCase()}` : "state-other";
}

/** Return the label of a state; null (hidden) reads "Occupied". */
export function stateText(state) {
  if (state === null || state === undefined) return t("web_occupied");
  const key = `state_${state.toLowerCase()}`;
  return has(key) ? t(key) : state;
}

/** Return why a machine is UNKNOWN, in words (PLC unreachable, agent offline, silent, no data). */
export function reasonText(reason) {
  const key = { stale: "silence", "agent-offline": "agent_offline", "no-data": "no_data", "outbox-loss": "outbox_loss" }[
    reason
  ] || reason;
  return reason && has(`web_reason_${key}`) ? t(`web_reason_${key}`) : reason ? String(reason) : "";
}

/** Return a tenant id's display name (the boot's directory names, else the id). */
export function tenantName(id) {
  const names = boot.tenants || {};
  return id in names && names[id] ? names[id] : id;
}

/** Return who is at the machine: tenant, an unowned badge, "Occupied" (hidden) or "Free". */
export function occupantText(m) {
  if (!m.occupied) return t("web_free");
  if (m.tenant) return tenantName(m.tenant);
  if (m.unowned && m.badge !== null && m.badge !== undefined) return t("web_unowned_badge", { badge: m.badge });
  return t("web_occupied");
}

/** Return the epoch ms of m.last_seen (ISO 8601), or null. */
export function lastSeenMs(m) {
  if (!m.last_seen) return null;
  const v = Date.parse(m.last_seen);
  return Number.isNaN(v) ? null : v;
}

/** Return "no data since hh:mm" (or since a date, if not today) and the reason, for an UNKNOWN machine. */
export function noDataText(m, nowMs) {
  const seen = lastSeenMs(m);
  const since = seen === null ? t("web_no_data_ever") : t("web_no_data_since", {
    time: fmt.whenShort(seen, nowMs, zone, lang()),
  });
  const why = reasonText(m.reason || (m.link === "unreachable" ? "unreachable" : m.link === "stale" ? "stale" : null));
  return why ? `${since}: ${why}` : since;
}

/** Return how long ago a number of seconds is: "12 s ago", "5 min ago", "3 h ago". */
export function agoText(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 120) return t("web_ago_s", { n: fmt.integer(s, lang()) });
  if (s < 7200) return t("web_ago_min", { n: fmt.integer(Math.floor(s / 60), lang()) });
  return t("web_ago_h", { n: fmt.integer(Math.floor(s / 3600), lang()) });
}

/** Return a stop reason's name from the profile's table ({code: name}), else "Reason N". */
export function stopReasonText(code, names) {
  if (code === null || code === undefined || code === 0) return t("web_none");
  const name = names && names[String(code)];
  return name ? `${name} (${code})` : t("web_stop_reason_code", { code });
}
