// tapwatch cadre dashboard: plain JavaScript, no build step. Talks only to the tapwatch API on the same origin.
// Views: sign in, open alerts (live), an elder (chart, history, contacts, away), thresholds (backtest), devices.
"use strict";
(() => {
  const OPEN = ["open", "notified", "acknowledged"];
  const SYSTEM_ACTOR = "tapwatch"; // who closes an alert when the data shows it is over (alerts/manager.py)
  const DEVICE_KINDS = new Set(["meter_offline", "meter_fault"]);
  // The water utility's cases, never the cadres': meter problems, and the slow leaks and month-long silences the
  // detectors route to maintenance (the API's route; its kind is a cadre's, continuous_flow or no_activity).
  const forMaintenance = (a) => a.route === "maintenance" || DEVICE_KINDS.has(a.kind);
  const KINDS = ["no_activity", "continuous_flow", "high_usage", "low_usage", "routine_change", "meter_offline", "meter_fault"];
  const SEVERITY_RANK = { critical: 0, high: 1, medium: 2, low: 3 };
  const OUTCOMES = ["ok", "needed_help", "hospital", "away", "false_alarm", "device_fault"];
  const SYSTEM_OUTCOMES = ["use_resumed", "cleared"]; // a case the data closed (alerts/cases.py)
  // How long after the data closed a case a person may still record what they found: the server's
  // TAPWATCH_OUTCOME_WINDOW_DAYS default. The server decides; a refusal is shown in the dialog.
  const OUTCOME_WINDOW_DAYS = 14;
  const DEVICE_STATUSES = ["offline", "faulty", "low_battery"];
  const CAN = {
    handle: ["admin", "cadre", "platform"],
    away: ["admin", "cadre"],
    thresholds: ["admin", "operator"],
    devices: ["admin", "operator", "platform"],
    // An elder's water use (readings, usage, routine): never the platform's, which the API refuses (403).
    water: ["admin", "operator", "cadre"],
  };
  const SESSION_KEY = "tapwatch.session";
  const DEFAULT_TZ = "Asia/Shanghai";
  // The reader's own clock: for times that are no elder's (the outcomes report's period, which ends now).
  const READER_TZ = Intl.DateTimeFormat().resolvedOptions().timeZone;

  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  const main = $("#main");
  const I18N_URL = document.currentScript.dataset.catalogue;
  // How long a tapped outcome waits, undoable, before it is sent: the server's TAPWATCH_DASHBOARD_UNDO_S (0: at once).
  const UNDO_MS = Math.max(0, Number(document.currentScript.dataset.undoS) || 0) * 1000;
  const state = {
    lang: initialLang(),
    cat: { zh: {}, en: {} },
    session: loadSession(),
    elders: new Map(),
    open: new Map(),
    loadedOnce: false,
    stream: null,
    sound: localStorage.getItem("tapwatch.sound") !== "off",
    audio: null,
    cues: 0,
    fresh: [],
    seq: 0,
    chart: null,
    previewSig: null,
  };

  // -- words ------------------------------------------------------------------------------
  function initialLang() {
    const q = new URLSearchParams(location.search).get("lang");
    if (q === "en" || q === "zh") return q;
    return localStorage.getItem("tapwatch.lang") === "en" ? "en" : "zh";
  }
  function t(key, vars) {
    let s = state.cat[state.lang][key] ?? state.cat.zh[key] ?? key;
    if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (vars[k] ?? m));
    return s;
  }
  const locale = () => (state.lang === "zh" ? "zh-CN" : "en-GB");
  function esc(value) {
    return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }
  const enc = encodeURIComponent;
  // Units of the threshold spec (h, L, L/min, days, probability) in the reader's language.
  const unit = (code) => t(`unit.${code}`) === `unit.${code}` ? code : t(`unit.${code}`);
  // The API takes any zone Python's zoneinfo reads, also files no browser knows ("posix/Asia/Shanghai",
  // "right/...", "localtime") on which Intl throws: such an elder's times are shown in the zone the name stands for.
  const zoneCache = new Map();
  function shownZone(tz) {
    const name = tz || DEFAULT_TZ;
    if (!zoneCache.has(name)) {
      const known = (zone) => {
        try {
          new Intl.DateTimeFormat("en-US", { timeZone: zone });
          return true;
        } catch {
          return false;
        }
      };
      const plain = name.replace(/^(?:posix|right)\//, "");
      zoneCache.set(name, known(name) ? name : known(plain) ? plain : DEFAULT_TZ);
    }
    return zoneCache.get(name);
  }
  const fmtCache = new Map();
  function formatter(tz, kind) {
    const key = `${state.lang}|${tz}|${kind}`;
    if (!fmtCache.has(key)) {
      const opts = {
        dt: { month: "numeric", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23" },
        day: { month: "numeric", day: "numeric", weekday: "short" },
        time: { hour: "2-digit", minute: "2-digit", hourCycle: "h23" },
        parts: { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", weekday: "short", hourCycle: "h23" },
        wall: { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" },
      }[kind];
      const loc = kind === "parts" || kind === "wall" ? "en-US" : locale();
      fmtCache.set(key, new Intl.DateTimeFormat(loc, { ...opts, timeZone: shownZone(tz) }));
    }
    return fmtCache.get(key);
  }
  const fmt = (iso, tz, kind = "dt") => (iso ? formatter(tz, kind).format(new Date(iso)) : t("time.never"));
  function ago(iso) {
    const s = (Date.parse(iso) - Date.now()) / 1000;
    const rtf = new Intl.RelativeTimeFormat(locale(), { numeric: "auto" });
    const a = Math.abs(s);
    if (a < 3600) return rtf.format(Math.round(s / 60), "minute");
    if (a < 48 * 3600) return rtf.format(Math.round(s / 3600), "hour");
    return rtf.format(Math.round(s / 86400), "day");
  }

  function applyStatic() {
    document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
    for (const el of $$("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    for (const el of $$("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
    const lang = $("#lang");
    lang.textContent = t("lang.switch");
    lang.setAttribute("lang", state.lang === "zh" ? "en" : "zh-CN");
    lang.setAttribute("aria-label", t("lang.switch_label"));
    const sound = $("#sound");
    sound.setAttribute("aria-pressed", String(state.sound));
    sound.setAttribute("aria-label", t(state.sound ? "sound.on" : "sound.off"));
    sound.title = t(state.sound ? "sound.on" : "sound.off");
    const s = state.session;
    $("#who").textContent = s ? t("who", { user: s.username, role: t(`role.${s.role}`) }) : "";
    for (const el of $$("[data-need]")) el.hidden = !s || !CAN[el.dataset.need].includes(s.role);
    for (const el of $$(".signed-in")) el.hidden = !s;
    setLive(state.stream?.connected ?? false);
    updateTitle();
  }

  // -- session and API ----------------------------------------------------------------------
  function loadSession() {
    try {
      const s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
      return s && s.expires > Date.now() ? s : null;
    } catch {
      return null;
    }
  }
  const can = (what) => !!state.session && CAN[what].includes(state.session.role);

  class ApiError extends Error {
    constructor(status, detail, retryAfter, invalid = false, unanswered = false) {
      super(detail || `HTTP ${status}`);
      this.status = status;
      this.detail = detail;
      this.retryAfter = retryAfter;
      this.invalid = invalid; // refused by the API's schema: its detail and errors are for programs
      this.unanswered = unanswered; // sent, and no answer came in time: it may have been saved
    }
  }
  // How long a cadre's tap (acknowledge, resolve) waits for its answer. A phone's link that died without a word
  // answers never (the browser waits minutes, or for good, on a dead connection); she is told, and tapping
  // again is safe: the API answers a resend of what she recorded as done, recording it once.
  const ACTION_TIMEOUT_MS = 20e3;
  async function api(path, { method = "GET", body, form, timeoutMs, keepalive = false } = {}) {
    const headers = { Accept: "application/json" };
    if (state.session) headers.Authorization = `Bearer ${state.session.token}`;
    let payload;
    if (form) payload = new URLSearchParams(form);
    else if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(body);
    }
    const waited = timeoutMs ? new AbortController() : null;
    const timer = waited && setTimeout(() => waited.abort(), timeoutMs);
    let res;
    try {
      res = await fetch(path, { method, headers, body: payload, cache: "no-store", signal: waited?.signal, keepalive });
    } catch {
      throw new ApiError(0, undefined, null, false, !!waited?.signal.aborted);
    } finally {
      clearTimeout(timer);
    }
    if (res.status === 401 && state.session && !form) {
      signOut(t("error.expired"));
      throw new ApiError(401, t("error.expired"));
    }
    noteAccess(res);
    if (!res.ok) {
      let problem;
      try {
        problem = await res.json();
      } catch {
        problem = {};
      }
      const detail = typeof problem?.detail === "string" ? problem.detail : undefined;
      throw new ApiError(res.status, detail, res.headers.get("Retry-After"), Array.isArray(problem?.errors));
    }
    return res.status === 204 ? null : res.json();
  }
  // The API tags each answer with the caller's rights as they are now: an admin changed her role or communities
  // since she signed in (or since the tag was last seen) when it differs. Her session then takes them from /me,
  // and what was loaded under the old ones (elders, open alerts, the live stream) is loaded again.
  let accessCheck = null;
  function noteAccess(res) {
    const access = res.headers.get("X-Tapwatch-Access");
    if (!access || !state.session || access === state.session.access || accessCheck) return;
    accessCheck = takeAccess(access)
      .catch(() => {}) // the next answer that differs asks again
      .finally(() => (accessCheck = null));
  }
  async function takeAccess(access) {
    const s = state.session;
    const me = await api("/me");
    if (state.session !== s) return; // signed out meanwhile
    const changed = me.role !== s.role || String(me.communities) !== String(s.communities);
    Object.assign(s, { role: me.role, communities: me.communities, access });
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(s));
    if (!changed) return;
    await start();
    render();
  }
  function errText(e) {
    if (e instanceof ApiError && e.unanswered) return t("error.unanswered");
    const known = { 0: "error.network", 403: "error.forbidden", 404: "error.not_found", 409: "error.conflict", 503: "error.busy" };
    if (e instanceof ApiError && known[e.status]) return t(known[e.status]);
    // The API speaks English: a request off its schema or its own failure is said in the reader's language.
    if (e instanceof ApiError && e.invalid) return t("error.invalid");
    if (e instanceof ApiError && e.status >= 500) return t("error.server");
    // Its other refusals (thresholds that clash) are sentences in English: they say the reason to a reader of it.
    if (e instanceof ApiError && e.detail && e.status !== 401 && state.lang !== "en") return t("error.invalid");
    if (e instanceof ApiError && e.detail) return e.detail;
    return t("error.load");
  }

  async function loadElders() {
    const all = [];
    for (let offset = 0; offset < 20000; offset += 500) {
      const page = await api(`/elders?status=all&limit=500&offset=${offset}`);
      all.push(...page.data);
      if (all.length >= page.count || page.data.length === 0) break;
    }
    state.elders = new Map(all.map((e) => [e.elder_id, e]));
  }
  async function ensureElder(id) {
    if (state.elders.has(id)) return;
    try {
      state.elders.set(id, await api(`/elders/${enc(id)}`));
    } catch {
      /* shown by id */
    }
  }
  const elderOf = (a) => state.elders.get(a.elder_id) || { name: a.elder_id, community: a.community, tz: DEFAULT_TZ };

  async function loadOpen({ cueNew = false } = {}) {
    const q = OPEN.map((s) => `state=${s}`).join("&");
    const cueing = cueNew && state.loadedOnce; // the first load of a session is what was there: no alarm
    const next = new Map();
    for (let offset = 0; offset < 5000; offset += 500) {
      const page = await api(`/alerts?${q}&limit=500&offset=${offset}&sort=-raised_at`);
      for (const a of page.data) next.set(a.alert_id, a);
      if (next.size >= page.count || page.data.length === 0) break;
    }
    if (held && next.has(held.id)) {
      held.alert = next.get(held.id); // open on the server until it is sent: not on her list meanwhile
      next.delete(held.id);
    }
    const before = state.open;
    state.open = next;
    state.loadedOnce = true;
    await Promise.all([...next.values()].map((a) => ensureElder(a.elder_id)));
    if (cueing) for (const a of next.values()) if (worthCue(a, before.get(a.alert_id))) cue(a, before.get(a.alert_id));
  }

  // -- live alerts (server-sent events over fetch, so the token stays in a header) ----------
  function startStream() {
    stopStream();
    const stream = { ctrl: new AbortController(), connected: false, lastId: null };
    state.stream = stream;
    follow(stream);
  }
  function stopStream() {
    if (state.stream) state.stream.ctrl.abort();
    state.stream = null;
    setLive(false);
  }
  // The server writes at least a keep-alive every 15 s (api/routes/alerts.py KEEPALIVE_S). A phone's link that died
  // without a word (a dead cell, a switch of networks) leaves the connection open on this side, carrying nothing:
  // a stream silent for this long is taken as dead and opened anew, which catches up on what was missed.
  const STREAM_SILENCE_MS = 40e3;
  async function follow(stream) {
    let retry = 3000;
    while (state.stream === stream) {
      const attempt = new AbortController(); // this connection's; the stream's own ends them all
      const dead = () => attempt.abort();
      stream.ctrl.signal.addEventListener("abort", dead);
      let silence;
      const heard = () => {
        clearTimeout(silence);
        silence = setTimeout(dead, STREAM_SILENCE_MS);
      };
      heard();
      try {
        const headers = { Accept: "text/event-stream", Authorization: `Bearer ${state.session.token}` };
        if (stream.lastId) headers["Last-Event-ID"] = stream.lastId;
        const res = await fetch("/alerts/stream", { headers, signal: attempt.signal, cache: "no-store" });
        if (res.status === 401) {
          signOut(t("error.expired"));
          return;
        }
        noteAccess(res);
        if (!res.ok || !res.body) throw new Error(`stream ${res.status}`);
        stream.connected = true;
        setLive(true);
        loadOpen({ cueNew: true }).then(refreshViews).catch(() => {}); // catch up on what happened meanwhile
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          heard();
          buf += value.replace(/\r\n?/g, "\n");
          let cut;
          while ((cut = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            const ev = { event: "message", data: [], id: null };
            for (const line of block.split("\n")) {
              const i = line.indexOf(":");
              if (i === 0) continue;
              const field = i < 0 ? line : line.slice(0, i);
              const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
              if (field === "event") ev.event = val;
              else if (field === "data") ev.data.push(val);
              else if (field === "id") ev.id = val;
              else if (field === "retry" && /^\d+$/.test(val)) retry = Number(val);
            }
            if (ev.id) stream.lastId = ev.id;
            if (ev.event === "alert" && ev.data.length) onAlert(JSON.parse(ev.data.join("\n")));
            else if (ev.event === "gone" && ev.data.length) onGone(JSON.parse(ev.data.join("\n")));
          }
        }
      } catch (e) {
        if (stream.ctrl.signal.aborted) return;
      } finally {
        clearTimeout(silence);
        stream.ctrl.signal.removeEventListener("abort", dead);
      }
      stream.connected = false;
      if (state.stream === stream) setLive(false);
      await new Promise((r) => setTimeout(r, retry));
    }
  }
  // Her elder moved to a community this user does not see: the case is another's now.
  function onGone(g) {
    if (!state.open.delete(g.alert_id)) return;
    state.fresh = state.fresh.filter((x) => x.alert_id !== g.alert_id);
    refreshViews();
  }
  function setLive(on) {
    const el = $("#live");
    el.dataset.on = String(on);
    el.textContent = t(on ? "live.on" : "live.off");
  }
  async function onAlert(a) {
    if (held?.id === a.alert_id) return void keepOpen(a); // she is recording it: no cue, not back on her list
    const before = state.open.get(a.alert_id);
    keepOpen(a);
    await ensureElder(a.elder_id);
    if (worthCue(a, before)) cue(a, before);
    refreshViews(a);
  }
  // A case waiting for someone that the page did not have open, or that turned graver since (a fall joined a
  // late rising: the server notifies and escalates it as a new raise, even if someone had taken it). The same
  // case again as grave as it was is not cued twice.
  function worthCue(a, before) {
    if (a.state !== "open" && a.state !== "notified") return false;
    return !before || SEVERITY_RANK[a.severity] < SEVERITY_RANK[before.severity];
  }

  // -- the cue: a banner, a chime (Web Audio, no file), a buzz on phones --------------------
  function unlockAudio() {
    try {
      state.audio = state.audio || new AudioContext();
      if (state.audio.state === "suspended") state.audio.resume();
    } catch {
      state.audio = null;
    }
  }
  function chime() {
    if (!state.sound || !state.audio) return;
    const ctx = state.audio;
    const t0 = ctx.currentTime + 0.02;
    [
      [880, 0],
      [660, 0.22],
      [880, 0.44],
    ].forEach(([freq, dt]) => {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = "sine";
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, t0 + dt);
      gain.gain.exponentialRampToValueAtTime(0.35, t0 + dt + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t0 + dt + 0.2);
      osc.connect(gain).connect(ctx.destination);
      osc.start(t0 + dt);
      osc.stop(t0 + dt + 0.22);
    });
  }
  function cue(a, before) {
    if (forMaintenance(a)) return; // maintenance's, not the cadres': no alarm for them
    state.cues += 1;
    document.body.dataset.cues = String(state.cues);
    // The banner names what is new: for a case that turned graver, the kind that joined it, not its first one.
    const joined = before ? (a.kinds_open || []).find((k) => !(before.kinds_open || []).includes(k)) : null;
    const news = { alert_id: a.alert_id, elder_id: a.elder_id, kind: joined || a.kind };
    state.fresh = [news, ...state.fresh.filter((x) => x.alert_id !== a.alert_id)].slice(0, 20);
    showBanner();
    chime();
    if (navigator.vibrate) navigator.vibrate([200, 100, 200]);
  }
  // The banner counts only new alerts that are still waiting for someone, as the list shows them:
  // one taken or closed meanwhile (here, by another cadre, or by the data) leaves the count.
  function waitingFresh() {
    return state.fresh.filter((x) => {
      const now = state.open.get(x.alert_id);
      return now && (now.state === "open" || now.state === "notified");
    });
  }
  function showBanner() {
    const banner = $("#banner");
    state.fresh = waitingFresh();
    const [news, ...rest] = state.fresh;
    if (!news) {
      banner.hidden = true;
      return;
    }
    const a = state.open.get(news.alert_id);
    $("#banner-text").textContent = t("banner.new", { name: elderOf(a).name, kind: t(`kind.${news.kind}`) });
    $("#banner-more").textContent = rest.length ? t("banner.more", { n: rest.length }) : "";
    const link = $("#banner-open");
    link.href = `#/elder/${enc(a.elder_id)}`;
    link.textContent = t("banner.open");
    banner.className = `banner sev-${a.severity}`;
    banner.hidden = false;
  }
  function updateTitle() {
    const n = [...state.open.values()].filter((a) => a.state !== "acknowledged" && !forMaintenance(a)).length;
    document.title = (state.session && n ? `(${n}) ` : "") + t("app.title");
  }
  let toastTimer;
  function toast(text, bad = false) {
    if (held) sendHeld(); // another message takes the held outcome's place, and with it the undo: it goes now
    showToast(text, { bad });
  }
  function showToast(text, { bad = false, undo = false, ms = 5000 } = {}) {
    const el = $("#toast");
    $("#toast-text").textContent = text;
    $("#toast-undo").hidden = !undo;
    el.className = bad ? "toast bad" : "toast";
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(hideToast, ms);
  }
  function hideToast() {
    clearTimeout(toastTimer);
    const undo = $("#toast-undo");
    const hadFocus = document.activeElement === undo;
    $("#toast").hidden = true;
    undo.hidden = true;
    if (hadFocus) $("h1", main)?.focus({ preventScroll: true }); // not lost to the page's top: back to the view
  }

  // -- routing ---------------------------------------------------------------------------------
  const ROUTES = [
    [/^#\/alerts$/, viewAlerts, "alerts"],
    [/^#\/elders$/, viewElders, "elders"],
    [/^#\/elder\/([^/]+)$/, viewElder, "alerts"],
    [/^#\/thresholds(?:\/(.+))?$/, viewThresholds, "thresholds"],
    [/^#\/devices(?:\?.*)?$/, viewDevices, "devices"],
  ];
  async function render({ focus = true } = {}) {
    const seq = ++state.seq;
    applyStatic();
    if (state.chart) {
      state.chart.destroy();
      state.chart = null;
    }
    if (!state.session) return viewLogin();
    const hash = location.hash || "#/alerts";
    const route = ROUTES.find(([re]) => re.test(hash));
    if (!route) {
      location.hash = "#/alerts";
      return;
    }
    for (const a of $$("#nav a")) {
      if (a.dataset.nav === route[2]) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    let args;
    try {
      args = hash.match(route[0]).slice(1).map((x) => (x === undefined ? x : decodeURIComponent(x)));
    } catch {
      location.hash = "#/alerts"; // a link cut short or mistyped (a lone %): there is no such page
      return;
    }
    main.dataset.view = "loading";
    main.innerHTML = `<p class="muted">${esc(t("loading"))}</p>`;
    try {
      await route[1](seq, ...args);
    } catch (e) {
      if (seq !== state.seq || !state.session) return;
      main.innerHTML = `<p class="error" role="alert">${esc(errText(e))}</p>`;
      main.dataset.view = "error";
    }
    if (focus && seq === state.seq) $("h1", main)?.focus({ preventScroll: true });
  }
  const current = (seq) => seq === state.seq;
  function refreshViews(changed) {
    updateTitle();
    showBanner();
    const view = main.dataset.view;
    if (view === "alerts") keepFocus(drawAlerts);
    else if (view === "elder" && (!changed || changed.elder_id === main.dataset.elder)) {
      keepFocus(drawElderAlerts);
      if (changed) loadElderHistory(main.dataset.elder).catch(() => {});
    }
  }
  // Redrawing a list must not throw a keyboard user's focus back to the top of the page.
  function keepFocus(draw) {
    const el = document.activeElement;
    const key = el && main.contains(el) ? focusKey(el) : null;
    draw();
    if (!key) return;
    const again = $$("a, button", main).find((x) => focusKey(x) === key);
    if (again) again.focus({ preventScroll: true });
  }
  const focusKey = (el) => `${el.dataset.action || ""}|${el.dataset.id || ""}|${el.getAttribute("href") || ""}`;
  function refreshTimes() {
    for (const el of $$("time[data-since]", main))
      el.textContent = t("alert.since", { t: fmt(el.dataset.since, el.dataset.tz), ago: ago(el.dataset.since) });
  }

  // -- sign in ---------------------------------------------------------------------------------
  function viewLogin() {
    main.dataset.view = "login";
    main.innerHTML = `
      <section class="login card">
        <h1 tabindex="-1">${esc(t("login.title"))}</h1>
        <p>${esc(t("login.intro"))}</p>
        <form id="login-form" novalidate>
          <label for="login-username">${esc(t("login.username"))}</label>
          <input id="login-username" name="username" autocomplete="username" autocapitalize="off" spellcheck="false" required>
          <label for="login-password">${esc(t("login.password"))}</label>
          <input id="login-password" name="password" type="password" autocomplete="current-password" required>
          <p id="login-error" class="error" role="alert"></p>
          <button class="primary big" type="submit">${esc(t("login.submit"))}</button>
        </form>
        <p class="muted small">${esc(t("login.privacy"))}</p>
      </section>`;
    $("#login-username").focus();
    $("#login-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      unlockAudio();
      const form = ev.currentTarget;
      const button = $("button", form);
      const error = $("#login-error");
      const username = form.username.value.trim();
      const password = form.password.value;
      if (!username || !password) {
        error.textContent = t("login.failed");
        return;
      }
      button.disabled = true;
      button.textContent = t("login.busy");
      error.textContent = "";
      try {
        const tok = await api("/auth/token", { method: "POST", form: { username, password, grant_type: "password" } });
        state.session = {
          token: tok.access_token,
          username: tok.username,
          role: tok.role,
          communities: tok.communities,
          expires: Date.now() + tok.expires_in * 1000,
        };
        sessionStorage.setItem(SESSION_KEY, JSON.stringify(state.session));
        await start();
        if (!location.hash || location.hash === "#/" || location.hash === "#") location.hash = "#/alerts";
        else render();
        restoreDraft();
      } catch (e) {
        button.disabled = false;
        button.textContent = t("login.submit");
        if (e.status === 401) error.textContent = t("login.failed");
        else if (e.status === 429) error.textContent = t("login.throttled", { s: e.retryAfter || "60" });
        else error.textContent = errText(e);
      }
    });
  }
  async function start() {
    state.open = new Map();
    state.loadedOnce = false;
    await loadElders();
    startStream();
  }
  // The note a cadre was typing when her session ended on its own (it expired, or was revoked): kept in this tab's
  // memory only, never on the screen, and given back to her alone when she signs in again.
  let draft = null;
  function keepDraft(s) {
    const note = $("#resolve-note").value;
    draft = resolving && $("#resolve-dialog").open && note.trim() ? { user: s.username, id: resolving.id, note } : null;
  }
  async function restoreDraft() {
    const d = draft;
    draft = null;
    if (!d || !state.session || d.user !== state.session.username) return;
    try {
      const a = await api(`/alerts/${enc(d.id)}`);
      if (OPEN.includes(a.state)) state.open.set(a.alert_id, a);
      else if (recordable(a)) closedByData.set(a.alert_id, a);
      else return toast(await refusedCase(d.id, new ApiError(409)), true);
      await ensureElder(a.elder_id);
      openResolve(d.id, null);
      $("#resolve-note").value = d.note;
    } catch (e) {
      toast(errText(e), true);
    }
  }
  function signOut(message) {
    const s = state.session;
    const unsent = release(); // signing out on purpose sends it first (the logout button); an ended session cannot
    if (!message) draft = null; // signed out on purpose: nothing of hers stays behind
    else if (unsent) draft = { user: unsent.user, id: unsent.id, note: unsent.note }; // the sheet comes back with it
    else if (s) keepDraft(s);
    state.session = null;
    sessionStorage.removeItem(SESSION_KEY);
    stopStream();
    state.open = new Map();
    state.elders = new Map();
    state.fresh = [];
    showBanner();
    // The outcome sheet stayed open over the sign-in form, with the elder's name, the case and the note begun.
    closeResolve();
    for (const id of ["resolve-title", "resolve-kind"]) $(`#${id}`).textContent = "";
    $("#resolve-note").value = "";
    closedByData.clear();
    unsentNotes.clear();
    if (s && !message) fetch("/auth/logout", { method: "POST", headers: { Authorization: `Bearer ${s.token}` } }).catch(() => {});
    history.replaceState(null, "", location.pathname + location.search);
    render();
    if (message && unsent) showToast(t("resolve.unsent", { outcome: t(`outcome.${unsent.outcome}`), reason: message }), { bad: true });
    else if (message) toast(message, true);
  }

  // -- open alerts -----------------------------------------------------------------------------
  function urgency(a, b) {
    const acked = (x) => (x.state === "acknowledged" ? 1 : 0);
    return (
      acked(a) - acked(b) ||
      SEVERITY_RANK[a.severity] - SEVERITY_RANK[b.severity] ||
      (b.escalation_level || 0) - (a.escalation_level || 0) ||
      Date.parse(a.since || a.data_time) - Date.parse(b.since || b.data_time)
    );
  }
  async function viewAlerts(seq) {
    await loadOpen();
    if (!current(seq)) return;
    main.innerHTML = `
      <h1 tabindex="-1">${esc(t("alerts.title"))} <span id="alert-count" class="count"></span></h1>
      <div id="alert-list"></div>
      <details id="device-alerts" class="device-alerts" hidden><summary></summary><div></div></details>`;
    main.dataset.view = "alerts";
    drawAlerts();
  }
  function drawAlerts() {
    const all = [...state.open.values()].sort(urgency);
    const people = all.filter((a) => !forMaintenance(a));
    const devices = all.filter(forMaintenance);
    $("#alert-count").textContent = t("alerts.count", { n: people.length });
    $("#alert-list").innerHTML = people.length
      ? people.map((a) => alertCard(a)).join("")
      : `<p class="empty card">${esc(t("alerts.none"))}</p>`;
    const det = $("#device-alerts");
    det.hidden = devices.length === 0;
    $("summary", det).textContent = t("alerts.devices", { n: devices.length });
    $("div", det).innerHTML = devices.map((a) => alertCard(a)).join("");
    updateTitle();
  }
  // What the case grouped: its other kinds (one case per elder), its occurrences (one per meter).
  function grouped(a) {
    const shown = toldOf(a).kind;
    const others = (a.kinds || []).filter((k) => k !== shown);
    const parts = [];
    if (others.length) parts.push(t("alert.kinds", { kinds: others.map((k) => t(`kind.${k}`)).join(t("alert.kinds_sep")) }));
    if ((a.occurrences || 1) > 1) parts.push(t("alert.occurrences", { n: a.occurrences }));
    return parts.length ? `<p class="grouped">${esc(parts.join(" · "))}</p>` : "";
  }
  // An open case as its texts tell it now: its gravest kind still open, in that kind's words (a fall that joined a
  // routine change's case is the fall); a closed one, or one from an API before `told`, as its first kind.
  function toldOf(a) {
    const now = a.told || {};
    return { kind: now.kind || a.kind, message: now.message || a.message, since: now.since || a.since };
  }
  function alertCard(a, { withName = true } = {}) {
    const e = elderOf(a);
    const told = toldOf(a);
    const since = told.since || a.data_time;
    const id = `a-${a.alert_id}`;
    const msg = (told.message && (told.message[state.lang] || told.message.zh)) || "";
    const place = [e.community || a.community, e.grid].filter(Boolean).join(" · ");
    const handle = can("handle") && !forMaintenance(a);
    const actions = [];
    if (handle && (a.state === "open" || a.state === "notified"))
      actions.push(`<button type="button" class="secondary" data-action="ack" data-id="${esc(a.alert_id)}">${esc(t("alert.ack"))}</button>`);
    if (handle)
      actions.push(`<button type="button" class="primary" data-action="resolve" data-id="${esc(a.alert_id)}">${esc(t("alert.resolve"))}</button>`);
    if (withName)
      actions.push(`<a class="button link" href="#/elder/${enc(a.elder_id)}" aria-label="${esc(t("alert.open_elder", { name: e.name }))}">${esc(t("banner.open"))} ›</a>`);
    return `
      <article class="alert-card card sev-${esc(a.severity)} st-${esc(a.state)}" data-alert="${esc(a.alert_id)}" data-elder="${esc(a.elder_id)}" aria-labelledby="${esc(id)}">
        <div class="tags">
          <span class="badge sev">${esc(t(`severity.${a.severity}`))}</span>
          ${withName ? `<span class="kind">${esc(t(`kind.${told.kind}`))}</span>` : ""}
          <span class="badge state">${esc(t(`state.${a.state}`))}</span>
        </div>
        <h2 id="${esc(id)}">${withName ? `<a href="#/elder/${enc(a.elder_id)}">${esc(e.name)}</a>` : esc(t(`kind.${told.kind}`))}</h2>
        ${withName ? `<p class="place">${esc(place)}</p>` : ""}
        <p class="msg">${esc(msg)}</p>
        ${grouped(a)}
        <p class="when"><time datetime="${esc(since)}" data-since="${esc(since)}" data-tz="${esc(e.tz || DEFAULT_TZ)}">${esc(t("alert.since", { t: fmt(since, e.tz), ago: ago(since) }))}</time>
          · <span class="basis">${esc(t(`alert.basis.${a.basis}`))}</span></p>
        ${a.acknowledged_by ? `<p class="who">${esc(t("alert.ack_by", { who: a.acknowledged_by }))}</p>` : ""}
        ${actions.length ? `<div class="actions">${actions.join("")}</div>` : ""}
      </article>`;
  }

  async function acknowledge(id) {
    try {
      const a = await api(`/alerts/${enc(id)}/ack`, { method: "POST", body: { note: "" }, timeoutMs: ACTION_TIMEOUT_MS });
      state.open.set(a.alert_id, a);
      toast(t("ack.done"));
      refreshViews(a);
    } catch (e) {
      toast(e.status === 409 ? await refusedCase(id, e) : errText(e), true);
    }
  }
  // A 409: someone else took or closed the case meanwhile (her page had not heard yet). What it is now, in words:
  // who and what, the list updated. "Reload and try again" would be refused the same.
  async function refusedCase(id, e) {
    let a;
    try {
      a = await api(`/alerts/${enc(id)}`);
    } catch {
      return errText(e);
    }
    if (OPEN.includes(a.state)) state.open.set(a.alert_id, a);
    else state.open.delete(a.alert_id);
    refreshViews(a);
    const tz = elderOf(a).tz;
    if (a.state === "acknowledged") return t("conflict.taken", { who: a.acknowledged_by || "", when: fmt(a.acknowledged_at, tz) });
    if (a.state !== "resolved") return errText(e);
    if (a.resolved_by === SYSTEM_ACTOR && SYSTEM_OUTCOMES.includes(a.outcome))
      return t("conflict.too_late", { when: fmt(a.resolved_at, tz), days: OUTCOME_WINDOW_DAYS });
    const who = a.resolved_by === SYSTEM_ACTOR ? t("history.system") : a.resolved_by || "";
    return t("conflict.resolved", { who, when: fmt(a.resolved_at, tz), outcome: t(`outcome.${a.outcome}`) });
  }

  // -- an outcome held for its undo window -----------------------------------------------------------------------
  // One tap on an outcome was final: a thumb on "误报" for a real emergency (or "已送医" for a false one) wrote the
  // record and the reports, and taught her detectors, at once. The tap now closes the sheet and takes the case off
  // the list; the toast says what will be recorded, with an undo, for UNDO_MS. It is sent when that time is over,
  // at once when the page is hidden or left (keepalive: the request outlives the page), when she starts on another
  // case, or when another message takes the toast. What goes wrong then is said in the toast, the case back on her list.
  let held = null; // { id, outcome, note, alert, closed (a case the data had closed), user, opener, timer }
  const unsentNotes = new Map(); // a case's note whose outcome the API did not take when it was sent
  // A case the server sent as it is now; the held one stays off the lists until it is sent or undone.
  function keepOpen(a) {
    if (held && held.id === a.alert_id) held.alert = a;
    else if (OPEN.includes(a.state)) state.open.set(a.alert_id, a);
    else state.open.delete(a.alert_id);
  }
  function holdOutcome(id, outcome, note) {
    const alert = state.open.get(id) || closedByData.get(id);
    const opener = resolving?.opener;
    held = { id, outcome, note, alert, closed: !state.open.has(id), user: state.session.username, opener };
    held.timer = setTimeout(sendHeld, UNDO_MS);
    dropCase(id);
    closeResolve();
    refreshViews(alert);
    showToast(t("resolve.pending", { outcome: t(`outcome.${outcome}`) }), { undo: true, ms: UNDO_MS });
    $("#toast-undo").focus(); // the button she tapped from left with the case: the keyboard goes to the undo
  }
  // Ends the held outcome's window without sending it; returns it.
  function release() {
    const h = held;
    held = null;
    if (!h) return null;
    clearTimeout(h.timer);
    if (!$("#toast-undo").hidden) hideToast();
    return h;
  }
  function putBack(h) {
    if (h.closed) closedByData.set(h.id, h.alert);
    else state.open.set(h.id, h.alert);
    refreshViews(h.alert);
  }
  function undoHeld() {
    const h = release();
    if (!h) return;
    putBack(h);
    openResolve(h.id, h.opener);
    $("#resolve-note").value = h.note;
  }
  async function sendHeld({ leaving = false } = {}) {
    const h = release();
    if (!h) return;
    const outcome = t(`outcome.${h.outcome}`);
    try {
      const a = await api(`/alerts/${enc(h.id)}/resolve`, {
        method: "POST",
        body: { outcome: h.outcome, note: h.note.trim() },
        timeoutMs: ACTION_TIMEOUT_MS,
        keepalive: leaving,
      });
      resolved(a, h.outcome);
    } catch (e) {
      if (!state.session) {
        // Her session ended: signing in again in this tab brings the sheet back with her note.
        draft = { user: h.user, id: h.id, note: h.note };
        return showToast(t("resolve.unsent", { outcome, reason: errText(e) }), { bad: true });
      }
      putBack(h);
      unsentNotes.set(h.id, h.note); // the sheet opens with it again: she taps an outcome once more
      const reason = e.status === 409 ? await refusedCase(h.id, e) : errText(e);
      showToast(t("resolve.unsent", { outcome, reason }), { bad: true });
    }
  }
  function dropCase(id) {
    unsentNotes.delete(id);
    state.open.delete(id);
    closedByData.delete(id);
    state.fresh = state.fresh.filter((x) => x.alert_id !== id);
    showBanner();
  }
  // The API recorded her outcome: the case leaves her lists, and she is told.
  function resolved(a, outcome) {
    dropCase(a.alert_id);
    toast(t("resolve.done", { outcome: t(`outcome.${outcome}`) }));
    refreshViews(a);
  }

  let resolving = null;
  const closedByData = new Map(); // the elder's cases the data closed, that a person may still record
  // A case the data closed (use resumed, cleared) within the window: the cadre who visits anyway records what they found.
  function recordable(a) {
    return (
      can("handle") &&
      !forMaintenance(a) &&
      a.state === "resolved" &&
      a.resolved_by === SYSTEM_ACTOR &&
      SYSTEM_OUTCOMES.includes(a.outcome) &&
      Date.now() - Date.parse(a.resolved_at) <= OUTCOME_WINDOW_DAYS * 86400e3
    );
  }
  function openResolve(id, opener) {
    if (held) sendHeld(); // she starts on another case: the one she just tapped goes now
    const a = state.open.get(id) || closedByData.get(id);
    if (!a) return;
    resolving = { id, opener };
    const dialog = $("#resolve-dialog");
    $("#resolve-title").textContent = t("resolve.title", { name: elderOf(a).name });
    // A case the detector took back (one misread reading): she is told no water ran, and that her record changes no threshold.
    const withdrawn = (a.kinds_withdrawn || []).includes(a.kind);
    const after =
      a.state !== "resolved"
        ? ""
        : ` · ${withdrawn ? t("resolve.withdrawn") : t("resolve.after_close", { when: fmt(a.resolved_at, elderOf(a).tz) })}`;
    const told = toldOf(a);
    $("#resolve-kind").textContent = `${t(`kind.${told.kind}`)} · ${(told.message && (told.message[state.lang] || told.message.zh)) || ""}${after}`;
    $("#resolve-note").value = unsentNotes.get(id) ?? "";
    $("#resolve-note").placeholder = t("resolve.note_hint");
    $("#resolve-error").textContent = "";
    $("#resolve-outcomes").innerHTML = OUTCOMES.map(
      (o) => `<button type="submit" class="outcome o-${o}" name="outcome" value="${o}" data-outcome="${o}">${esc(t(`outcome.${o}`))}</button>`,
    ).join("");
    dialog.showModal();
  }
  async function submitResolve(ev) {
    ev.preventDefault();
    const outcome = ev.submitter?.value;
    if (!resolving || !outcome) return;
    const id = resolving.id;
    if (UNDO_MS > 0) return holdOutcome(id, outcome, $("#resolve-note").value);
    const buttons = $$("#resolve-outcomes button");
    buttons.forEach((b) => (b.disabled = true));
    try {
      const a = await api(`/alerts/${enc(id)}/resolve`, {
        method: "POST",
        body: { outcome, note: $("#resolve-note").value.trim() },
        timeoutMs: ACTION_TIMEOUT_MS,
      });
      closeResolve();
      resolved(a, outcome);
    } catch (e) {
      $("#resolve-error").textContent = e.status === 409 ? await refusedCase(id, e) : errText(e);
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  }
  function closeResolve() {
    const dialog = $("#resolve-dialog");
    if (dialog.open) dialog.close();
    const opener = resolving?.opener;
    resolving = null;
    if (!opener) return;
    // Her button, or the one drawn in its place since (the list redrawn while the sheet was open, or after an undo).
    const again = document.contains(opener) ? opener : $$("a, button", main).find((x) => focusKey(x) === focusKey(opener));
    again?.focus();
  }

  // -- one elder -----------------------------------------------------------------------------
  async function viewElder(seq, id) {
    let elder;
    try {
      elder = await api(`/elders/${enc(id)}`);
    } catch (e) {
      if (!current(seq)) return;
      main.innerHTML = `<p><a href="#/alerts">‹ ${esc(t("elder.back"))}</a></p><h1 tabindex="-1">${esc(id)}</h1>
        <p class="error card" role="alert">${esc(errText(e))}</p>`;
      main.dataset.view = "elder-missing";
      return;
    }
    if (!current(seq)) return;
    state.elders.set(id, { ...state.elders.get(id), ...elder });
    const tz = shownZone(elder.tz);
    const place = [elder.district, elder.street, elder.community, elder.grid].filter(Boolean).join(" · ");
    const home = [elder.building, elder.room].filter(Boolean).join(" ");
    main.dataset.elder = id;
    main.innerHTML = `
      <p class="back"><a href="#/alerts">‹ ${esc(t("elder.back"))}</a></p>
      <header class="elder-head">
        <h1 tabindex="-1">${esc(elder.name)}</h1>
        <p>${esc(place)}</p>
        <p><span class="muted">${esc(t("elder.place"))}</span> ${esc(home || "—")} ·
           <span class="muted">${esc(t("elder.meter"))}</span> ${esc(elder.meter_id || "—")}</p>
        ${elder.consent === false ? `<p id="no-consent" class="card note" role="status">${esc(t("elder.no_consent"))}</p>` : ""}
      </header>
      <div class="elder-grid">
        <section id="s-open" aria-labelledby="h-open"><h2 id="h-open">${esc(t("elder.open_alerts"))}</h2><div id="elder-open"></div></section>
        <section id="s-contacts" class="card" aria-labelledby="h-contacts" ${elder.contacts === null ? "hidden" : ""}>
          <h2 id="h-contacts">${esc(t("elder.contacts"))}</h2>
          ${contactsHtml(elder.contacts || [])}
        </section>
        <section id="s-chart" class="card" aria-labelledby="h-chart" ${can("water") ? "" : "hidden"}>
          <h2 id="h-chart">${esc(t("elder.chart"))}</h2>
          <p class="small muted">${esc(t("elder.chart_hint"))}</p>
          <p id="chart-note" class="small note" hidden></p>
          <div id="chart" class="chart" role="img"></div>
          <details class="daily"><summary>${esc(t("elder.daily"))}</summary><div id="daily"></div></details>
        </section>
        <section id="s-away" class="card" aria-labelledby="h-away">
          <h2 id="h-away">${esc(t("elder.away"))}</h2>
          <p class="small muted">${esc(t("elder.away_hint"))}</p>
          <ul id="away-list" class="away-list"></ul>
          ${can("away") ? awayFormHtml() : ""}
        </section>
        <section id="s-history" aria-labelledby="h-history"><h2 id="h-history">${esc(t("elder.history"))}</h2><ol id="history" class="history"></ol></section>
      </div>`;
    main.dataset.view = "elder";
    if (can("away")) bindAwayForm(id);
    await Promise.all([loadElderHistory(id), loadAway(id), can("water") ? drawChart(seq, elder, tz) : null]);
  }
  function contactsHtml(contacts) {
    if (!contacts.length) return `<p class="muted">${esc(t("elder.no_contacts"))}</p>`;
    return `<ul class="contacts">${contacts
      .map(
        (c) => `<li><span>${esc(c.name)} <span class="muted">${esc(c.relation)}</span></span>
          ${c.phone ? `<a class="button secondary" href="tel:${esc(c.phone.replace(/[^0-9+]/g, ""))}" aria-label="${esc(t("elder.call", { name: c.name }))}">☎ ${esc(c.phone)}</a>` : ""}</li>`,
      )
      .join("")}</ul>`;
  }
  async function loadElderHistory(id) {
    const page = await api(`/alerts?elder_id=${enc(id)}&limit=100&sort=-raised_at`);
    if (main.dataset.elder !== id || main.dataset.view !== "elder") return;
    for (const a of page.data) keepOpen(a);
    const e = state.elders.get(id) || {};
    $("#history").innerHTML = page.data.length
      ? page.data
          .map((a) => {
            const end = a.state === "resolved" ? t(`outcome.${a.outcome}`) : t(`state.${a.state}`);
            // Closed by the data: the stored note is the machine's text in both languages; say it in one.
            const auto = a.resolved_by === SYSTEM_ACTOR;
            const closed =
              a.state === "resolved" && a.resolved_at
                ? t("history.closed", { when: fmt(a.resolved_at, e.tz), who: auto ? t("history.system") : a.resolved_by || "" })
                : "";
            const note = a.note && !auto ? noteText(a.note) : "";
            const record = recordable(a) && held?.id !== a.alert_id;
            if (record) closedByData.set(a.alert_id, a);
            return `<li class="st-${esc(a.state)}"><time datetime="${esc(a.raised_at)}">${esc(fmt(a.since || a.data_time, e.tz))}</time>
              <strong>${esc(t(`kind.${a.kind}`))}</strong> <span class="badge state">${esc(end)}</span>
              ${closed ? `<div class="small closed">${esc(closed)}</div>` : ""}
              ${note ? `<div class="small muted">${esc(note)}</div>` : ""}
              ${record ? `<button type="button" class="secondary record" data-action="record" data-id="${esc(a.alert_id)}">${esc(t("history.record"))}</button>` : ""}</li>`;
          })
          .join("")
      : `<li class="muted">${esc(t("elder.no_history"))}</li>`;
    drawElderAlerts();
  }
  // The note tapwatch writes on the cases a person's change of the registry closes (api/routes/elders.py): an
  // English phrase before the reason she gave, said here in the reader's language.
  const CLOSING_NOTES = [
    ["consent withdrawn: ", "history.note.consent"],
    ["elder retired: ", "history.note.retired"],
    ["meter replaced: ", "history.note.meter"],
  ];
  // What every note on a purged elder's cases becomes (store/retention.py PURGED), as her name becomes "(已清除)".
  const PURGED_NOTE = "(purged)";
  function noteText(note) {
    if (note === PURGED_NOTE) return t("history.note.purged");
    const known = CLOSING_NOTES.find(([phrase]) => note.startsWith(phrase));
    if (!known) return note;
    const reason = note.slice(known[0].length).trim();
    return reason ? t(known[1], { reason }) : t(known[1], { reason: "" }).replace(/[：:]\s*$/, "");
  }
  function drawElderAlerts() {
    const id = main.dataset.elder;
    const box = $("#elder-open");
    if (!box) return;
    const mine = [...state.open.values()].filter((a) => a.elder_id === id).sort(urgency);
    box.innerHTML = mine.length ? mine.map((a) => alertCard(a, { withName: false })).join("") : `<p class="muted">${esc(t("elder.no_open"))}</p>`;
    updateTitle();
  }

  // The chart: last 7 days per hour, bars over the band of this elder's usual use at that hour.
  async function drawChart(seq, elder, tz) {
    const box = $("#chart");
    const end = Date.now();
    const start = end - 7 * 86400e3;
    // Every meter she had in the 7 days: after a replacement the days before it are the old meter's.
    const read = (elder.meters || []).filter(
      (m) => Date.parse(m.installed_at) < end && (!m.retired_at || Date.parse(m.retired_at) > start),
    );
    if (!read.length) {
      box.textContent = t("elder.chart_empty");
      return;
    }
    const span = `every=hour&start=${enc(new Date(start).toISOString())}&end=${enc(new Date(end).toISOString())}`;
    const [usage, routine] = await Promise.all([
      Promise.all(read.map((m) => api(`/meters/${enc(m.meter_id)}/usage?${span}`))).then(mergedUsage),
      api(`/elders/${enc(elder.elder_id)}/routine`).catch(() => null),
    ]);
    if (!current(seq)) return;
    const byHour = new Map(usage.data.map((b) => [Math.floor(Date.parse(b.start) / 1000), b]));
    // The hours are the elder's: at UTC+5:30 they start at half past in UTC, as the API's buckets do.
    const sub = usage.data.length ? (((Date.parse(usage.data[0].start) / 1000) % 3600) + 3600) % 3600 : 0;
    const xs = [];
    for (let x = Math.floor((start / 1000 - sub) / 3600) * 3600 + sub; x <= end / 1000; x += 3600) xs.push(x);
    const used = xs.map((x) => (byHour.has(x) ? byHour.get(x).usage_l : null));
    const lo = [];
    const hi = [];
    for (const x of xs) {
      const [l, h] = usualBand(routine, x, tz);
      lo.push(l);
      hi.push(h);
    }
    const top = Math.max(5, ...used.filter((v) => v != null), ...hi) * 1.1;
    const gaps = used.map((v) => (v == null ? top : null));
    // Summary for screen readers and the daily table.
    const total = used.reduce((s, v) => s + (v || 0), 0);
    const lastUse = [...usage.data].reverse().find((b) => b.usage_l >= 0.5);
    box.setAttribute("aria-label", t("elder.chart_label", {
      total: Math.round(total), avg: Math.round(total / 7), last: lastUse ? fmt(lastUse.start, tz) : t("elder.no_use"),
    }));
    dailyTable(usage.data, tz);
    if (!usage.data.length) {
      box.textContent = t("elder.chart_empty");
      return;
    }
    // Days with readings, not the window read (always 28): a meter installed two days ago is not a learned month.
    if (routine && routine.days_observed < 7) {
      const note = $("#chart-note");
      note.textContent = t("elder.chart_learning", { days: routine.days_observed });
      note.hidden = false;
    }
    const litres = (u, v) => (v == null ? "—" : `${(+v).toFixed(1)} ${t("chart.litres")}`);
    const opts = {
      width: Math.max(280, box.clientWidth),
      height: box.clientWidth < 500 ? 200 : 260,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), tz),
      scales: { x: { time: true }, y: { range: () => [0, top] } },
      cursor: { drag: { x: false, y: false } },
      legend: { live: true },
      series: [
        { label: t("chart.time"), value: (u, v) => (v == null ? "" : fmt(new Date(v * 1e3).toISOString(), tz)) },
        { label: t("chart.usual_high"), stroke: "rgba(26,127,55,0.7)", width: 1, paths: uPlot.paths.stepped({ align: 1 }), points: { show: false }, value: litres },
        { label: t("chart.usual_low"), stroke: "rgba(26,127,55,0.7)", width: 1, paths: uPlot.paths.stepped({ align: 1 }), points: { show: false }, value: litres },
        { label: t("chart.used"), stroke: "#0b5cad", fill: "rgba(11,92,173,0.85)", width: 0, paths: uPlot.paths.bars({ size: [0.85, 30], align: 1 }), points: { show: false }, value: litres },
        { label: "", show: true, stroke: "transparent", fill: "rgba(90,90,90,0.13)", width: 0, paths: uPlot.paths.bars({ size: [1, 100], align: 1 }), points: { show: false }, value: () => "" },
      ],
      bands: [{ series: [1, 2], fill: "rgba(26,127,55,0.22)" }],
      axes: [
        { space: 56, values: (u, splits) => splits.map((s) => tick(s, tz)), stroke: "#333", grid: { stroke: "#e3e6ea" } },
        { size: 48, values: (u, splits) => splits.map((v) => `${v}`), label: t("chart.litres"), labelSize: 16, stroke: "#333", grid: { stroke: "#e3e6ea" } },
      ],
    };
    box.textContent = "";
    if (state.chart) state.chart.destroy();
    state.chart = new uPlot(opts, [xs, hi, lo, used, gaps], box);
    const legendRows = $$(".u-legend .u-series", box);
    if (legendRows[4]) legendRows[4].hidden = true;
  }
  // The hourly buckets of several meters as one meter's: the same hours of the elder, litres and readings added.
  function mergedUsage(pages) {
    const byStart = new Map();
    for (const b of pages.flatMap((p) => p.data)) {
      const key = Date.parse(b.start);
      const seen = byStart.get(key);
      byStart.set(key, seen ? { ...seen, usage_l: seen.usage_l + b.usage_l, readings: seen.readings + b.readings } : b);
    }
    return { data: [...byStart.entries()].sort((a, b) => a[0] - b[0]).map(([, b]) => b) };
  }
  function tick(s, tz) {
    const p = localParts(s, tz);
    return p.hour === 0 ? `${+p.month}-${+p.day}` : `${String(p.hour).padStart(2, "0")}:00`;
  }
  function localParts(epochS, tz) {
    const parts = Object.fromEntries(formatter(tz, "parts").formatToParts(new Date(epochS * 1e3)).map((p) => [p.type, p.value]));
    return { ...parts, hour: Number(parts.hour) % 24, weekend: parts.weekday === "Sat" || parts.weekday === "Sun" };
  }
  // Usual range for the hour starting at x: top = the typical litres of the half hours where use is common
  // (at least 1 day in 4); bottom = half the typical litres of the half hours where use is near certain (3 in 4).
  function usualBand(routine, x, tz) {
    if (!routine) return [null, null];
    const p = localParts(x, tz);
    const slots = (p.weekend ? routine.weekend : routine.weekday).filter((s) => Math.floor(s.slot / 2) === p.hour);
    let lo = 0;
    let hi = 0;
    for (const s of slots) {
      if (s.p_use >= 0.25) hi += s.typical_l;
      if (s.p_use >= 0.75) lo += 0.5 * s.typical_l;
    }
    return [lo, hi];
  }
  function dailyTable(buckets, tz) {
    const days = new Map();
    for (const b of buckets) {
      const day = b.start.slice(0, 10); // the API gives local times of the elder
      days.set(day, (days.get(day) || 0) + b.usage_l);
    }
    const rows = [...days.entries()]
      .map(([day, l]) => `<tr><th scope="row">${esc(fmt(`${day}T12:00:00Z`, "UTC", "day"))}</th><td>${Math.round(l)}</td></tr>`)
      .join("");
    $("#daily").innerHTML = `<table><thead><tr><th scope="col">${esc(t("elder.day"))}</th><th scope="col">${esc(t("elder.litres"))}</th></tr></thead><tbody>${rows}</tbody></table>`;
  }

  // Away and snooze windows.
  function awayFormHtml() {
    return `
      <form id="away-form" class="away-form">
        <label for="away-kind">${esc(t("away.kind"))}</label>
        <select id="away-kind" name="kind">
          <option value="away">${esc(t("away.kind.away"))}</option>
          <option value="snooze">${esc(t("away.kind.snooze"))}</option>
        </select>
        <div class="quick" role="group" aria-label="${esc(t("away.quick"))}">
          <span class="small muted">${esc(t("away.quick"))}</span>
          ${[1, 3, 7].map((n) => `<button type="button" class="chip" data-action="away-days" data-days="${n}">${esc(t("away.days", { n }))}</button>`).join("")}
        </div>
        <div class="two">
          <div><label for="away-start">${esc(t("away.start"))}</label><input id="away-start" name="start" type="datetime-local" required></div>
          <div><label for="away-end">${esc(t("away.end"))}</label><input id="away-end" name="end" type="datetime-local" required></div>
        </div>
        <label for="away-reason">${esc(t("away.reason"))}</label>
        <input id="away-reason" name="reason" maxlength="500">
        <p id="away-error" class="error" role="alert"></p>
        <button type="submit" class="primary">${esc(t("away.add"))}</button>
      </form>`;
  }
  // The form's fields hold the elder's clock, as every time on the page does, whatever the device's zone.
  function wallParts(ms, tz) {
    const parts = formatter(tz, "wall").formatToParts(new Date(ms));
    const p = Object.fromEntries(parts.map((x) => [x.type, x.value]));
    return { ...p, hour: String(Number(p.hour) % 24).padStart(2, "0") };
  }
  function localInput(ms, tz) {
    const p = wallParts(ms, tz);
    return `${p.year}-${p.month}-${p.day}T${p.hour}:${p.minute}`;
  }
  // A field's "YYYY-MM-DDTHH:MM" on the elder's clock as a time: read as UTC, less the zone's offset then
  // (asked again at the first guess, for a clock change in between).
  function fromInput(value, tz) {
    const typed = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.exec(value);
    if (!typed) return new Date(NaN); // empty or half typed: the range check says so
    const wall = Date.parse(`${value}${typed[1] ? "" : ":00"}Z`);
    const offset = (ms) => {
      const p = wallParts(ms, tz);
      return Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second) - Math.floor(ms / 1000) * 1000;
    };
    return new Date(wall - offset(wall - offset(wall)));
  }
  const elderZone = (id) => (state.elders.get(id) || {}).tz;
  function setAwayDays(n) {
    const now = Date.now();
    const tz = elderZone(main.dataset.elder);
    $("#away-start").value = localInput(now, tz);
    $("#away-end").value = localInput(now + n * 86400e3, tz);
  }
  function bindAwayForm(id) {
    setAwayDays(3);
    $("#away-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const f = ev.currentTarget;
      const start = fromInput(f.start.value, elderZone(id));
      const end = fromInput(f.end.value, elderZone(id));
      const error = $("#away-error");
      if (!(end > start)) {
        error.textContent = t("away.bad_range");
        return;
      }
      error.textContent = "";
      try {
        await api(`/elders/${enc(id)}/away`, {
          method: "POST",
          body: { kind: f.kind.value, start: start.toISOString(), end: end.toISOString(), reason: f.reason.value.trim() },
        });
        f.reason.value = "";
        toast(t("away.saved"));
        await loadAway(id);
      } catch (e) {
        error.textContent = errText(e);
      }
    });
  }
  async function loadAway(id) {
    const page = await api(`/elders/${enc(id)}/away?limit=50&sort=-start`);
    const list = $("#away-list");
    if (!list || main.dataset.elder !== id) return;
    const tz = (state.elders.get(id) || {}).tz;
    const now = Date.now();
    list.innerHTML = page.data.length
      ? page.data
          .map((w) => {
            const running = Date.parse(w.start) <= now && now < Date.parse(w.end);
            const del = can("away")
              ? `<button type="button" class="secondary small" data-action="away-delete" data-id="${w.window_id}" aria-label="${esc(t("away.delete_label", { start: fmt(w.start, tz), end: fmt(w.end, tz) }))}">${esc(t("away.delete"))}</button>`
              : "";
            return `<li class="${running ? "running" : ""}"><div><strong>${esc(t(`away.kind.${w.kind}`))}</strong>
              ${running ? `<span class="badge state">${esc(t("away.now"))}</span>` : ""}
              <div>${esc(fmt(w.start, tz))} – ${esc(fmt(w.end, tz))}</div>
              <div class="small muted">${esc(w.reason)} ${esc(t("away.by", { who: w.created_by }))}</div></div>${del}</li>`;
          })
          .join("")
      : `<li class="muted">${esc(t("elder.away_none"))}</li>`;
  }
  async function deleteAway(windowId) {
    const id = main.dataset.elder;
    try {
      await api(`/elders/${enc(id)}/away/${enc(windowId)}`, { method: "DELETE" });
      toast(t("away.deleted"));
      await loadAway(id);
    } catch (e) {
      toast(errText(e), true);
    }
  }

  // -- elders list ---------------------------------------------------------------------------
  async function viewElders(seq) {
    main.innerHTML = `
      <h1 tabindex="-1">${esc(t("elders.title"))}</h1>
      <div class="search"><label for="elder-q" class="sr-only">${esc(t("elders.search"))}</label>
        <input id="elder-q" type="search" placeholder="${esc(t("elders.search"))}" autocomplete="off"></div>
      <ul id="elder-list" class="elder-list"></ul>`;
    main.dataset.view = "elders";
    let timer;
    const load = async () => {
      const q = $("#elder-q").value.trim();
      const page = await api(`/elders?limit=500&sort=-open_alerts${q ? `&q=${enc(q)}` : ""}`);
      if (!current(seq)) return;
      $("#elder-list").innerHTML = page.data.length
        ? page.data
            .map(
              (e) => `<li><a class="card elder-row" href="#/elder/${enc(e.elder_id)}">
                <span><strong>${esc(e.name)}</strong> <span class="muted small">${esc(e.elder_id)}</span><br>
                <span class="small">${esc([e.community, e.grid].filter(Boolean).join(" · "))}</span></span>
                ${e.open_alerts ? `<span class="badge alerting">${esc(t("elders.open", { n: e.open_alerts }))}</span>` : ""}
                ${e.consent === false ? `<span class="badge state no-consent">${esc(t("elders.no_consent"))}</span>` : ""}</a></li>`,
            )
            .join("")
        : `<li class="muted">${esc(t("elders.none"))}</li>`;
    };
    $("#elder-q").addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => load().catch((e) => toast(errText(e), true)), 250);
    });
    await load();
  }

  // -- thresholds with a backtest preview ----------------------------------------------------
  // The communities of the elders the user sees: one of her account's without any elder yet is not there for
  // the API (404), and opened first it left the page with nothing but that refusal.
  function myCommunities() {
    return [...new Set([...state.elders.values()].map((e) => e.community))].sort();
  }
  async function viewThresholds(seq, community) {
    const communities = myCommunities();
    community = community || communities[0];
    if (!community) {
      main.innerHTML = `<h1 tabindex="-1">${esc(t("thresholds.title"))}</h1><p class="muted">${esc(t("elders.none"))}</p>`;
      main.dataset.view = "thresholds";
      return;
    }
    const [spec, global, local] = await Promise.all([
      api("/thresholds/spec"),
      api("/thresholds/global"),
      api(`/thresholds/community/${enc(community)}`),
    ]);
    if (!current(seq)) return;
    const writable = can("thresholds");
    const rows = spec.data.map((s) => {
      const source = s.name in local.values ? "community" : s.name in global.values ? "global" : "default";
      const value = source === "community" ? local.values[s.name] : source === "global" ? global.values[s.name] : s.default;
      return { ...s, value, source };
    });
    state.thresholds = { community, rows };
    state.previewSig = null;
    main.innerHTML = `
      <h1 tabindex="-1">${esc(t("thresholds.title"))}</h1>
      <p class="muted">${esc(t("thresholds.intro"))}</p>
      <form id="threshold-form" class="card thresholds" novalidate>
        <label for="th-community">${esc(t("thresholds.community"))}</label>
        <select id="th-community">${communities.map((c) => `<option ${c === community ? "selected" : ""}>${esc(c)}</option>`).join("")}</select>
        ${rows
          .map(
            (r) => `<div class="th-row">
              <label for="th-${esc(r.name)}">${esc(r.description[state.lang] || r.description.zh)}</label>
              <div class="th-input"><input id="th-${esc(r.name)}" name="${esc(r.name)}" type="number" inputmode="decimal" step="any"
                min="${r.low}" max="${r.high}" value="${r.value}" ${writable ? "" : "readonly"} aria-describedby="th-${esc(r.name)}-hint">
                <span class="unit">${esc(unit(r.unit))}</span></div>
              <p id="th-${esc(r.name)}-hint" class="small muted"><code>${esc(r.name)}</code> · ${esc(t(`thresholds.source.${r.source}`))} ·
                ${esc(t("thresholds.range", { low: r.low, high: r.high, unit: unit(r.unit) }))}</p></div>`,
          )
          .join("")}
        ${
          writable
            ? `<div class="actions"><button type="button" class="secondary" data-action="preview">${esc(t("thresholds.preview"))}</button></div>
               <div id="backtest-result" aria-live="polite"></div>
               <label for="th-reason">${esc(t("thresholds.reason"))}</label>
               <textarea id="th-reason" rows="2" maxlength="500" required></textarea>
               <p id="th-error" class="error" role="alert"></p>
               <button type="submit" class="primary">${esc(t("thresholds.save"))}</button>`
            : `<p class="muted">${esc(t("thresholds.readonly"))}</p>`
        }
      </form>`;
    main.dataset.view = "thresholds";
    $("#th-community").addEventListener("change", (ev) => (location.hash = `#/thresholds/${enc(ev.target.value)}`));
    if (writable) {
      $("#threshold-form").addEventListener("submit", saveThresholds);
      // Start the proposal-independent part of the preview now, while values are chosen: the first Preview is then quick.
      api("/backtest/prepare", { method: "POST", body: { community, days: 30 } }).catch(() => {});
    }
  }
  function changedThresholds() {
    const changed = {};
    for (const r of state.thresholds.rows) {
      const input = $(`#th-${r.name}`);
      const v = Number(input.value);
      if (input.value.trim() !== "" && Number.isFinite(v) && v !== r.value) changed[r.name] = v;
    }
    return changed;
  }
  function thresholdsValid() {
    const bad = $$("#threshold-form input[type=number]").find((i) => !i.checkValidity() || i.value.trim() === "");
    if (bad) {
      $("#th-error").textContent = `${bad.labels[0]?.textContent || bad.name}: ${bad.validationMessage || t("error.load")}`;
      bad.focus();
      return false;
    }
    $("#th-error").textContent = "";
    return true;
  }
  async function previewThresholds() {
    if (!thresholdsValid()) return;
    const changed = changedThresholds();
    const out = $("#backtest-result");
    out.innerHTML = `<p class="muted">${esc(t("thresholds.previewing"))}</p>`;
    try {
      const r = await api("/backtest", { method: "POST", body: { community: state.thresholds.community, days: 30, thresholds: changed } });
      state.previewSig = JSON.stringify(changed);
      const kinds = KINDS.filter((k) => k in r.current.by_kind || k in r.proposed.by_kind);
      const line = (label, a, b) => {
        const d = b - a;
        return `<tr><th scope="row">${esc(label)}</th><td>${a}</td><td>${b}</td><td class="${d > 0 ? "up" : d < 0 ? "down" : ""}">${d > 0 ? "+" : d < 0 ? "−" : "±"}${Math.abs(d)}</td></tr>`;
      };
      out.innerHTML = `<h2>${esc(t("thresholds.result", { elders: r.elders }))}</h2>
        <table class="counts"><thead><tr><th scope="col">${esc(t("thresholds.kind"))}</th><th scope="col">${esc(t("thresholds.current"))}</th>
        <th scope="col">${esc(t("thresholds.proposed"))}</th><th scope="col">${esc(t("thresholds.change"))}</th></tr></thead><tbody>
        ${kinds.map((k) => line(t(`kind.${k}`), r.current.by_kind[k] || 0, r.proposed.by_kind[k] || 0)).join("")}
        ${line(t("thresholds.total"), r.current.total, r.proposed.total)}</tbody></table>
        ${r.kept_from ? `<p class="muted" role="note">${esc(t("thresholds.kept_from", { when: fmt(r.kept_from, DEFAULT_TZ, "day") }))}</p>` : ""}`;
    } catch (e) {
      out.innerHTML = `<p class="error" role="alert">${esc(errText(e))}</p>`;
    }
  }
  async function saveThresholds(ev) {
    ev.preventDefault();
    if (!thresholdsValid()) return;
    const changed = changedThresholds();
    const error = $("#th-error");
    const reason = $("#th-reason").value.trim();
    if (!Object.keys(changed).length) return void (error.textContent = t("thresholds.no_change"));
    if (JSON.stringify(changed) !== state.previewSig) return void (error.textContent = t("thresholds.need_preview"));
    if (!reason) {
      error.textContent = t("thresholds.reason");
      $("#th-reason").focus();
      return;
    }
    try {
      await api(`/thresholds/community/${enc(state.thresholds.community)}`, { method: "PUT", body: { values: changed, reason } });
      toast(t("thresholds.saved"));
      render({ focus: false });
    } catch (e) {
      error.textContent = errText(e);
    }
  }

  // -- devices for maintenance ---------------------------------------------------------------
  async function viewDevices(seq) {
    const filter = new URLSearchParams(location.hash.split("?")[1] || "").get("status");
    const page = await api(`/devices?limit=500${filter ? `&status=${enc(filter)}` : ""}&sort=-last_reading_at`);
    if (!current(seq)) return;
    const chips = ["", ...DEVICE_STATUSES]
      .map((s) => `<button type="button" class="chip" data-action="device-filter" data-status="${s}" aria-pressed="${String((filter || "") === s)}">${esc(s ? t(`devices.status.${s}`) : t("devices.all"))}</button>`)
      .join("");
    main.innerHTML = `
      <h1 tabindex="-1">${esc(t("devices.title"))} <span class="count">${page.count}</span></h1>
      <div class="chips" role="group" aria-label="${esc(t("devices.filter"))}">${chips}</div>
      <ul class="device-list">${
        page.data.length
          ? page.data
              .map((d) => {
                const e = state.elders.get(d.elder_id) || { name: d.elder_id, tz: DEFAULT_TZ };
                const facts = [
                  d.last_reading_at ? t("devices.last", { t: fmt(d.last_reading_at, e.tz), ago: ago(d.last_reading_at) }) : t("devices.never"),
                  d.battery_pct != null ? t("devices.battery", { pct: Math.round(d.battery_pct) }) : "",
                  d.rssi != null ? t("devices.signal", { rssi: Math.round(d.rssi) }) : "",
                ].filter(Boolean);
                return `<li class="device-card card"><div class="tags">${d.statuses.map((s) => `<span class="badge dev-${s}">${esc(t(`devices.status.${s}`))}</span>`).join("")}</div>
                  <h2>${esc(d.meter_id)}</h2>
                  <p><a href="#/elder/${enc(d.elder_id)}">${esc(e.name)}</a> · ${esc(d.community)}</p>
                  <p class="small">${facts.map(esc).join(" · ")}</p></li>`;
              })
              .join("")
          : `<li class="muted">${esc(t("devices.none"))}</li>`
      }</ul>`;
    main.dataset.view = "devices";
    state.deviceFilter = filter;
  }

  // ==== BEGIN outcomes page (branch "report"): GET /reports/outcomes for operators, kept in one block ====
  // What the cadres found on the cases raised in the last days, per community and in total: the false calls
  // per elder-month the district can compare with `tapwatch eval` (docs/dashboard.md "Outcomes").
  CAN.outcomes = ["admin", "operator"];
  ROUTES.push([/^#\/outcomes(?:\?.*)?$/, viewOutcomes, "outcomes"]);
  const OUTCOME_DAYS = [7, 30, 90];
  const OUTCOME_MIX = ["needed_help", "hospital", "ok", "false_alarm", "away", "device_fault", "closed_by_data", "open"];
  const OUTCOME_COLUMNS = ["community", "elders", "elder_months", "cases", "false", "confirmed", "away", "closed", "open", "maintenance", "ack", "resolve"];
  const OUTCOME_KIND_COLUMNS = ["kind", "community", "maintenance", "ack", "resolve", "mix"];
  const rate = (x) => (x == null ? "–" : x.toFixed(2));
  // A count and its rate: in the translation's brackets (full-width in Chinese).
  const counted = (count, x) => t("outcomes.count_rate", { count, rate: rate(x) });
  const minutes = (timing) => (timing.count ? `${Math.round(timing.median_min)} / ${Math.round(timing.p90_min)}` : "–");
  function outcomeRow(name, f, total = false) {
    const cells = [
      f.elders,
      f.elder_months.toFixed(1),
      counted(f.community_cases, f.community_cases_per_elder_month),
      counted(f.false_calls, f.false_calls_per_elder_month),
      counted(f.confirmed, f.confirmed_per_elder_month),
      f.outcomes.away,
      f.outcomes.closed_by_data,
      f.outcomes.open,
      counted(f.maintenance_cases, f.maintenance_cases_per_meter_month),
      minutes(f.acknowledge),
      minutes(f.resolve),
    ];
    const head = total ? `<th scope="row"><strong>${esc(name)}</strong></th>` : `<th scope="row">${esc(name)}</th>`;
    return `<tr${total ? ' class="total"' : ""}>${head}${cells.map((c) => `<td>${esc(c)}</td>`).join("")}</tr>`;
  }
  function outcomeKinds(kinds) {
    if (!kinds.length) return `<p class="muted">${esc(t("outcomes.none"))}</p>`;
    const rows = kinds.map((k) => {
      const mix = OUTCOME_MIX.filter((o) => k.outcomes[o]).map((o) => `${t(`outcomes.mix.${o}`)} ${k.outcomes[o]}`);
      return `<tr><th scope="row">${esc(t(`kind.${k.kind}`))}</th><td>${k.community_cases}</td><td>${k.maintenance_cases}</td>
        <td>${esc(minutes(k.acknowledge))}</td><td>${esc(minutes(k.resolve))}</td><td class="mix">${esc(mix.join(" · ") || "–")}</td></tr>`;
    });
    const heads = OUTCOME_KIND_COLUMNS.map((h) => `<th scope="col">${esc(t(`outcomes.kinds.${h}`))}</th>`);
    return `<div class="table-scroll"><table class="counts outcome-kinds"><thead><tr>${heads.join("")}</tr></thead><tbody>${rows.join("")}</tbody></table></div>`;
  }
  async function viewOutcomes(seq) {
    const asked = Number(new URLSearchParams(location.hash.split("?")[1] || "").get("days"));
    const days = OUTCOME_DAYS.includes(asked) ? asked : 30;
    const report = await api(`/reports/outcomes?days=${days}`);
    if (!current(seq)) return;
    const chips = OUTCOME_DAYS.map(
      (d) => `<button type="button" class="chip" data-action="outcomes-days" data-days="${d}" aria-pressed="${String(d === days)}">${esc(t("outcomes.days", { days: d }))}</button>`,
    ).join("");
    const heads = OUTCOME_COLUMNS.map((h) => `<th scope="col">${esc(t(`outcomes.col.${h}`))}</th>`)
      .join("");
    const rows = report.communities.map((c) => outcomeRow(c.community, c));
    if (report.communities.length > 1) rows.push(outcomeRow(t("outcomes.total"), report.total, true));
    main.innerHTML = `
      <h1 tabindex="-1">${esc(t("outcomes.title"))}</h1>
      <p class="muted">${esc(t("outcomes.intro"))}</p>
      <div class="chips" role="group" aria-label="${esc(t("outcomes.period"))}">${chips}</div>
      <p class="small muted">${esc(t("outcomes.range", { start: fmt(report.start, READER_TZ), end: fmt(report.end, READER_TZ) }))}</p>
      ${
        report.communities.length
          ? `<section class="card"><h2>${esc(t("outcomes.by_community"))}</h2>
              <div class="table-scroll"><table class="counts outcomes"><thead><tr>${heads}</tr></thead><tbody>${rows.join("")}</tbody></table></div>
              <p class="small muted">${esc(t("outcomes.legend"))}</p></section>
             <section class="card"><h2>${esc(t("outcomes.by_kind"))}</h2>${outcomeKinds(report.total.by_kind)}</section>`
          : `<p class="muted">${esc(t("outcomes.none"))}</p>`
      }`;
    main.dataset.view = "outcomes";
  }
  document.addEventListener("click", (ev) => {
    const el = ev.target.closest("[data-action='outcomes-days']");
    if (el) location.hash = `#/outcomes?days=${el.dataset.days}`;
  });
  // ==== END outcomes page ====

  // -- events --------------------------------------------------------------------------------
  document.addEventListener("click", (ev) => {
    const el = ev.target.closest("[data-action]");
    if (!el) return;
    const action = el.dataset.action;
    if (action === "ack") acknowledge(el.dataset.id);
    else if (action === "resolve" || action === "record") openResolve(el.dataset.id, el);
    else if (action === "cancel") closeResolve();
    else if (action === "dismiss-banner") {
      state.fresh = [];
      showBanner();
    } else if (action === "away-days") setAwayDays(Number(el.dataset.days));
    else if (action === "away-delete") deleteAway(el.dataset.id);
    else if (action === "preview") previewThresholds();
    else if (action === "device-filter") location.hash = el.dataset.status ? `#/devices?status=${el.dataset.status}` : "#/devices";
  });
  document.addEventListener("pointerdown", unlockAudio, { passive: true });
  document.addEventListener("keydown", unlockAudio);
  $("#banner-open").addEventListener("click", () => {
    state.fresh = [];
    showBanner();
  });
  $("#resolve-form").addEventListener("submit", submitResolve);
  $("#resolve-dialog").addEventListener("close", () => {
    if (resolving) closeResolve();
  });
  $("#lang").addEventListener("click", () => {
    state.lang = state.lang === "zh" ? "en" : "zh";
    localStorage.setItem("tapwatch.lang", state.lang);
    render({ focus: false });
    showBanner();
  });
  $("#sound").addEventListener("click", () => {
    state.sound = !state.sound;
    localStorage.setItem("tapwatch.sound", state.sound ? "on" : "off");
    unlockAudio();
    applyStatic();
    if (state.sound) chime();
  });
  $("#logout").addEventListener("click", async () => {
    await sendHeld(); // before the token is revoked
    signOut();
  });
  $("#toast-undo").addEventListener("click", undoHeld);
  // A phone's page hidden (she switches apps, locks it) may never run again; one left is gone: what she tapped goes now.
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") sendHeld({ leaving: true });
  });
  window.addEventListener("pagehide", () => sendHeld({ leaving: true }));
  window.addEventListener("hashchange", () => render());
  let resizeTimer;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      const box = $("#chart");
      if (state.chart && box) state.chart.setSize({ width: Math.max(280, box.clientWidth), height: box.clientWidth < 500 ? 200 : 260 });
    }, 150);
  });
  setInterval(refreshTimes, 60e3); // keeps "3 hours ago" true

  (async function boot() {
    try {
      const res = await fetch(I18N_URL);
      state.cat = await res.json();
    } catch {
      /* the keys are shown; better than nothing */
    }
    if (state.session) {
      try {
        await start();
      } catch {
        /* render shows the error */
      }
    }
    render();
  })();
})();
