// Locale formats mirroring api/core/i18n.py exactly (a test runs this module in node against the Python).
// Figures are formatted from integers (ms, Wh, basis points, rupiah) with BigInt arithmetic, rounding half away
// from zero, so a figure on screen is the one on the invoice. Times are shown in the site's zone (IANA name).

const SEPARATORS = { en: [",", "."], id: [".", ","] }; // [thousands, decimal]
const MONTHS_FULL = {
  en: ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
    "November", "December"],
  id: ["Januari", "Februari", "Maret", "April", "Mei", "Juni", "Juli", "Agustus", "September", "Oktober",
    "November", "Desember"],
};
const MONTHS_SHORT = {
  en: ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"],
  id: ["Jan", "Feb", "Mar", "Apr", "Mei", "Jun", "Jul", "Agu", "Sep", "Okt", "Nov", "Des"],
};
const UNIT_HOUR = { en: "h", id: "jam" };
export const MS_PER_HOUR = 3600000;

function checkLang(lang) {
  if (!(lang in SEPARATORS)) throw new Error(`language ${lang} not supported (en, id)`);
  return lang;
}

function big(n, name) {
  if (typeof n === "bigint") return n;
  if (!Number.isSafeInteger(n)) throw new TypeError(`${name} must be an integer, got ${n}`);
  return BigInt(n);
}

/** Format an integer with the language's thousands separator: en "1,234,567", id "1.234.567". */
export function integer(n, lang) {
  const v = big(n, "n");
  const sep = SEPARATORS[checkLang(lang)][0];
  const digits = (v < 0n ? -v : v).toString();
  const groups = [];
  for (let i = digits.length; i > 0; i -= 3) groups.unshift(digits.slice(Math.max(0, i - 3), i));
  return (v < 0n ? "-" : "") + groups.join(sep);
}

/** Format numerator / denominator rounded half away from zero to places, trailing zeros trimmed. */
export function decimal(numerator, denominator, lang, places = 2) {
  const num = big(numerator, "numerator");
  const den = big(denominator, "denominator");
  if (den <= 0n) throw new RangeError(`denominator must be positive, got ${den}`);
  if (!Number.isInteger(places) || places < 0 || places > 6) throw new RangeError(`places must be 0..6`);
  const scale = 10n ** BigInt(places);
  const abs = num < 0n ? -num : num;
  let q = (abs * scale) / den;
  const r = (abs * scale) % den;
  if (2n * r >= den) q += 1n;
  const whole = q / scale;
  const frac = q % scale;
  let text = integer(whole, lang);
  const digits = places ? frac.toString().padStart(places, "0").replace(/0+$/, "") : "";
  if (digits) text += SEPARATORS[lang][1] + digits;
  return (num < 0n && q ? "-" : "") + text;
}

/** Format whole rupiah: en "Rp 1,234,567", id "Rp 1.234.567", negatives "-Rp 1.234.567". */
export function rupiah(amount, lang) {
  const v = big(amount, "amount");
  return (v < 0n ? "-" : "") + "Rp " + integer(v < 0n ? -v : v, lang);
}

/** Format a duration given in ms as hours: en "1.5 h", id "1,5 jam". */
export function hours(ms, lang, places = 2) {
  return `${decimal(ms, MS_PER_HOUR, lang, places)} ${UNIT_HOUR[checkLang(lang)]}`;
}

/** Format energy given in Wh as kWh: en "1,234.5 kWh", id "1.234,5 kWh". */
export function kwh(wh, lang, places = 3) {
  return `${decimal(wh, 1000, lang, places)} kWh`;
}

/** Format basis points as a percentage without a space: 1100 -> "11%", 8533 -> en "85.33%", id "85,33%". */
export function percentBp(bp, lang) {
  return decimal(bp, 100, lang, 2) + "%";
}

// -- figures the JSON gives as floats: converted to the integers the formats take, once, here ----------------------

/** Format a ratio (0.8533) as a percentage, or null as the n/a text given. */
export function ratio(value, lang, na) {
  return value === null || value === undefined ? na : percentBp(Math.round(value * 10000), lang);
}

/** Format hours given as a float (the JSON's session_hours) like hours(). */
export function hoursFloat(h, lang, places = 2) {
  return hours(Math.round(h * MS_PER_HOUR), lang, places);
}

/** Format kWh given as a float (the JSON's kwh) like kwh(). */
export function kwhFloat(value, lang, places = 3) {
  return kwh(Math.round(value * 1000), lang, places);
}

/** Format kW given as a float: "12.5 kW" (one decimal). */
export function kw(value, lang) {
  return `${decimal(Math.round(value * 10), 10, lang, 1)} kW`;
}

// -- dates and times in the site's zone ------------------------------------------------------------------------------

const partsCache = new Map();

/** Return the wall-clock fields of epoch ms in zone: {year, month (1-12), day, hour, minute, second}. */
export function localParts(ms, zone) {
  let f = partsCache.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat("en-GB", {
      timeZone: zone, year: "numeric", month: "numeric", day: "numeric",
      hour: "numeric", minute: "numeric", second: "numeric", hourCycle: "h23",
    });
    partsCache.set(zone, f);
  }
  const out = {};
  for (const p of f.formatToParts(new Date(ms))) {
    if (p.type !== "literal") out[p.type] = Number(p.value);
  }
  return { year: out.year, month: out.month, day: out.day, hour: out.hour % 24, minute: out.minute,
    second: out.second };
}

const pad = (n) => String(n).padStart(2, "0");

/** Format the local date of ms: en "1 Nov 2026", id "1 November 2026". */
export function date(ms, zone, lang) {
  const t = localParts(ms, zone);
  const months = checkLang(lang) === "en" ? MONTHS_SHORT.en : MONTHS_FULL.id;
  return `${t.day} ${months[t.month - 1]} ${t.year}`;
}

/** Format the local time of ms: "08:30". */
export function time(ms, zone) {
  const t = localParts(ms, zone);
  return `${pad(t.hour)}:${pad(t.minute)}`;
}

/** Format the local date and time of ms: "1 Nov 2026 08:30" (id months: "1 Agu 2026 08:30"). */
export function datetime_(ms, zone, lang) {
  const t = localParts(ms, zone);
  return `${t.day} ${MONTHS_SHORT[checkLang(lang)][t.month - 1]} ${t.year} ${pad(t.hour)}:${pad(t.minute)}`;
}

/** Format a time range: "1 Nov 2026 08:30-12:00" within a local day, else both ends in full. */
export function span(startMs, endMs, zone, lang) {
  const a = localParts(startMs, zone);
  const b = localParts(endMs, zone);
  if (a.year === b.year && a.month === b.month && a.day === b.day) {
    return `${datetime_(startMs, zone, lang)}-${pad(b.hour)}:${pad(b.minute)}`;
  }
  return `${datetime_(startMs, zone, lang)} - ${datetime_(endMs, zone, lang)}`;
}

/** Format a billing period "YYYY-MM" as "November 2026" (id "Agustus 2026"). */
export function period(value, lang) {
  const m = /^(\d{4})-(0[1-9]|1[0-2])$/.exec(value);
  if (!m) throw new RangeError(`period ${value} is not YYYY-MM`);
  return `${MONTHS_FULL[checkLang(lang)][Number(m[2]) - 1]} ${m[1]}`;
}

/** Format "HH:MM" when ms is on today's local date (of nowMs), else the date and time. */
export function whenShort(ms, nowMs, zone, lang) {
  const a = localParts(ms, zone);
  const b = localParts(nowMs, zone);
  return a.year === b.year && a.month === b.month && a.day === b.day ? time(ms, zone) : datetime_(ms, zone, lang);
}

/** Return the epoch ms of a local wall time in zone (a skipped wall time: the instant the clock jumps). */
export function zonedToMs(year, month, day, hour, minute, zone) {
  const wanted = Date.UTC(year, month - 1, day, hour, minute);
  let guess = wanted;
  // Two corrections settle any offset, including on DST days.
  for (let i = 0; i < 2; i += 1) {
    const t = localParts(guess, zone);
    const seen = Date.UTC(t.year, t.month - 1, t.day, t.hour, t.minute);
    guess += wanted - seen;
  }
  return guess;
}

/** Return the local date of ms in zone as "YYYY-MM-DD" (the value of an <input type=date>). */
export function isoDate(ms, zone) {
  const t = localParts(ms, zone);
  return `${t.year}-${pad(t.month)}-${pad(t.day)}`;
}

/** Return the epoch ms of local midnight starting the date "YYYY-MM-DD" in zone. */
export function dayStartMs(iso, zone) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(iso);
  if (!m) throw new RangeError(`date ${iso} is not YYYY-MM-DD`);
  return zonedToMs(Number(m[1]), Number(m[2]), Number(m[3]), 0, 0, zone);
}

/** Return the ISO date one day after "YYYY-MM-DD" (calendar arithmetic, no zone). */
export function nextDay(iso) {
  const d = new Date(`${iso}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + 1);
  return d.toISOString().slice(0, 10);
}
