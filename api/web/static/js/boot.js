// The page's boot data: JSON the server put in <script type="application/json" id="boot"> (data, not code, so the
// Content-Security-Policy allows no inline script at all).

function read() {
  const el = document.getElementById("boot");
  if (!el) throw new Error("page has no #boot data");
  return JSON.parse(el.textContent);
}

/** {page, lang, labels: {en: {...}, id: {...}}, me, site: {id, name, timezone}, csrf, ...page-specific fields} */
export const boot = read();
export const zone = boot.site.timezone;
