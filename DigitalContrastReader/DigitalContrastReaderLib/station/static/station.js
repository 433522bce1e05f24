// The reading page's browser side (served from the installed package; no CDN).
// - Submit: the answers are kept in this tab (sessionStorage) until the station says they are
//   durable; a submit that got no answer (a lost connection) is sent again once the reader is
//   back on that item, and the station stores an item once whatever arrives twice.
// - A lost connection shows a banner (data-testid "connection-lost") and the page keeps what the
//   reader entered; when the station answers again the page reloads (or goes to the sign-in page
//   when the reading session ended, e.g. after a restart of the station).
// - Keys: digits answer the highlighted question, Ctrl+Enter submits (as Ctrl+N in Slicer).
// - Whether the tab is in front: active reading time pauses while it is not (as in Slicer).
(function () {
  "use strict";
  const PENDING = "dc-station-pending";
  const DRAFT = "dc-station-draft";
  const SUBMIT_TIMEOUT_MS = 60000;
  let banner = null;
  let polling = null;
  let busyItem = null;

  function trame() { return window.trame; }
  function state(key) { return trame().state.get(key); }
  function load(key) { try { return JSON.parse(sessionStorage.getItem(key) || "null"); } catch (e) { return null; } }
  function save(key, value) { sessionStorage.setItem(key, JSON.stringify(value)); }
  function connected() { try { return trame().client.isConnected(); } catch (e) { return false; } }

  function showBanner(text) {
    if (!banner) {
      banner = document.createElement("div");
      banner.className = "station-banner";
      banner.setAttribute("data-testid", "connection-lost");
      banner.setAttribute("role", "alert");
      document.body.appendChild(banner);
    }
    banner.textContent = text;
  }

  function lost() {
    const pending = load(PENDING);
    showBanner(pending
      ? "Connection to the reading station lost. Your answers to this item are not saved yet: they are kept " +
        "in this page and will be sent when the station is back."
      : "Connection to the reading station lost. What you entered is kept in this page; reconnecting...");
    if (polling) return;
    polling = setInterval(async () => {
      try {
        const reply = await fetch("./alive", { cache: "no-store" });
        if (reply.status === 200) { clearInterval(polling); window.location.reload(); }
        else if (reply.status === 410 || reply.status === 404) { clearInterval(polling); window.location.href = "../../?ended=1"; }
      } catch (e) { /* the station is still away */ }
    }, 1000);
  }

  function call(name, args) {
    return Promise.race([
      trame().trigger(name, args),
      new Promise((_, reject) => setTimeout(() => reject(new Error("no answer")), SUBMIT_TIMEOUT_MS)),
    ]);
  }

  async function submit(itemId, answers) {
    if (!itemId || busyItem === itemId) return;
    busyItem = itemId;
    save(PENDING, { itemId: itemId, answers: answers });
    try {
      if (!connected()) throw new Error("not connected");
      const reply = await call("station_submit", [itemId, answers]);
      sessionStorage.removeItem(PENDING);  // saved, saved before, or refused with its sentence
      if (reply && (reply.status === "saved" || reply.status === "already_saved")) sessionStorage.removeItem(DRAFT);
    } catch (e) {
      lost();
    } finally {
      busyItem = null;
    }
  }

  function resumePending() {
    const pending = load(PENDING);
    if (!pending) return;
    if (state("phase") === "reading" && state("item_id") === pending.itemId) {
      trame().state.set("answers", pending.answers);
      submit(pending.itemId, pending.answers);
    } else if (state("phase") !== "waiting") {
      sessionStorage.removeItem(PENDING);  // the station moved on: that submit had arrived
    }
  }

  function restoreDraft() {
    const draft = load(DRAFT);
    const answers = state("answers") || {};
    if (draft && draft.itemId === state("item_id") && Object.keys(answers).length === 0 &&
        Object.keys(draft.answers || {}).length > 0) {
      trame().state.set("answers", draft.answers);
    }
  }

  function inTextEntry(target) {
    const tag = (target && target.tagName || "").toLowerCase();
    return tag === "input" && target.type !== "radio" && target.type !== "checkbox" || tag === "textarea";
  }

  async function onKey(event) {
    if (state("phase") !== "reading") return;
    const ctrl = event.ctrlKey || event.metaKey;
    if (ctrl && event.key === "Enter") {
      event.preventDefault();
      const reply = await call("station_key", ["Enter", true, false]);
      if (reply && reply.kind === "submit") submit(state("item_id"), state("answers"));
    } else if (!ctrl && !event.altKey && /^[1-9]$/.test(event.key) && !inTextEntry(event.target)) {
      call("station_key", [event.key, false, false]);
    }
  }

  function setActive(active) { if (connected()) call("station_focus", [active]).catch(() => {}); }

  function start() {
    if (!trame() || !trame().state || !trame().client) { setTimeout(start, 50); return; }
    window.dcStation = { submit: submit };
    try { trame().client.onConnectionClose(lost); } catch (e) { /* older client: the poll below notices */ }
    setInterval(() => { if (!connected()) lost(); }, 1000);
    restoreDraft();  // before the watch below records the page's (maybe empty) answers
    resumePending();
    trame().state.watch(["item_id", "answers"], (itemId, answers) => {
      if (itemId) save(DRAFT, { itemId: itemId, answers: answers || {} });
    });
    document.addEventListener("keydown", onKey);
    document.addEventListener("visibilitychange", () => setActive(document.visibilityState === "visible"));
    window.addEventListener("blur", () => setActive(false));
    window.addEventListener("focus", () => setActive(true));
  }

  window.dcStation = { submit: submit };
  start();
})();
