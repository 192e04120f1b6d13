// The console's pages. Each is a function of (main, path parts, query) that fills `main`.
"use strict";

(() => {
  const { api, h, s, table, paged, confirmAction, uuid, fmtTime, problemView, route, go } = C;
  const enc = encodeURIComponent;
  const OPERATIONS = ["reward-issuance", "issuance-cancellation", "currency-allocation", "currency-redemption",
    "currency-reversal", "currency-hold", "hold-capture", "hold-void", "currency-transfer", "allocation-activation",
    "customer-erase", "customer-create", "program-create", "award-strategy-create", "expiry-strategy-create",
    "reward-create", "reward-update", "webhook-endpoint-create", "webhook-endpoint-update", "webhook-endpoint-delete",
    "webhook-event-retry", "api-key-create", "api-key-revoke"];

  // Ledger kinds that take from the available balance.
  const OUT = ["DEBIT", "EXPIRE", "REVERSAL", "TRANSFER_OUT", "HOLD"];

  function field(id, label, input) {
    return h("div", { class: "field" }, h("label", { for: id }, label), input);
  }
  function select(id, options, value) {
    return h("select", { id, name: id }, options.map((o) => h("option", { value: o, selected: o === value }, o)));
  }
  function section(title, id, ...content) {
    return h("section", { class: "card", "aria-labelledby": id }, h("h2", { id }, title), ...content);
  }
  function button(label, onclick, cls) {
    return h("button", { type: "button", class: cls, onclick }, label);
  }

  // ---- Find a customer -------------------------------------------------------------------
  route(/^\/$/, async (main, _, params) => {
    const type = select("find-type", ["mobile", "email", "externalId", "customerId"], params.get("type") || "mobile");
    const value = h("input", { id: "find-value", name: "value", required: true, value: params.get("value") || "", spellcheck: "false" });
    const out = h("div", { id: "find-result", role: "status" });
    const form = h("form", { class: "inline", id: "find-form", onsubmit: async (e) => {
      e.preventDefault();
      const v = value.value.trim();
      if (!v) return;
      if (type.value === "customerId") return go("#/customer/" + enc(v));
      try {
        const r = await api("GET", "/v1/customers/lookup", { query: { identifierType: type.value, identifierValue: v } });
        go("#/customer/" + enc(r.body.customerId));
      } catch (err) {
        out.replaceChildren(err.status === 404 ? h("p", { class: "empty" }, "No customer has that " + type.value + ".") : problemView(err));
      }
    } }, field("find-type", "Find by", type), field("find-value", "Value", value), h("button", { type: "submit", id: "find-go" }, "Find"));
    main.replaceChildren(h("h1", {}, "Customers"), section("Find a customer", "find-h", form, out));
    value.focus();
  });

  // ---- One customer ----------------------------------------------------------------------
  route(/^\/customer\/([^/]+)$/, async (main, [id]) => {
    const c = (await api("GET", "/v1/customers/" + enc(id))).body;
    const path = "/v1/customers/" + enc(id);
    const ids = [["Customer id", c.customerId], ["Mobile", c.mobile], ["Email", c.email], ["External id", c.externalId]]
      .filter(([, v]) => v).map(([k, v]) => [h("dt", {}, k), h("dd", {}, h("code", {}, v))]);
    const balances = table([
      { label: "Program", value: (b) => String(b.programId) },
      { label: "Currency", value: (b) => b.currency },
      { label: "Available", num: true, value: (b) => h("span", { class: "balance-available" }, b.available) },
      { label: "Pending", num: true, value: (b) => b.pending || "0" },
      { label: "Held", num: true, value: (b) => b.held || "0" },
    ], c.balances || [], { empty: "No balance yet." });
    const slots = {};
    for (const k of ["ledger", "expiring", "rewards", "holds", "allocations", "transfers"]) slots[k] = h("div", { id: "slot-" + k });
    const reverseForm = reversalForm();
    main.replaceChildren(
      h("h1", {}, "Customer"),
      h("div", { class: "grid" },
        section("Identity", "id-h", h("dl", { class: "ids" }, ids.flat()),
          h("div", { class: "buttons" },
            button("Export data", () => exportData(c.customerId), "secondary"),
            button("Erase customer…", () => erase(c.customerId), "danger"))),
        section("Balances", "bal-h", balances)),
      section("Ledger (newest first)", "ledger-h", slots.ledger),
      h("div", { class: "grid" },
        section("Expiring lots", "exp-h", slots.expiring),
        section("Reverse an allocation", "rev-h", reverseForm)),
      section("Allocations", "alloc-h", slots.allocations),
      section("Holds", "holds-h", slots.holds),
      section("Transfers", "tr-h", slots.transfers),
      section("Issued rewards", "rw-h", slots.rewards));
    const page = (sub, extra) => (cursor) => api("GET", path + sub, { query: Object.assign({ limit: 20, cursor }, extra || {}) }).then((r) => r.body);
    await Promise.all([
      paged(slots.ledger, page("/ledger"), (items) => table([
        { label: "When", value: (e) => fmtTime(e.createdAt) },
        { label: "Kind", value: (e) => h("span", { class: "kind kind-" + e.kind.toLowerCase() }, e.kind) },
        { label: "Amount", num: true, value: (e) => (OUT.includes(e.kind) ? "−" : "+") + e.amount },
        { label: "Balance after", num: true, value: (e) => e.balanceAfter },
        { label: "Currency", value: (e) => e.currency },
        { label: "Reference", value: (e) => e.reference || "—" },
      ], items, { empty: "No entries." })),
      paged(slots.expiring, page("/expiring", { within: "9999d" }), (items) => table([
        { label: "Expires", value: (l) => fmtTime(l.expiresAt) },
        { label: "Amount", num: true, value: (l) => l.amount },
        { label: "Held", num: true, value: (l) => l.held },
        { label: "Currency", value: (l) => l.currency },
      ], items, { empty: "Nothing expiring.", rowClass: (l) => (l === items[0] ? "next" : null), caption: items.length ? "The first row expires next." : null })),
      paged(slots.allocations, page("/allocations"), (items) => table([
        { label: "Unique id", value: (a) => h("code", {}, a.uniqueId) },
        { label: "Status", value: (a) => a.status || "ACTIVE" },
        { label: "Amount", num: true, value: (a) => a.amount },
        { label: "Reversed", num: true, value: (a) => a.reversedAmount || "0" },
        { label: "Matures", value: (a) => fmtTime(a.maturesAt) },
        { label: "", value: (a) => allocationActions(a) },
      ], items, { empty: "No allocations." })),
      paged(slots.holds, page("/holds"), (items) => table([
        { label: "Hold", value: (x) => h("code", {}, x.holdId) },
        { label: "Status", value: (x) => x.status },
        { label: "Amount", num: true, value: (x) => x.amount },
        { label: "Held now", num: true, value: (x) => x.heldAmount },
        { label: "Expires", value: (x) => fmtTime(x.expiresAt) },
        { label: "", value: (x) => (x.status === "HELD" ? holdActions(x) : "") },
      ], items, { empty: "No holds." })),
      paged(slots.transfers, page("/transfers"), (items) => table([
        { label: "When", value: (t) => fmtTime(t.createdAt) },
        { label: "Direction", value: (t) => t.direction },
        { label: "Other customer", value: (t) => h("a", { href: "#/customer/" + enc(t.otherCustomerId) }, t.otherCustomerId) },
        { label: "Amount", num: true, value: (t) => t.amount + " " + t.currency },
        { label: "Reason", value: (t) => t.reason || "—" },
      ], items, { empty: "No transfers." })),
      paged(slots.rewards, page("/rewards"), (items) => table([
        { label: "When", value: (i) => fmtTime(i.createdAt) },
        { label: "Reward", value: (i) => String(i.rewardId) },
        { label: "Qty", num: true, value: (i) => String(i.quantity) },
        { label: "Status", value: (i) => i.status },
        { label: "Vouchers", value: (i) => h("span", { class: "vouchers" }, (i.vouchers || []).map((v) => h("code", {}, v))) },
        { label: "", value: (i) => (i.status === "ISSUED" ? button("Cancel…", () => cancelIssuance(i), "secondary") : "") },
      ], items, { empty: "No rewards issued." })),
    ]);
  });

  function reversalForm() {
    const uid = h("input", { id: "rev-unique", required: true, spellcheck: "false" });
    const amount = h("input", { id: "rev-amount", inputmode: "decimal", placeholder: "all that is left" });
    const reason = h("input", { id: "rev-reason" });
    return h("form", { id: "rev-form", onsubmit: (e) => {
      e.preventDefault();
      if (uid.value.trim()) reverse(uid.value.trim(), amount.value.trim(), reason.value.trim());
    } }, field("rev-unique", "Allocation uniqueId", uid), field("rev-amount", "Amount (empty: whole)", amount),
    field("rev-reason", "Reason", reason), h("button", { type: "submit", id: "rev-go" }, "Reverse…"));
  }

  function reverse(uniqueId, amount, reason) {
    const body = {};
    if (reason) body.reason = reason;
    const part = !!amount;
    const key = part ? uuid() : uniqueId;
    if (part) { body.amount = amount; body.reversalId = key; }
    confirmAction({
      title: part ? "Reverse part of an allocation" : "Reverse an allocation",
      body: [part ? "Take back " + amount + " of allocation " + uniqueId + "." : "Take back all that is left of allocation " + uniqueId + "."],
      key, keyNote: part ? "reversalId, made here" : "the allocation itself is the key",
      run: () => api("POST", "/v1/currency/allocations/" + enc(uniqueId) + "/reversal", { body }),
      done: (r) => h("p", {}, "Took back " + r.body.amount + "; available now " + ((r.body.balance || {}).available || "?") + "."),
    });
  }

  function allocationActions(a) {
    const out = h("span", { class: "buttons" });
    if (a.status === "PENDING") {
      out.append(button("Activate…", () => confirmAction({
        title: "Activate a pending allocation", body: ["Make " + a.amount + " " + a.currency + " of " + a.uniqueId + " available now."],
        key: a.uniqueId, keyNote: "the allocation itself is the key",
        run: () => api("POST", "/v1/currency/allocations/" + enc(a.uniqueId) + "/activate"),
      }), "secondary"));
    }
    if (a.status !== "CANCELLED" && Number(a.reversedAmount || 0) < Number(a.amount)) {
      // Fills the reversal form (whole when its amount stays empty, else that part).
      out.append(button("Reverse…", () => {
        document.getElementById("rev-unique").value = a.uniqueId;
        const amount = document.getElementById("rev-amount");
        amount.scrollIntoView({ block: "center" });
        amount.focus();
      }, "secondary"));
    }
    return out;
  }

  function holdActions(x) {
    const amount = h("input", { class: "small", "aria-label": "Capture amount for hold " + x.holdId, placeholder: "all", inputmode: "decimal" });
    return h("span", { class: "buttons" }, amount,
      button("Capture…", () => {
        const body = amount.value.trim() ? { amount: amount.value.trim() } : undefined;
        confirmAction({ title: "Capture a hold", body: ["Spend " + (body ? body.amount : "all " + x.heldAmount) + " " + x.currency + " of hold " + x.holdId + ", release the rest."],
          key: x.holdId, keyNote: "the hold itself is the key",
          run: () => api("POST", "/v1/currency/holds/" + enc(x.holdId) + "/capture", { body }) });
      }, "secondary"),
      button("Void…", () => confirmAction({ title: "Void a hold", body: ["Release all of hold " + x.holdId + " (" + x.heldAmount + " " + x.currency + ")."],
        key: x.holdId, keyNote: "the hold itself is the key",
        run: () => api("POST", "/v1/currency/holds/" + enc(x.holdId) + "/void") }), "secondary"));
  }

  function cancelIssuance(i) {
    const key = uuid();
    confirmAction({ title: "Cancel an issuance", body: ["Cancel issuance " + i.issuanceId + " (" + i.quantity + " × reward " + i.rewardId + "); its vouchers stop being valid."],
      key, keyNote: "Idempotency-Key, made here; the issuance is the key of its cancellation",
      run: (k) => api("POST", "/v1/rewards/issuances/" + enc(i.issuanceId) + "/cancel", { idem: k, body: { reason: "cancelled in the console" } }) });
  }

  async function exportData(id) {
    try {
      const r = await api("GET", "/v1/customers/" + enc(id) + "/export");
      C.download("customer-" + id + ".json", JSON.stringify(r.body, null, 2));
    } catch (e) {
      document.getElementById("main").prepend(problemView(e));
    }
  }

  function erase(id) {
    confirmAction({ title: "Erase a customer", danger: true, typed: "ERASE",
      body: ["Erase the identifiers of customer " + id + ". This cannot be undone; the ledger stays, without the person."],
      key: id, keyNote: "the customer itself is the key",
      run: () => api("POST", "/v1/customers/" + enc(id) + "/erase") });
  }

  // ---- Idempotency keys ------------------------------------------------------------------
  route(/^\/idempotency$/, async (main, _, params) => {
    const op = select("idem-op", OPERATIONS, params.get("operation") || "currency-allocation");
    const key = h("input", { id: "idem-key", required: true, spellcheck: "false", value: params.get("key") || "" });
    const out = h("div", { id: "idem-result", role: "status" });
    const form = h("form", { class: "inline", onsubmit: async (e) => {
      e.preventDefault();
      try {
        const r = (await api("GET", "/v1/idempotency-keys/" + enc(op.value) + "/" + enc(key.value.trim()))).body;
        out.replaceChildren(h("dl", { class: "ids" },
          h("dt", {}, "Status"), h("dd", {}, r.status),
          h("dt", {}, "First used"), h("dd", {}, fmtTime(r.firstUsedAt)),
          h("dt", {}, "Answer status"), h("dd", {}, r.statusCode == null ? "—" : String(r.statusCode)),
          h("dt", {}, "Resource"), h("dd", {}, r.resourceId || "—")),
        h("h3", {}, "Stored answer"), h("pre", {}, JSON.stringify(r.response, null, 2)),
        h("h3", {}, "Request meaning"), h("pre", {}, JSON.stringify(r.request, null, 2)));
      } catch (err) {
        out.replaceChildren(err.status === 404 ? h("p", { class: "empty" }, "This key was never used for " + op.value + ".") : problemView(err));
      }
    } }, field("idem-op", "Operation", op), field("idem-key", "Key", key), h("button", { type: "submit" }, "Look up"));
    main.replaceChildren(h("h1", {}, "Idempotency keys"), section("What became of a key", "idem-h", form, out));
    key.focus();
  });

  // ---- Webhooks --------------------------------------------------------------------------
  route(/^\/webhooks$/, async (main, _, params) => {
    const endpoints = h("div", { id: "slot-endpoints" });
    const events = h("div", { id: "slot-events" });
    const detail = h("div", { id: "event-detail" });
    const status = select("ev-status", ["failed", "delivering", "delivered", "all"], params.get("status") || "failed");
    status.addEventListener("change", () => go("#/webhooks?status=" + status.value));
    main.replaceChildren(h("h1", {}, "Webhooks"),
      section("Endpoints", "ep-h", endpoints),
      section("Events", "ev-h", h("div", { class: "inline" }, field("ev-status", "Status", status)), events, detail));
    await Promise.all([
      paged(endpoints, (cursor) => api("GET", "/v1/webhook-endpoints", { query: { limit: 50, cursor } }).then((r) => r.body), (items) => table([
        { label: "URL", value: (e) => h("code", {}, e.url) },
        { label: "Events", value: (e) => (e.events || []).join(", ") },
        { label: "Status", value: (e) => e.status },
        { label: "", value: (e) => h("span", { class: "buttons" },
          button(e.status === "ENABLED" ? "Disable…" : "Enable…", () => {
            const next = e.status === "ENABLED" ? "DISABLED" : "ENABLED";
            confirmAction({ title: (next === "ENABLED" ? "Enable" : "Disable") + " an endpoint", body: [e.url], key: uuid(), keyNote: "Idempotency-Key, made here",
              run: (k) => api("PATCH", "/v1/webhook-endpoints/" + enc(e.endpointId), { idem: k, body: { status: next } }) });
          }, "secondary"),
          button("Delete…", () => confirmAction({ title: "Delete an endpoint", danger: true, body: [e.url, "Its waiting events end FAILED."], key: uuid(), keyNote: "Idempotency-Key, made here",
            run: (k) => api("DELETE", "/v1/webhook-endpoints/" + enc(e.endpointId), { idem: k }) }), "danger")) },
      ], items, { empty: "No endpoints." })),
      paged(events, (cursor) => api("GET", "/v1/webhook-events", { query: { limit: 50, cursor, status: status.value === "all" ? "" : status.value } }).then((r) => r.body), (items) => table([
        { label: "When", value: (e) => fmtTime(e.createdAt) },
        { label: "Event", value: (e) => e.event },
        { label: "Status", value: (e) => h("span", { class: "status-" + String(e.status).toLowerCase() }, e.status) },
        { label: "Attempts", num: true, value: (e) => String(e.attempts) },
        { label: "Last answer", value: (e) => (e.lastResponseCode ? String(e.lastResponseCode) : e.lastResponseBody ? h("span", { class: "clip" }, e.lastResponseBody) : "—") },
        { label: "", value: (e) => h("span", { class: "buttons" },
          button("Details", () => showEvent(e.id, detail), "secondary"),
          button("Retry…", () => confirmAction({ title: "Retry an event", body: [e.event + " " + e.id + " is sent again as a new event, with the same webhook-id."], key: uuid(), keyNote: "Idempotency-Key, made here",
            run: (k) => api("POST", "/v1/webhook-events/" + enc(e.id) + "/actions/retry", { idem: k }),
            done: (r) => h("p", {}, "New event ", h("code", {}, r.body.id), " is " + r.body.status + ".") }))) },
      ], items, { empty: "No " + (status.value === "all" ? "" : status.value + " ") + "events." })),
    ]);
  });

  async function showEvent(id, slot) {
    try {
      const e = (await api("GET", "/v1/webhook-events/" + enc(id))).body;
      slot.replaceChildren(h("h3", { tabindex: "-1", id: "event-detail-h" }, "Event " + e.id),
        h("dl", { class: "ids" },
          h("dt", {}, "Type"), h("dd", {}, e.event), h("dt", {}, "Status"), h("dd", {}, e.status),
          h("dt", {}, "Attempts"), h("dd", {}, String(e.attempts)),
          h("dt", {}, "Last answer"), h("dd", {}, e.lastResponseCode == null ? "none" : String(e.lastResponseCode)),
          h("dt", {}, "Next attempt"), h("dd", {}, fmtTime(e.nextAttemptAt)),
          h("dt", {}, "Retry of"), h("dd", {}, e.retryOf || "—"),
          h("dt", {}, "webhook-id"), h("dd", {}, h("code", {}, e.idempotencyToken))),
        h("h4", {}, "Last answer body"), h("pre", {}, e.lastResponseBody || "(none)"),
        h("h4", {}, "Payload"), h("pre", {}, JSON.stringify(e.payload, null, 2)));
      document.getElementById("event-detail-h").focus();
    } catch (err) {
      slot.replaceChildren(problemView(err));
    }
  }

  // ---- API keys --------------------------------------------------------------------------
  route(/^\/keys$/, async (main) => {
    const list = h("div", { id: "slot-keys" });
    const name = h("input", { id: "key-name", required: true, maxlength: "200" });
    const form = h("form", { class: "inline", id: "key-create", onsubmit: (e) => {
      e.preventDefault();
      if (!name.value.trim()) return;
      confirmAction({ title: "Create an API key", body: ["A new key named “" + name.value.trim() + "”. Its secret is shown once, here."], key: uuid(), keyNote: "Idempotency-Key, made here",
        run: (k) => api("POST", "/v1/api-keys", { idem: k, body: { name: name.value.trim() } }),
        done: (r) => h("div", { class: "secret" }, h("p", {}, "The key (copy it now, it is not shown again):"), h("code", { id: "new-secret" }, r.body.apiKey || "(not shown: a replay)")) });
    } }, field("key-name", "Name", name), h("button", { type: "submit" }, "Create…"));
    main.replaceChildren(h("h1", {}, "API keys"), section("New key", "nk-h", form), section("Keys", "keys-h", list));
    await paged(list, (cursor) => api("GET", "/v1/api-keys", { query: { limit: 50, cursor } }).then((r) => r.body), (items) => table([
      { label: "Name", value: (k) => k.name },
      { label: "Prefix", value: (k) => h("code", {}, k.prefix) },
      { label: "Created", value: (k) => fmtTime(k.createdAt) },
      { label: "Last used", value: (k) => fmtTime(k.lastUsedAt) },
      { label: "Revoked", value: (k) => fmtTime(k.revokedAt) },
      { label: "", value: (k) => (k.revokedAt ? "" : button("Revoke…", () => confirmAction({ title: "Revoke an API key", danger: true,
        body: ["Key " + k.name + " (" + k.prefix + ") is refused from now on." + (C.apiKey().includes(k.prefix) ? " It is the key this console uses." : "")],
        key: uuid(), keyNote: "Idempotency-Key, made here",
        run: (key) => api("DELETE", "/v1/api-keys/" + enc(k.keyId), { idem: key }) }), "danger")) },
    ], items, { rowClass: (k) => (k.revokedAt ? "revoked" : null) }));
  });

  // ---- Liability -------------------------------------------------------------------------
  route(/^\/liability$/, async (main, _, params) => {
    const programs = (await api("GET", "/v1/programs", { query: { limit: 200 } })).body.items || [];
    const out = h("div", { id: "liability-result" });
    const progSel = h("select", { id: "li-program" }, programs.map((p) => h("option", { value: String(p.programId), selected: String(p.programId) === params.get("program") }, p.name + " (" + p.programId + ")")));
    const curSel = h("select", { id: "li-currency" });
    const fillCurrencies = () => {
      const p = programs.find((x) => String(x.programId) === progSel.value);
      curSel.replaceChildren(...((p && p.currencies) || []).map((c) => h("option", { value: c.code || c, selected: (c.code || c) === params.get("currency") }, c.code || c)));
    };
    progSel.addEventListener("change", fillCurrencies);
    fillCurrencies();
    const form = h("form", { class: "inline", onsubmit: async (e) => {
      e.preventDefault();
      try {
        const r = (await api("GET", "/v1/programs/" + enc(progSel.value) + "/liability", { query: { currency: curSel.value } })).body;
        out.replaceChildren(liabilityView(r));
      } catch (err) {
        out.replaceChildren(C.missingRoute(err) ? h("p", { class: "empty" }, "Not available on this server yet.") : problemView(err));
      }
    } }, field("li-program", "Program", progSel), field("li-currency", "Currency", curSel), h("button", { type: "submit", id: "li-go" }, "Show"));
    main.replaceChildren(h("h1", {}, "Liability"), section("Outstanding points", "li-h", programs.length ? form : h("p", {}, "No programs."), out));
    if (!programs.length) return;
    // With no currency asked for, show the first one that has something outstanding.
    if (!params.get("currency") && curSel.options.length > 1) {
      for (const o of curSel.options) {
        try {
          const r = (await api("GET", "/v1/programs/" + enc(progSel.value) + "/liability", { query: { currency: o.value } })).body;
          const t = r.outstanding || {};
          if ([t.available, t.held, t.pending].some((v) => Number(v) > 0)) { curSel.value = o.value; break; }
        } catch (_) { break; }
      }
    }
    form.requestSubmit();
  });

  function liabilityView(r) {
    const o = r.outstanding || {};
    const months = r.months || [];
    return h("div", {},
      h("p", {}, "Program " + r.programId + ", " + r.currency + ", as of " + fmtTime(r.asOf) + "."),
      h("dl", { class: "totals" }, h("div", {}, h("dt", {}, "Available"), h("dd", {}, o.available)),
        h("div", {}, h("dt", {}, "Held"), h("dd", {}, o.held)), h("div", {}, h("dt", {}, "Pending"), h("dd", {}, o.pending))),
      h("h3", {}, "Expiring in the next 12 months"),
      barChart(r.expiring || [], [["amount", "c-expire", "Expiring"]]),
      table([{ label: "Month", value: (m) => m.month }, { label: "Expiring", num: true, value: (m) => m.amount }], r.expiring || []),
      h("h3", {}, "The last 12 months"),
      barChart(months, [["issued", "c-issued", "Issued"], ["redeemed", "c-redeemed", "Redeemed"], ["expired", "c-expire", "Expired"], ["reversed", "c-reversed", "Reversed"], ["transferred", "c-transferred", "Transferred"]]),
      table([{ label: "Month", value: (m) => m.month },
        { label: "Issued", num: true, value: (m) => m.issued }, { label: "Redeemed", num: true, value: (m) => m.redeemed },
        { label: "Expired", num: true, value: (m) => m.expired }, { label: "Reversed", num: true, value: (m) => m.reversed },
        { label: "Transferred", num: true, value: (m) => m.transferred }], months));
  }

  // Grouped bars, one group a month, drawn here as SVG.
  function barChart(rows, series) {
    const W = 960, H = 220, pad = 44, base = H - 28;
    const max = Math.max(1, ...rows.flatMap((r) => series.map(([k]) => Number(r[k]) || 0)));
    const gw = (W - pad) / Math.max(1, rows.length);
    const bw = Math.max(2, (gw - 6) / series.length);
    const svg = s("svg", { viewBox: "0 0 " + W + " " + H, preserveAspectRatio: "xMinYMin meet", class: "chart", role: "img", "aria-label": series.map((x) => x[2]).join(", ") + " by month" });
    svg.append(s("line", { x1: pad, y1: base, x2: W, y2: base, class: "axis" }));
    svg.append(s("text", { x: pad - 4, y: 14, class: "tick", "text-anchor": "end" }, String(max)));
    rows.forEach((r, i) => {
      series.forEach(([k, cls, label], j) => {
        const v = Number(r[k]) || 0;
        const bh = (v / max) * (base - 10);
        svg.append(s("rect", { x: pad + i * gw + 3 + j * bw, y: base - bh, width: bw - 1, height: bh, class: cls }, s("title", {}, r.month + " " + label + ": " + r[k])));
      });
      svg.append(s("text", { x: pad + i * gw + gw / 2, y: H - 10, class: "tick", "text-anchor": "middle" }, String(r.month || "").slice(2)));
    });
    const legend = h("ul", { class: "legend" }, series.map(([, cls, label]) => h("li", {}, h("span", { class: "swatch " + cls }), label)));
    return h("figure", {}, svg, series.length > 1 ? legend : null);
  }

  C.start();
})();
