// The console's core: the key (sessionStorage, this tab only), calls to the public API,
// problem+json in words, building the page without innerHTML, the confirmation dialog and
// hash routing. The pages are in pages.js.
"use strict";

const C = (() => {
  const KEY = "loyalty.apiKey";
  const routes = [];

  function apiKey() {
    return sessionStorage.getItem(KEY) || "";
  }

  class ApiError extends Error {
    constructor(status, problem) {
      super((problem && (problem.detail || problem.title)) || "HTTP " + status);
      this.status = status;
      this.problem = problem || {};
    }
  }

  // One call to the public API. The key goes in X-API-KEY, never in a URL.
  async function api(method, path, opts = {}) {
    const headers = { "X-API-KEY": apiKey(), Accept: "application/json" };
    if (opts.idem) headers["Idempotency-Key"] = opts.idem;
    let body;
    if (opts.body !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(opts.body);
    }
    let url = path;
    if (opts.query) {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(opts.query)) {
        if (v !== undefined && v !== null && v !== "") q.set(k, v);
      }
      const s = q.toString();
      if (s) url += "?" + s;
    }
    let res;
    try {
      res = await fetch(url, { method, headers, body, credentials: "omit", cache: "no-store" });
    } catch (e) {
      throw new ApiError(0, { title: "The service could not be reached", detail: String(e.message || e) });
    }
    const text = await res.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (_) { data = text; }
    }
    if (!res.ok) throw new ApiError(res.status, typeof data === "object" ? data : { title: "HTTP " + res.status, detail: text });
    return { status: res.status, body: data, headers: res.headers };
  }

  // Builds an element: h("p", {class: "x"}, "text", child…). Text is always text.
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "class") el.className = v;
      else el.setAttribute(k, v === true ? "" : v);
    }
    append(el, children);
    return el;
  }
  function append(el, children) {
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  const SVGNS = "http://www.w3.org/2000/svg";
  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
    for (const c of children.flat()) {
      if (c === undefined || c === null) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  // A problem+json in words: title, detail, code, and every field error.
  function problemView(err) {
    const p = (err && err.problem) || {};
    const errors = Array.isArray(p.errors) ? p.errors : [];
    // A detail that only repeats the one field error is not shown twice.
    const repeats = errors.length === 1 && String(p.detail || "").includes(errors[0].message || "\u0000");
    const box = h("div", { class: "problem", role: "alert" },
      h("strong", {}, p.title || "Request failed", err.status ? " (" + err.status + (p.code ? " " + p.code : "") + ")" : ""),
      p.detail && !repeats ? h("p", {}, p.detail) : null);
    if (errors.length) {
      box.append(h("ul", {}, errors.map((e) => h("li", {}, h("code", {}, e.field || "body"), ": ", e.message || ""))));
    }
    if (Array.isArray(p.mismatchedFields)) box.append(h("p", {}, "Fields that differ: " + p.mismatchedFields.join(", ")));
    if (p.retryable) box.append(h("p", {}, "This may succeed if tried again."));
    return box;
  }

  // A 404 of the route itself (this server has no such endpoint), not of what it names.
  function missingRoute(e) {
    return e.status === 405 || (e.status === 404 && /^resource\b/.test((e.problem && e.problem.detail) || ""));
  }

  function fmtTime(t) {
    if (!t) return "—";
    const d = new Date(t);
    return isNaN(d) ? t : d.toISOString().replace("T", " ").replace(/\.\d+Z$|Z$/, " UTC");
  }

  function table(columns, rows, opts = {}) {
    if (!rows.length) return h("p", { class: "empty" }, opts.empty || "None.");
    return h("div", { class: "table-wrap" },
      h("table", {},
        opts.caption ? h("caption", {}, opts.caption) : null,
        h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label)))),
        h("tbody", {}, rows.map((r) => {
          const tr = h("tr", { class: opts.rowClass ? opts.rowClass(r) : null },
            columns.map((c) => h("td", { class: c.num ? "num" : null, "data-label": c.label }, c.value(r))));
          return tr;
        }))));
  }

  // A paged list: renders the first page into `slot`, and a "More" button for the next ones.
  async function paged(slot, load, render) {
    slot.replaceChildren(h("p", { class: "loading" }, "Loading…"));
    let items = [];
    const more = async (cursor) => {
      try {
        const page = await load(cursor);
        items = items.concat(page.items || []);
        slot.replaceChildren(render(items));
        if (page.nextCursor) {
          slot.append(h("button", { type: "button", class: "secondary more", onclick: () => more(page.nextCursor) }, "More"));
        }
      } catch (e) {
        slot.replaceChildren(missingRoute(e) ? h("p", { class: "empty" }, "Not available on this server.") : problemView(e));
      }
    };
    await more(null);
  }

  // The confirmation step of an action: what it does, the key that makes it exactly-once
  // (made here, shown before and after), then the answer. A failure leaves the dialog open
  // with the same key, so trying again can never do the action twice.
  function confirmAction({ title, body, key, keyNote, run, done, danger, typed }) {
    const dlg = document.getElementById("confirm");
    const go = document.getElementById("confirm-go");
    const cancel = document.getElementById("confirm-cancel");
    const result = document.getElementById("confirm-result");
    document.getElementById("confirm-title").textContent = title;
    const bodyEl = document.getElementById("confirm-body");
    bodyEl.replaceChildren(...[].concat(body || []).map((b) => (b instanceof Node ? b : h("p", {}, b))));
    let typedInput = null;
    if (typed) {
      typedInput = h("input", { id: "confirm-typed", autocomplete: "off", spellcheck: "false" });
      bodyEl.append(h("label", { for: "confirm-typed" }, "Type ", h("code", {}, typed), " to confirm"), typedInput);
    }
    document.getElementById("confirm-key").textContent = key + (keyNote ? " (" + keyNote + ")" : "");
    result.replaceChildren();
    go.textContent = "Confirm";
    go.className = danger ? "danger" : "";
    go.disabled = !!typed;
    if (typedInput) typedInput.oninput = () => { go.disabled = typedInput.value !== typed; };
    cancel.textContent = "Cancel";
    let finished = false;
    go.onclick = async () => {
      go.disabled = true;
      result.replaceChildren(h("p", {}, "Working…"));
      try {
        const r = await run(key);
        finished = true;
        const replay = r && r.headers && r.headers.get("Idempotent-Replayed") === "true";
        result.replaceChildren();
        append(result, [h("p", { class: "ok" }, "Done (" + r.status + (replay ? ", replayed: it had been done before" : "") + ")."),
          r.body && r.body.idempotencyKey ? h("p", {}, "Recorded under key ", h("code", {}, r.body.idempotencyKey)) : null,
          done ? done(r) : null]);
        go.hidden = true;
        cancel.textContent = "Close";
        cancel.focus();
      } catch (e) {
        // Unknown outcome (no answer, 5xx) or a refusal that may pass later: the same key
        // again can never do it twice. A definite refusal: nothing was done.
        const again = e.status === 0 || e.status >= 500 || (e.problem && e.problem.retryable);
        result.replaceChildren(problemView(e), h("p", {}, again
          ? "Confirm again to retry with the same key."
          : "Nothing was done. Cancel, change the request and try again."));
        if (again) {
          go.disabled = false;
          go.textContent = "Retry with the same key";
        } else {
          go.hidden = true;
          cancel.focus();
        }
      }
    };
    cancel.onclick = () => dlg.close();
    dlg.onclose = () => { go.hidden = false; if (finished) refresh(); };
    go.hidden = false;
    dlg.showModal();
    (typedInput || go).focus();
  }

  function uuid() {
    return crypto.randomUUID();
  }

  function download(name, text) {
    const a = h("a", { href: URL.createObjectURL(new Blob([text], { type: "application/json" })), download: name });
    document.body.append(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }

  function route(pattern, render) {
    routes.push({ pattern, render });
  }

  function parseHash() {
    const raw = location.hash.replace(/^#/, "") || "/";
    const [path, query] = raw.split("?");
    return { path, params: new URLSearchParams(query || "") };
  }

  async function refresh() {
    const main = document.getElementById("main");
    const { path, params } = parseHash();
    for (const a of document.querySelectorAll("#nav a")) {
      const target = a.getAttribute("href").slice(1);
      const current = target === "/" ? path === "/" || path.startsWith("/customer") : path.startsWith(target);
      if (current) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    }
    if (!apiKey()) {
      main.replaceChildren(h("section", { class: "card" }, h("h1", {}, "Paste an API key"),
        h("p", {}, "The console calls the public API with the key you paste above. It is kept for this tab only (sessionStorage) and sent in the X-API-KEY header."),
        h("p", {}, "The console has no permission of its own: it can do what the key can do, nothing more.")));
      document.getElementById("api-key").focus();
      return;
    }
    for (const r of routes) {
      const m = path.match(r.pattern);
      if (m) {
        main.replaceChildren(h("p", { class: "loading" }, "Loading…"));
        main.setAttribute("aria-busy", "true");
        try {
          await r.render(main, m.slice(1).map(decodeURIComponent), params);
        } catch (e) {
          main.replaceChildren(problemView(e));
        }
        main.removeAttribute("aria-busy");
        // How many pages were drawn (tests wait on it).
        document.body.dataset.drawn = String(Number(document.body.dataset.drawn || 0) + 1);
        return;
      }
    }
    main.replaceChildren(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "Back to customers")));
  }

  function go(hash) {
    if (location.hash === hash) refresh(); else location.hash = hash;
  }

  function showKeyState() {
    const k = apiKey();
    document.getElementById("key-state").textContent = k ? "Key in use: " + k.slice(0, 15) + "…" : "No key";
  }

  function start() {
    // Enter in the dialog (the typed confirmation) confirms; it never closes it unasked.
    document.getElementById("confirm-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const go = document.getElementById("confirm-go");
      if (!go.disabled && !go.hidden) go.click();
    });
    document.getElementById("key-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const input = document.getElementById("api-key");
      const v = input.value.trim();
      if (v) sessionStorage.setItem(KEY, v);
      input.value = "";
      showKeyState();
      refresh();
    });
    document.getElementById("key-forget").addEventListener("click", () => {
      sessionStorage.removeItem(KEY);
      showKeyState();
      refresh();
    });
    window.addEventListener("hashchange", () => {
      refresh().then(() => document.getElementById("main").focus({ preventScroll: true }));
    });
    showKeyState();
    refresh();
  }

  return { missingRoute, api, h, s, append, problemView, fmtTime, table, paged, confirmAction, uuid, download, route, go, refresh, start, apiKey };
})();
