// The live stream (GET /v1/stream, server-sent events): a snapshot, then one event per machine change. The browser's
// EventSource reconnects by itself and sends Last-Event-ID, so the server replays what was missed (or sends a new
// snapshot); this module keeps the machines by id and reports the connection state. Only when the browser gives up
// (the server answered an error, not a dropped connection) does it open a new stream, after asking /v1/me whether
// the session still holds (api.js sends a signed-out viewer to /signin).
import { getJson } from "./api.js";

const RETRY_MS = [2000, 5000, 10000, 30000];

/**
 * Open the stream. onMachines(map, changedId|null) runs after a snapshot (changedId null) or a change;
 * onStatus("connecting" | "live" | "reconnecting") on every connection change.
 */
export function openStream(onMachines, onStatus) {
  const machines = new Map();
  let failures = 0;

  function connect() {
    const source = new EventSource("/v1/stream", { withCredentials: true });
    source.addEventListener("open", () => {
      failures = 0;
      onStatus("live");
    });
    source.addEventListener("error", () => {
      onStatus("reconnecting");
      if (source.readyState !== EventSource.CLOSED) return; // the browser retries by itself
      const wait = RETRY_MS[Math.min(failures, RETRY_MS.length - 1)];
      failures += 1;
      window.setTimeout(() => {
        getJson("/v1/me").then(connect, connect);
      }, wait);
    });
    source.addEventListener("snapshot", (event) => {
      const data = JSON.parse(event.data);
      machines.clear();
      for (const m of data.machines || []) if (m && typeof m.id === "string") machines.set(m.id, m);
      onStatus("live");
      onMachines(machines, null);
    });
    source.addEventListener("machine", (event) => {
      const m = JSON.parse(event.data);
      if (!m || typeof m.id !== "string") return;
      machines.set(m.id, m);
      onMachines(machines, m.id);
    });
  }

  onStatus("connecting");
  connect();
}
