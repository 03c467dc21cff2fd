// Myelin's admin page: plain JavaScript, no build step, no third-party code.
// Signs in with an admin's password (client API login), keeps the access token in
// sessionStorage (gone when the tab closes), and calls the Synapse admin API and
// Myelin's runtime endpoint with it. Everything from the server is inserted with
// textContent: no HTML is ever built from data.
"use strict";

(function () {
  const TOKEN_KEY = "myelin.admin.token";
  const USER_KEY = "myelin.admin.user";
  const PAGE_SIZE = 50;
  const RUNTIME_REFRESH_MS = 3000;

  const $ = (id) => document.getElementById(id);

  let currentView = null;
  let pageFrom = 0;
  let runtimeTimer = null;
  let previousRuntime = null;

  // --- HTTP -----------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, errcode, message) {
      super(message);
      this.status = status;
      this.errcode = errcode;
    }
  }

  async function api(method, path, body) {
    const headers = { "Accept": "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers["Authorization"] = "Bearer " + token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "omit", cache: "no-store",
      });
    } catch (e) {
      throw new ApiError(0, "NETWORK", "The server did not answer (" + e.message + ")");
    }
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      const errcode = data && typeof data.errcode === "string" ? data.errcode : "HTTP_" + response.status;
      const error = data && typeof data.error === "string" ? data.error : response.statusText;
      throw new ApiError(response.status, errcode, error);
    }
    return data || {};
  }

  function describe(error) {
    if (error instanceof ApiError) {
      if (error.status === 404 && error.errcode === "M_UNRECOGNIZED") {
        return "This server does not offer this endpoint yet (" + error.errcode + ").";
      }
      return error.errcode + " (" + error.status + "): " + error.message;
    }
    return String(error);
  }

  // --- DOM helpers (text only) -------------------------------------------------

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function formatValue(value) {
    if (value === null || value === undefined) return "";
    if (typeof value === "boolean") return value ? "yes" : "no";
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  function formatTime(ms) {
    if (typeof ms !== "number" || !isFinite(ms) || ms <= 0) return "";
    try { return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z"); } catch (e) { return String(ms); }
  }

  // columns: [{ key, label, format?(value, row) }]; actions?(row) → [Node]
  function table(rows, columns, actions) {
    const t = el("table");
    const head = el("thead");
    const headRow = el("tr");
    for (const column of columns) headRow.appendChild(el("th", column.label));
    if (actions) headRow.appendChild(el("th", ""));
    head.appendChild(headRow);
    t.appendChild(head);
    const body = el("tbody");
    for (const row of rows) {
      const tr = el("tr");
      for (const column of columns) {
        const raw = row[column.key];
        tr.appendChild(el("td", column.format ? column.format(raw, row) : formatValue(raw)));
      }
      if (actions) {
        const td = el("td");
        for (const node of actions(row, tr)) td.appendChild(node);
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
    t.appendChild(body);
    if (rows.length === 0) {
      const tr = el("tr");
      const td = el("td", "Nothing to show.", "empty");
      td.colSpan = columns.length + (actions ? 1 : 0);
      tr.appendChild(td);
      body.appendChild(tr);
    }
    return t;
  }

  function setStatus(text) { $("view-status").textContent = text || ""; }

  function showError(text) {
    const node = $("view-error");
    node.textContent = text || "";
    node.hidden = !text;
  }

  // --- Views -------------------------------------------------------------------

  const views = {
    users: {
      title: "Users",
      paged: true,
      async load(from) {
        const query = new URLSearchParams({ from: String(from), limit: String(PAGE_SIZE), guests: "true", deactivated: "true" });
        const data = await api("GET", "/_synapse/admin/v2/users?" + query.toString());
        const users = Array.isArray(data.users) ? data.users : [];
        const columns = [
          { key: "name", label: "User", format: (v, row) => formatValue(v || row.user_id) },
          { key: "displayname", label: "Display name" },
          { key: "admin", label: "Admin" },
          { key: "is_guest", label: "Guest" },
          { key: "deactivated", label: "Deactivated" },
          { key: "creation_ts", label: "Created", format: (v) => formatTime(v) },
        ];
        const node = table(users, columns, (row, tr) => {
          const userID = String(row.name || row.user_id || "");
          tr.dataset.userId = userID;
          // No button to deactivate oneself from here.
          if (row.deactivated || !userID || userID === sessionStorage.getItem(USER_KEY)) return [];
          const button = el("button", "Deactivate", "deactivate danger");
          button.type = "button";
          button.addEventListener("click", async () => {
            // Two clicks: the first asks, the second acts (no modal dialog).
            if (button.dataset.armed !== "1") {
              button.dataset.armed = "1";
              button.textContent = "Confirm deactivate";
              return;
            }
            button.disabled = true;
            setStatus("Deactivating " + userID + "…");
            try {
              await api("POST", "/_synapse/admin/v1/deactivate/" + encodeURIComponent(userID), { erase: false });
              setStatus("Deactivated " + userID + ".");
              await render();
              setStatus("Deactivated " + userID + ".");
            } catch (e) {
              button.disabled = false;
              showError(describe(e));
            }
          });
          return [button];
        });
        return { node, total: data.total, count: users.length, next: data.next_token };
      },
    },
    rooms: {
      title: "Rooms",
      paged: true,
      async load(from) {
        const data = await api("GET", "/_synapse/admin/v1/rooms?from=" + from + "&limit=" + PAGE_SIZE);
        const rooms = Array.isArray(data.rooms) ? data.rooms : [];
        const node = table(rooms, [
          { key: "room_id", label: "Room" },
          { key: "name", label: "Name" },
          { key: "canonical_alias", label: "Alias" },
          { key: "joined_members", label: "Members" },
          { key: "joined_local_members", label: "Local" },
          { key: "version", label: "Version" },
          { key: "public", label: "Public" },
          { key: "creator", label: "Creator" },
        ]);
        return { node, total: data.total_rooms !== undefined ? data.total_rooms : data.total, count: rooms.length, next: data.next_batch };
      },
    },
    reports: {
      title: "Event reports",
      paged: true,
      async load(from) {
        const data = await api("GET", "/_synapse/admin/v1/event_reports?from=" + from + "&limit=" + PAGE_SIZE);
        const reports = Array.isArray(data.event_reports) ? data.event_reports : [];
        const node = table(reports, [
          { key: "id", label: "Id" },
          { key: "received_ts", label: "Received", format: (v) => formatTime(v) },
          { key: "room_id", label: "Room" },
          { key: "event_id", label: "Event" },
          { key: "user_id", label: "Reporter" },
          { key: "sender", label: "Sender" },
          { key: "reason", label: "Reason" },
          { key: "score", label: "Score" },
        ]);
        return { node, total: data.total, count: reports.length, next: data.next_token };
      },
    },
    tokens: {
      title: "Registration tokens",
      paged: false,
      async load() {
        const data = await api("GET", "/_synapse/admin/v1/registration_tokens");
        const tokens = Array.isArray(data.registration_tokens) ? data.registration_tokens : [];
        const node = table(tokens, [
          { key: "token", label: "Token" },
          { key: "uses_allowed", label: "Uses allowed", format: (v) => v === null || v === undefined ? "unlimited" : String(v) },
          { key: "pending", label: "Pending" },
          { key: "completed", label: "Completed" },
          { key: "expiry_time", label: "Expires", format: (v) => v ? formatTime(v) : "never" },
        ]);
        return { node, total: tokens.length, count: tokens.length };
      },
    },
    blocks: {
      title: "Blocked addresses",
      paged: false,
      async load() {
        const data = await api("GET", "/_synapse/admin/v1/security/ip/blocks");
        const blocks = Array.isArray(data.blocks) ? data.blocks : [];
        const node = table(blocks, [
          { key: "ip", label: "Address or range", format: (v, row) => formatValue(v || row.cidr || row.range) },
          { key: "reason", label: "Reason" },
          { key: "blocked_at", label: "Blocked", format: (v) => formatTime(v) },
          { key: "blocked_by", label: "By" },
          { key: "expires_at", label: "Expires", format: (v) => v ? formatTime(v) : "never" },
        ]);
        return { node, total: blocks.length, count: blocks.length };
      },
    },
    runtime: {
      title: "Runtime",
      paged: false,
      refreshMs: RUNTIME_REFRESH_MS,
      async load() {
        const data = await api("GET", "/_myelin/admin/api/runtime");
        const node = renderRuntime(data, previousRuntime);
        previousRuntime = data;
        return { node };
      },
    },
  };

  // Rates between two samples of the runtime endpoint (counters since start).
  function rate(now, before, pick) {
    if (!before) return null;
    const seconds = (now.monotonic_ms - before.monotonic_ms) / 1000;
    if (!(seconds > 0)) return null;
    const delta = pick(now) - pick(before);
    return delta >= 0 ? delta / seconds : null;
  }

  // The p99 of the requests between two samples, from the histogram's bucket counts.
  function windowedQuantile(now, before, q) {
    const bounds = now.transport.latency_bucket_bounds_us;
    const counts = now.transport.latency_bucket_counts.map((c, i) =>
      c - (before ? before.transport.latency_bucket_counts[i] || 0 : 0));
    const total = counts.reduce((a, b) => a + b, 0);
    if (total <= 0) return null;
    const rank = Math.max(1, Math.ceil(total * q));
    let seen = 0;
    for (let i = 0; i < counts.length; i++) {
      seen += counts[i];
      if (seen >= rank) return bounds[Math.min(i, bounds.length - 1)] / 1000;
    }
    return bounds[bounds.length - 1] / 1000;
  }

  function fixed(value, digits) {
    return value === null || value === undefined ? "…" : Number(value).toFixed(digits);
  }

  function renderRuntime(now, before) {
    const wrap = el("div", null, "runtime");
    const t = now.transport || {};
    const cards = el("div", null, "cards");
    const card = (label, value, id) => {
      const c = el("div", null, "card");
      c.appendChild(el("div", label, "card-label"));
      const v = el("div", value, "card-value");
      if (id) v.id = id;
      c.appendChild(v);
      cards.appendChild(c);
    };
    const p99 = before ? windowedQuantile(now, before, 0.99) : now.transport.p99_ms;
    card("Requests/s", fixed(rate(now, before, (s) => s.transport.requests_total), 1), "rt-rps");
    card(before ? "p99 latency (window, ms)" : "p99 latency (since start, ms)", p99 === null ? "–" : fixed(p99, 1), "rt-p99");
    card("Open connections", formatValue(t.open_connections), "rt-connections");
    card("Requests in flight", formatValue(t.requests_in_flight));
    card("Long-polls held", formatValue(now.sync ? now.sync.long_polls_held : ""), "rt-longpolls");
    card("Uptime", formatValue(now.uptime_seconds) + " s");
    wrap.appendChild(cards);

    const rows = [];
    const actors = now.actors || {};
    for (const kind of Object.keys(actors).sort()) {
      const a = actors[kind];
      const b = before && before.actors ? before.actors[kind] : null;
      rows.push({
        kind,
        resident: a.resident,
        max_resident: a.max_resident,
        fill: a.max_resident > 0 ? (100 * a.resident / a.max_resident).toFixed(1) + " %" : "",
        activations_per_s: b ? fixed(rate(now, before, (s) => s.actors[kind].activations), 2) : "…",
        evictions_per_s: b && a.evictions !== undefined ? fixed(rate(now, before, (s) => s.actors[kind].evictions), 2) : (a.evictions === undefined ? "" : "…"),
        deactivations_per_s: b ? fixed(rate(now, before, (s) => s.actors[kind].deactivations), 2) : "…",
        activations: a.activations,
        evictions: a.evictions,
        idle_timeout_seconds: a.idle_timeout_seconds,
      });
    }
    wrap.appendChild(el("h3", "Actor pools"));
    const pools = table(rows, [
      { key: "kind", label: "Pool" },
      { key: "resident", label: "Resident" },
      { key: "max_resident", label: "max_resident" },
      { key: "fill", label: "Fill" },
      { key: "activations_per_s", label: "Activations/s" },
      { key: "evictions_per_s", label: "Evictions/s" },
      { key: "deactivations_per_s", label: "Deactivations/s" },
      { key: "activations", label: "Activations" },
      { key: "evictions", label: "Evictions" },
      { key: "idle_timeout_seconds", label: "Idle timeout (s)" },
    ]);
    pools.id = "runtime-pools";
    wrap.appendChild(pools);
    wrap.appendChild(el("p", "Rates are computed from two samples " + (RUNTIME_REFRESH_MS / 1000) +
      " s apart; limits are the configuration's actors: section.", "note"));
    return wrap;
  }

  // --- Navigation ------------------------------------------------------------------

  function stopTimer() {
    if (runtimeTimer !== null) { clearTimeout(runtimeTimer); runtimeTimer = null; }
  }

  async function render() {
    stopTimer();
    const view = views[currentView];
    if (!view) return;
    $("view-title").textContent = view.title;
    for (const button of document.querySelectorAll("#views button")) {
      button.classList.toggle("active", button.dataset.view === currentView);
    }
    const content = $("view-content");
    const requested = currentView;
    showError("");
    setStatus("Loading…");
    try {
      const result = await view.load(pageFrom);
      if (requested !== currentView) return;
      clear(content);
      content.appendChild(result.node);
      content.dataset.view = requested;
      content.dataset.loaded = String(Date.now());
      const pager = $("pager");
      pager.hidden = !view.paged;
      if (view.paged) {
        const shown = result.count || 0;
        const total = typeof result.total === "number" ? result.total : null;
        $("page-info").textContent = shown === 0 ? "none" :
          (pageFrom + 1) + "–" + (pageFrom + shown) + (total !== null ? " of " + total : "");
        $("page-prev").disabled = pageFrom === 0;
        $("page-next").disabled = !(result.next !== undefined && result.next !== null) && !(total !== null && pageFrom + shown < total);
      }
      setStatus("Updated " + new Date().toLocaleTimeString());
    } catch (e) {
      if (requested !== currentView) return;
      clear(content);
      content.dataset.view = requested;
      content.dataset.loaded = "error";
      $("pager").hidden = true;
      setStatus("");
      if (e instanceof ApiError && e.status === 401) { signOut(true); return; }
      showError(describe(e));
    }
    if (view.refreshMs && requested === currentView) {
      runtimeTimer = setTimeout(render, view.refreshMs);
    }
  }

  function open(name) {
    if (!views[name]) name = "users";
    currentView = name;
    pageFrom = 0;
    previousRuntime = null;
    if (location.hash !== "#" + name) history.replaceState(null, "", "#" + name);
    render();
  }

  // --- Session ---------------------------------------------------------------------

  function showSignedIn(signedIn) {
    $("login-view").hidden = signedIn;
    $("app-view").hidden = !signedIn;
    $("session").hidden = !signedIn;
    $("session-user").textContent = signedIn ? (sessionStorage.getItem(USER_KEY) || "") : "";
  }

  async function signIn(event) {
    event.preventDefault();
    const user = $("login-user").value.trim();
    const password = $("login-password").value;
    $("login-error").textContent = "";
    $("login-submit").disabled = true;
    try {
      const login = await api("POST", "/_matrix/client/v3/login", {
        type: "m.login.password",
        identifier: { type: "m.id.user", user },
        password,
        initial_device_display_name: "Myelin admin page",
      });
      sessionStorage.setItem(TOKEN_KEY, login.access_token);
      sessionStorage.setItem(USER_KEY, login.user_id || user);
      // Only administrators get further: ask an admin-only endpoint.
      try {
        await api("GET", "/_synapse/admin/v1/status");
      } catch (e) {
        await signOut(false);
        $("login-error").textContent = e instanceof ApiError && e.status === 403
          ? "This account is not a server administrator." : describe(e);
        return;
      }
      $("login-password").value = "";
      showSignedIn(true);
      open(location.hash.slice(1) || "users");
    } catch (e) {
      $("login-error").textContent = e instanceof ApiError && e.errcode === "M_FORBIDDEN"
        ? "Wrong user name or password." : describe(e);
    } finally {
      $("login-submit").disabled = false;
    }
  }

  async function signOut(expired) {
    stopTimer();
    if (sessionStorage.getItem(TOKEN_KEY) && expired !== true) {
      try { await api("POST", "/_matrix/client/v3/logout", {}); } catch (e) { /* the token may be gone already */ }
    }
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(USER_KEY);
    currentView = null;
    clear($("view-content"));
    showSignedIn(false);
    if (expired === true) $("login-error").textContent = "Your session ended; sign in again.";
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", signIn);
    $("sign-out").addEventListener("click", () => signOut(false));
    $("refresh").addEventListener("click", () => render());
    $("page-prev").addEventListener("click", () => { pageFrom = Math.max(0, pageFrom - PAGE_SIZE); render(); });
    $("page-next").addEventListener("click", () => { pageFrom += PAGE_SIZE; render(); });
    for (const button of document.querySelectorAll("#views button")) {
      button.addEventListener("click", () => open(button.dataset.view));
    }
    if (sessionStorage.getItem(TOKEN_KEY)) {
      showSignedIn(true);
      open(location.hash.slice(1) || "users");
    } else {
      showSignedIn(false);
    }
  });
})();
