// Talking to the server: the access token (kept per origin, sent as a header), signed links, CSRF,
// and one queue that sends every change strictly in order.
export const stats = { saves: [], pending: 0, errors: 0 };  // saves: keypress-to-saved milliseconds
window.ghostsReview = stats;

const KEY = "ghosts_token";
let TOKEN = null;
let CSRF = document.body.dataset.csrf;

// The printed URL carries ?token= once: keep it in sessionStorage (per origin, port included, unlike a
// cookie) and take it out of the address bar and history.
(function takeToken() {
  const url = new URL(location.href);
  const given = url.searchParams.get("token");
  if (given) {
    sessionStorage.setItem(KEY, given);
    url.searchParams.delete("token");
    history.replaceState(history.state, "", url.pathname + url.search + url.hash);
  }
  TOKEN = sessionStorage.getItem(KEY);
})();

function headers(extra = {}) {
  const h = { accept: "application/json", ...extra };
  if (TOKEN) h.authorization = `Bearer ${TOKEN}`;
  return h;
}

export async function getJSON(url) {
  const res = await fetch(url, { credentials: "same-origin", headers: headers() });
  if (!res.ok) {
    const err = new Error(await reason(res));
    err.status = res.status;
    throw err;
  }
  return res.json();
}

export async function getText(url) {
  const res = await fetch(url, { credentials: "same-origin", headers: headers({ accept: "text/html" }) });
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  return res.text();
}

async function reason(res) {
  try {
    const j = await res.json();
    return typeof j.detail === "string" ? j.detail : JSON.stringify(j.detail);
  } catch (e) {
    return `HTTP ${res.status}`;
  }
}

export async function post(url, data, retried = false) {
  const res = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: headers({ "content-type": "application/json", "x-csrf-token": CSRF }),
    body: JSON.stringify(data === undefined ? {} : data),
  });
  if (res.status === 403 && !retried) {
    // The server restarted (new CSRF secret) since this page loaded: fetch a fresh token, try once more.
    let fresh = null;
    try { fresh = (await getJSON("/api/csrf")).csrf; } catch (e) { /* report the 403 below */ }
    if (fresh && fresh !== CSRF) { CSRF = fresh; return post(url, data, true); }
  }
  if (!res.ok) {
    const err = new Error(await reason(res));
    err.status = res.status;
    throw err;
  }
  return res;
}

// ---- server calls, strictly in order ---------------------------------------------------------------
let chain = Promise.resolve();
export function enqueue(job) {
  stats.pending += 1;
  const run = chain.then(job).finally(() => { stats.pending -= 1; });
  chain = run.catch(() => {});
  return run;
}
export const settled = () => chain;

// A local link, signed afresh when the page holds a token (signatures in the page expire).
export async function signed(url) {
  if (!TOKEN || !url.startsWith("/") || url.startsWith("//")) return url;
  try {
    return (await getJSON(`/api/sign?url=${encodeURIComponent(url)}`)).url;
  } catch (e) {
    return url;
  }
}

// Leave the page only once every decision typed so far is saved. null: reload.
export function navigate(url) {
  chain.then(async () => {
    const target = url === null ? location.pathname + location.search : url;
    location.href = await signed(target);
  });
}

window.addEventListener("beforeunload", (e) => {
  if (stats.pending > 0) { e.preventDefault(); e.returnValue = ""; }  // a decision is still on its way
});

// Plain links and the filter forms go through navigate(), so they are saved-first and signed.
document.addEventListener("click", (e) => {
  if (e.defaultPrevented || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey) return;
  const a = e.target.closest("a[href]");
  if (!a || a.target || a.dataset.action) return;
  const href = a.getAttribute("href");
  if (!href.startsWith("/") || href.startsWith("//")) return;
  e.preventDefault();
  navigate(href);
});
document.addEventListener("submit", (e) => {
  const form = e.target;
  if (!form.matches("form.filters")) return;
  e.preventDefault();
  const params = new URLSearchParams();
  for (const [k, v] of new FormData(form)) if (v !== "" && k !== "exp" && k !== "sig") params.append(k, v);
  const qs = params.toString();
  navigate(form.getAttribute("action") + (qs ? `?${qs}` : ""));
});
