/* Cyclecount count page: scan a location, then items; correct, type, submit — offline first.
 *
 * Every scan goes through CC.enqueue (IndexedDB, with its UUID) before it is shown or sent.
 * Counts on screen = the server's session state (last fetched) + this device's events the
 * server had not acknowledged when that state was fetched. Book quantities are shown only when
 * the server sends them (never in blind counts).
 */
(function () {
  "use strict";

  const CC = window.CC;
  const app = document.getElementById("count-app");
  if (!app || !CC) return;

  const data = app.dataset;
  const sessionId = Number(data.sessionId);
  const $ = (id) => document.getElementById(id);
  const els = {
    scanForm: $("scan-form"),
    scanInput: $("scan-input"),
    keyboardToggle: $("keyboard-toggle"),
    cameraToggle: $("camera-toggle"),
    camera: $("camera"),
    cameraVideo: $("camera-video"),
    location: $("current-location"),
    nextLocation: $("next-location"),
    feedback: $("feedback"),
    feedbackStatus: $("feedback-status"),
    feedbackTitle: $("feedback-title"),
    feedbackDetail: $("feedback-detail"),
    here: $("here-lines"),
    log: $("scan-log"),
    attention: $("attention"),
    requests: $("requests-left"),
    requestsCount: $("requests-left-count"),
    allLines: $("all-lines"),
    allLinesCount: $("all-lines-count"),
    banner: $("banner"),
    bannerText: $("banner-text"),
    bannerAction: $("banner-action"),
    pending: $("pending-count"),
    synced: $("synced-count"),
    syncCounts: $("sync-counts"),
    sessionState: $("session-state"),
    pause: $("pause-button"),
    submit: $("submit-button"),
    correctPanel: $("correct-panel"),
    correctForm: $("correct-form"),
    correctItem: $("correct-item"),
    correctQuantity: $("correct-quantity"),
    correctCancel: $("correct-cancel"),
    manualForm: $("manual-form"),
    manualSearch: $("manual-search"),
    manualResults: $("manual-results"),
    manualItem: $("manual-item"),
    manualQuantity: $("manual-quantity"),
  };

  const LOCATION_KEY = `cc-location-${sessionId}`;
  const SYNCED_KEY = `cc-synced-${sessionId}`;
  const COUNTING = new Set(["matched", "extra"]);
  const STATUS_TEXT = {
    location: "Location",
    matched: "Matched",
    extra: "Extra — not requested",
    unmatched: "Unknown barcode",
    refused: "Refused",
    rejected: "Rejected",
    checking: "Checking",
    synced: "Synced",
    submitted: "Done",
    error: "Not recorded",
  };
  const QUANTITY = /^\d{1,11}(\.\d{1,3})?$/;

  let snapshot = null; // {state, fetchedAt}: the server's session state and when we asked for it
  let catalog = null;
  let index = { locations: new Map(), barcodes: new Map(), skus: new Map(), requested: new Set() };
  let events = [];
  let currentLocation = null;
  let feedbackEventId = null;
  let blocked = null; // "conflict" | "auth" | "closed": wait for a person before sending again
  let syncTimer = null;
  let syncAttempt = 0;
  let processing = Promise.resolve();
  let manualItem = null;
  let correctTarget = null;
  let submitArmedUntil = 0;

  // --- small helpers ---------------------------------------------------------------------

  function csrf() {
    return CC.cookie("csrftoken") || data.csrf || "";
  }

  function number(value) {
    const parsed = Number(value);
    return Number.isFinite(parsed) ? parsed : 0;
  }

  function formatQuantity(value) {
    return String(Math.round(number(value) * 1000) / 1000);
  }

  function key(location, itemKey) {
    return `${location}\u0000${itemKey}`;
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function badge(status) {
    return element("span", `badge badge--${status}`, status === "pending" ? "waiting" : status);
  }

  function preferences() {
    if (snapshot && snapshot.state.preferences) return snapshot.state.preferences;
    if (catalog && catalog.preferences) return catalog.preferences;
    return { primary_identifier: "sku", secondary_identifier: "name", require_scan: data.requireScan === "true" };
  }

  function identify(item, which) {
    if (which === "upc") return (item.barcodes && item.barcodes.slice().sort()[0]) || item.sku;
    if (which === "name") return item.name;
    return item.sku;
  }

  function describeItem(item) {
    const prefs = preferences();
    const primary = item.primary || identify(item, prefs.primary_identifier);
    const secondary = item.secondary || identify(item, prefs.secondary_identifier);
    // The second identifier adds nothing when the facility chose the same one twice.
    return { sku: item.sku, name: item.name, primary, secondary: secondary === primary ? "" : secondary };
  }

  /** Back to the scan field. After an action, bring it (and the feedback under it) into view. */
  function focusScan(reveal) {
    if (!els.scanInput || els.scanInput.disabled) return;
    if (document.activeElement !== els.scanInput) els.scanInput.focus({ preventScroll: true });
    if (reveal === true) window.scrollTo({ top: 0 });
  }

  async function api(url, options) {
    const response = await fetch(url, {
      credentials: "same-origin",
      headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRFToken": csrf() },
      ...options,
    });
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      body = null;
    }
    return { response, body };
  }

  // --- catalog: telling locations from items, naming items offline --------------------------

  function useCatalog(value) {
    catalog = value;
    index = { locations: new Map(), barcodes: new Map(), skus: new Map(), requested: new Set() };
    if (!catalog) return;
    catalog.locations.forEach((location) => {
      index.locations.set(location.code.toLowerCase(), location.code);
      if (location.barcode) index.locations.set(location.barcode.toLowerCase(), location.code);
    });
    catalog.items.forEach((item) => addItem(item));
    (catalog.requested || []).forEach(([location, sku]) => index.requested.add(key(location, sku)));
    // A location scanned before the catalog arrived may have been its barcode: show its code.
    if (currentLocation && locationFor(currentLocation)) currentLocation = locationFor(currentLocation);
  }

  function addItem(item) {
    const described = describeItem(item);
    index.skus.set(item.sku, described);
    (item.barcodes || []).forEach((barcode) => index.barcodes.set(barcode, described));
  }

  async function loadCatalog() {
    const saved = await CC.getMeta(`catalog:${sessionId}`);
    if (saved) {
      useCatalog(saved);
      render();
    }
    try {
      const response = await fetch(data.catalogUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.ok && !response.redirected) {
        const fresh = await response.json();
        await CC.setMeta(`catalog:${sessionId}`, fresh);
        useCatalog(fresh);
        render();
      }
    } catch (error) {
      /* offline: the saved catalog (if any) stays */
    }
  }

  function locationFor(code) {
    return index.locations.get(code.toLowerCase()) || null;
  }

  // --- local counts ----------------------------------------------------------------------

  function unreflected(record) {
    if (record.sync === "pending") return true;
    if (record.sync !== "synced") return false;
    return !snapshot || record.ackedAt > snapshot.fetchedAt;
  }

  function outcomeOf(record) {
    return record.outcome || record.predicted || "checking";
  }

  function itemKeyOf(record) {
    return record.sku || (record.payload.sku ? record.payload.sku : `barcode:${record.payload.barcode}`);
  }

  /** Counted quantity per location × item: the server's lines, then this device's unsent events. */
  function tallies() {
    const result = new Map();
    const lines = snapshot ? snapshot.state.lines : [];
    lines.forEach((line) => {
      result.set(key(line.location, line.item), {
        location: line.location,
        sku: line.item,
        primary: line.primary,
        secondary: line.secondary === line.primary ? "" : line.secondary,
        book: Object.prototype.hasOwnProperty.call(line, "book") ? line.book : null,
        quantity: number(line.counted),
        waiting: 0,
      });
    });
    events.forEach((record) => {
      if (!unreflected(record)) return;
      const outcome = outcomeOf(record);
      const itemKey = itemKeyOf(record);
      const location = record.payload.location;
      const known = record.sku ? index.skus.get(record.sku) : null;
      if (!COUNTING.has(outcome) && outcome !== "checking") return;
      const entry =
        result.get(key(location, itemKey)) ||
        {
          location,
          sku: record.sku || null,
          primary: known ? known.primary : record.payload.barcode || record.payload.sku,
          secondary: known ? known.secondary : "",
          book: null,
          quantity: 0,
          waiting: 0,
        };
      if (outcome === "checking") {
        entry.checking = true;
      } else if (record.payload.kind === "set") {
        entry.quantity = number(record.payload.quantity);
      } else {
        entry.quantity += number(record.payload.quantity);
      }
      if (record.sync === "pending") entry.waiting += 1;
      result.set(key(location, itemKey), entry);
    });
    return result;
  }

  // --- recording events ------------------------------------------------------------------

  function predict(fields) {
    const prefs = preferences();
    const item = (fields.barcode ? index.barcodes.get(fields.barcode) : index.skus.get(fields.sku)) || null;
    // Mirrors the server's rules (counts.services.capture) so the answer shows at once, even
    // offline; the server's status replaces it after the sync.
    if (fields.mode === "manual" && prefs.require_scan) {
      return { outcome: "refused", reason: "This facility requires scanning; typed quantities are refused.", item };
    }
    if (!item) return { outcome: "checking", reason: "", item: null };
    if (catalog && catalog.run_type === "directed" && !index.requested.has(key(fields.location, item.sku))) {
      if (fields.mode === "manual") {
        return { outcome: "refused", reason: "Items that were not requested can't be added by hand.", item };
      }
      return { outcome: "extra", reason: "", item };
    }
    return { outcome: "matched", reason: "", item };
  }

  async function record(fields) {
    const guess = predict(fields);
    let saved;
    try {
      saved = await CC.enqueue(sessionId, fields, {
        predicted: guess.outcome,
        reason: guess.reason,
        sku: guess.item ? guess.item.sku : fields.sku || null,
        label: guess.item ? { primary: guess.item.primary, secondary: guess.item.secondary } : null,
      });
    } catch (error) {
      // Storage refused the write (private mode, full disk): say so loudly, never pretend.
      showFeedback("error", "This scan was NOT saved", `This device could not store it (${error && error.message}). Scan it again.`);
      if (navigator.vibrate) navigator.vibrate([80, 60, 80]);
      return null;
    }
    events.push(saved);
    feedbackEventId = saved.event_id;
    render();
    scheduleSync(250);
    return saved;
  }

  function setLocation(code) {
    currentLocation = code;
    try {
      if (code) localStorage.setItem(LOCATION_KEY, code);
      else localStorage.removeItem(LOCATION_KEY);
    } catch (error) {
      /* the location is a convenience; scans carry their own */
    }
    closeCorrection();
  }

  function handleCode(raw) {
    const code = String(raw || "").trim();
    if (!code || !isOpen()) return Promise.resolve();
    const location = locationFor(code);
    if (location || (!currentLocation && !(catalog && catalog.locations.length))) {
      // Without a catalog (first visit offline), the first scan names the location.
      setLocation(location || code);
      feedbackEventId = null;
      const here = Array.from(tallies().values()).filter((entry) => entry.location === currentLocation).length;
      showFeedback("location", `Location ${currentLocation}`, here ? `${here} item(s) already counted here.` : "Now scan the items here.");
      render();
      return Promise.resolve();
    }
    if (!currentLocation) {
      feedbackEventId = null;
      showFeedback("error", "Scan a location first", `“${code}” is not a location of this facility.`);
      if (navigator.vibrate) navigator.vibrate(120);
      return Promise.resolve();
    }
    return record({ location: currentLocation, barcode: code, quantity: "1", kind: "add", mode: "scan" });
  }

  // --- feedback --------------------------------------------------------------------------

  function showFeedback(status, title, detail) {
    els.feedback.className = `feedback feedback--${status}`;
    els.feedback.dataset.status = status;
    els.feedbackStatus.textContent = STATUS_TEXT[status] || status;
    els.feedbackTitle.textContent = title;
    els.feedbackDetail.textContent = detail || "";
  }

  function renderFeedback(counts) {
    if (!feedbackEventId) return;
    const saved = events.find((candidate) => candidate.event_id === feedbackEventId);
    if (!saved) return;
    const outcome = outcomeOf(saved);
    const label = saved.label || (saved.sku && index.skus.get(saved.sku)) || null;
    const title = label ? label.primary : saved.payload.barcode || saved.payload.sku;
    const entry = counts.get(key(saved.payload.location, itemKeyOf(saved)));
    const parts = [];
    if (label && label.secondary) parts.push(label.secondary);
    if (COUNTING.has(outcome) && entry) parts.push(`${formatQuantity(entry.quantity)} counted at ${saved.payload.location}`);
    if (outcome === "checking") parts.push("Not on this count's list — the server will match it");
    if (outcome === "unmatched") parts.push("No item has this barcode; it is kept for a manager to resolve");
    if (saved.reason) parts.push(saved.reason);
    if (saved.sync === "pending") parts.push("waiting to sync");
    showFeedback(outcome, title, parts.join(" · "));
    if (navigator.vibrate && ["unmatched", "refused", "rejected"].includes(outcome)) navigator.vibrate(120);
  }

  // --- rendering -------------------------------------------------------------------------

  function isOpen() {
    const state = snapshot ? snapshot.state.state : data.sessionState;
    return state === "active" || state === "paused";
  }

  function render() {
    const counts = tallies();
    renderLocation();
    renderHere(counts);
    renderRequests(counts);
    renderAttention();
    renderLog();
    renderAllLines(counts);
    renderIndicator();
    renderFeedback(counts);
    renderSessionState();
  }

  function renderLocation() {
    if (els.location) els.location.textContent = currentLocation || "Scan a location";
  }

  function renderHere(counts) {
    if (!els.here) return;
    els.here.replaceChildren();
    if (!currentLocation) {
      els.here.append(element("li", "empty", "Scan a location first."));
      return;
    }
    const entries = Array.from(counts.values()).filter((entry) => entry.location === currentLocation);
    if (!entries.length) {
      els.here.append(element("li", "empty", "Nothing counted here yet."));
      return;
    }
    entries.sort((a, b) => String(a.primary).localeCompare(String(b.primary)));
    entries.forEach((entry) => {
      const row = element("li", "line");
      row.append(element("span", "line__what", entry.primary));
      if (entry.secondary) row.append(element("span", "line__id", entry.secondary));
      if (entry.checking && !entry.sku) {
        row.append(badge("checking"));
      } else {
        const quantity = element("span", "line__qty", formatQuantity(entry.quantity));
        quantity.setAttribute("aria-label", `${formatQuantity(entry.quantity)} counted`);
        row.append(quantity);
      }
      if (entry.book !== null && entry.book !== undefined && entry.book !== "") {
        row.append(element("span", "line__id", `book ${formatQuantity(entry.book)}`));
      }
      if (entry.waiting) row.append(badge("pending"));
      if (entry.sku) {
        const button = element("button", "button", "Correct");
        button.type = "button";
        button.dataset.sku = entry.sku;
        button.setAttribute("aria-label", `Correct the count of ${entry.primary}`);
        row.append(button);
      }
      els.here.append(row);
    });
  }

  function renderRequests(counts) {
    if (!els.requests || !snapshot) return;
    const left = (snapshot.state.requests || []).filter((request) => {
      if (request.counted) return false;
      const entry = counts.get(key(request.location__code, request.item__sku));
      return !(entry && !entry.checking);
    });
    left.sort((a, b) => {
      const hereA = a.location__code === currentLocation ? 0 : 1;
      const hereB = b.location__code === currentLocation ? 0 : 1;
      return hereA - hereB || a.location__code.localeCompare(b.location__code) || a.item__name.localeCompare(b.item__name);
    });
    els.requests.replaceChildren();
    els.requestsCount.textContent = String(left.length);
    if (!left.length) {
      els.requests.append(element("li", "empty", "Everything requested is counted."));
      return;
    }
    left.forEach((request) => {
      const row = element("li", `line${request.location__code === currentLocation ? " line--here" : ""}`);
      row.append(element("span", "line__where", request.location__code));
      row.append(element("span", "line__what", request.item__name));
      row.append(element("span", "line__id", request.item__sku));
      els.requests.append(row);
    });
  }

  function renderAttention() {
    if (!els.attention || !snapshot) return;
    const rows = [];
    events
      .filter((saved) => saved.sync === "rejected" || (saved.sync === "pending" && saved.predicted === "refused"))
      .forEach((saved) => rows.push({ status: outcomeOf(saved), location: saved.payload.location, code: saved.payload.barcode || saved.payload.sku, reason: saved.reason }));
    (snapshot.state.attention || []).forEach((event) =>
      rows.push({ status: event.status, location: event.location, code: event.barcode || event.sku, reason: event.reason })
    );
    els.attention.replaceChildren();
    if (!rows.length) {
      els.attention.append(element("li", "empty", "Nothing needs attention."));
      return;
    }
    rows.slice(0, 50).forEach((row) => {
      const item = element("li", `line line--${row.status}`);
      item.append(badge(row.status));
      item.append(element("span", "line__what", `${row.location} · ${row.code}`));
      if (row.reason) item.append(element("span", "line__id", row.reason));
      els.attention.append(item);
    });
  }

  function renderLog() {
    if (!els.log) return;
    els.log.replaceChildren();
    const recent = events.slice(-12).reverse();
    if (!recent.length) {
      els.log.append(element("li", "empty", "No scans yet."));
      return;
    }
    recent.forEach((saved) => {
      const row = element("li", "line");
      row.dataset.eventId = saved.event_id;
      row.dataset.sync = saved.sync;
      const label = saved.label || (saved.sku && index.skus.get(saved.sku)) || null;
      const time = new Date(saved.createdAt).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
      row.append(element("span", "line__time", time));
      row.append(element("span", "line__where", saved.payload.location));
      row.append(element("span", "line__what", label ? label.primary : saved.payload.barcode || saved.payload.sku));
      const amount = saved.payload.kind === "set" ? `= ${formatQuantity(saved.payload.quantity)}` : `+${formatQuantity(saved.payload.quantity)}`;
      row.append(element("span", "line__id", `${amount}${saved.payload.mode === "manual" ? " typed" : ""}`));
      row.append(badge(saved.sync === "pending" ? "pending" : outcomeOf(saved)));
      els.log.append(row);
    });
  }

  function renderAllLines(counts) {
    if (!els.allLines) return;
    const blind = snapshot ? snapshot.state.blind !== false : data.blind !== "false";
    const entries = Array.from(counts.values()).filter((entry) => !(entry.checking && !entry.sku));
    entries.sort((a, b) => a.location.localeCompare(b.location) || String(a.primary).localeCompare(String(b.primary)));
    els.allLines.replaceChildren();
    entries.forEach((entry) => {
      const row = element("tr");
      row.append(element("td", "", entry.location));
      const what = element("td", "", entry.primary);
      if (entry.secondary) {
        what.append(element("br"));
        what.append(element("small", "", entry.secondary));
      }
      row.append(what);
      row.append(element("td", "", formatQuantity(entry.quantity)));
      if (!blind) row.append(element("td", "", entry.book !== null && entry.book !== "" ? formatQuantity(entry.book) : ""));
      els.allLines.append(row);
    });
    if (els.allLinesCount) els.allLinesCount.textContent = String(entries.length);
  }

  function renderIndicator() {
    const pending = events.filter((saved) => saved.sync === "pending").length;
    let synced = 0;
    try {
      synced = Number(localStorage.getItem(SYNCED_KEY) || 0);
    } catch (error) {
      synced = events.filter((saved) => saved.sync === "synced").length;
    }
    els.syncCounts.hidden = false;
    els.pending.textContent = String(pending);
    els.pending.parentElement.dataset.pending = String(pending > 0);
    els.synced.textContent = String(synced);
    document.documentElement.dataset.pending = String(pending);
  }

  function renderSessionState() {
    const state = snapshot ? snapshot.state.state : data.sessionState;
    if (els.sessionState) {
      els.sessionState.textContent = state;
      els.sessionState.className = `badge badge--${state}`;
    }
    const open = state === "active" || state === "paused";
    [els.scanInput, els.nextLocation, els.submit, els.pause].forEach((control) => {
      if (control) control.disabled = !open;
    });
    if (!open && blocked !== "closed") {
      blocked = "closed";
      showBanner(`This session is ${state}. Nothing more can be counted in it.`, null, "info");
    }
  }

  function showBanner(text, action, tone) {
    els.banner.hidden = false;
    els.banner.className = `banner${tone ? ` banner--${tone}` : ""}`;
    els.bannerText.textContent = text;
    if (action) {
      els.bannerAction.hidden = false;
      els.bannerAction.textContent = action.label;
      els.bannerAction.onclick = action.run;
    } else {
      els.bannerAction.hidden = true;
      els.bannerAction.onclick = null;
    }
  }

  function hideBanner() {
    els.banner.hidden = true;
  }

  // --- server state and sync -------------------------------------------------------------

  async function loadEvents() {
    events = await CC.sessionEvents(sessionId);
  }

  async function refreshState() {
    const startedAt = Date.now();
    let result;
    try {
      result = await api(data.stateUrl, { method: "GET", headers: { Accept: "application/json" } });
    } catch (error) {
      return false;
    }
    if (!result.response.ok || !result.body || result.response.redirected) {
      if ([401, 403].includes(result.response.status) || result.response.redirected) {
        blocked = "auth";
        showBanner("You are logged out. Your scans are kept on this device.", { label: "Log in", run: () => window.location.assign(`/accounts/login/?next=${encodeURIComponent(window.location.pathname)}`) });
      }
      return false;
    }
    snapshot = { state: result.body, fetchedAt: startedAt };
    await CC.setMeta(`state:${sessionId}`, snapshot);
    await settleOutcomes();
    await CC.prune(sessionId, 500, startedAt);
    await loadEvents();
    render();
    return true;
  }

  /** Events the server acknowledged before this state was read get their final status from it. */
  async function settleOutcomes() {
    const attention = snapshot.state.attention || [];
    const byId = new Map(attention.map((event) => [event.event_id, event]));
    // The state lists the 50 newest non-matched events; older events absent from it are
    // only known to be stored.
    const complete = attention.length < 50;
    const oldest = attention.length ? attention[attention.length - 1].counted_at : null;
    const ids = events
      .filter((saved) => saved.sync === "synced" && !saved.outcome && saved.ackedAt <= snapshot.fetchedAt)
      .map((saved) => saved.event_id);
    if (!ids.length) return;
    await CC.updateEvents(ids, (saved) => {
      const found = byId.get(saved.event_id);
      if (found) {
        saved.outcome = found.status;
        saved.reason = found.reason || saved.reason;
      } else if (complete || (oldest && new Date(saved.payload.counted_at) >= new Date(oldest))) {
        saved.outcome = "matched";
        saved.reason = "";
      } else {
        saved.outcome = "synced";
      }
      return true;
    });
    learnItems(ids);
  }

  /** Name matched items that were not in the catalog (stocked elsewhere, new): ask the API once. */
  async function learnItems(ids) {
    const unknown = new Set();
    events.forEach((saved) => {
      if (ids.includes(saved.event_id) && saved.payload.barcode && !index.barcodes.has(saved.payload.barcode)) {
        unknown.add(saved.payload.barcode);
      }
    });
    for (const barcode of Array.from(unknown).slice(0, 10)) {
      try {
        const { response, body } = await api(`${data.itemsUrl}?q=${encodeURIComponent(barcode)}`, { method: "GET" });
        const found = response.ok && body && (body.results || body).find((item) => (item.barcodes || []).includes(barcode));
        if (found) {
          addItem(found);
          await CC.updateEvents(
            events.filter((saved) => saved.payload.barcode === barcode).map((saved) => saved.event_id),
            (saved) => {
              const described = index.barcodes.get(barcode);
              saved.sku = described.sku;
              saved.label = { primary: described.primary, secondary: described.secondary };
              return true;
            }
          );
        }
      } catch (error) {
        return;
      }
    }
    if (unknown.size) {
      await loadEvents();
      render();
    }
  }

  function scheduleSync(delay) {
    clearTimeout(syncTimer);
    syncTimer = setTimeout(runSync, delay);
  }

  function requestBackgroundSync() {
    if (!("serviceWorker" in navigator)) return;
    navigator.serviceWorker.ready
      .then((registration) => registration.sync && registration.sync.register("cc-flush"))
      .catch(() => {});
  }

  async function runSync() {
    clearTimeout(syncTimer);
    if (blocked) return;
    if (!events.some((saved) => saved.sync === "pending")) return;
    const result = await CC.flush(sessionId, { captureUrl: data.captureUrl, csrf: csrf() });
    if (result.acked.length) {
      try {
        const total = Number(localStorage.getItem(SYNCED_KEY) || 0) + result.acked.length;
        localStorage.setItem(SYNCED_KEY, String(total));
      } catch (error) {
        /* the indicator then counts what is still stored */
      }
    }
    await loadEvents();
    if (result.acked.length || result.rejected.length) {
      await refreshState();
    }
    render();
    if (result.status === "ok") {
      syncAttempt = 0;
      if (!blocked) hideBanner();
      if (events.some((saved) => saved.sync === "pending")) scheduleSync(100);
      return;
    }
    if (result.status === "conflict") {
      blocked = "conflict";
      await refreshState();
      const waiting = events.filter((saved) => saved.sync === "pending").length;
      const state = snapshot ? snapshot.state.state : "not active";
      if (state === "paused") {
        showBanner(`This session is paused. ${waiting} scan(s) are kept on this device.`, { label: "Resume here", run: resumeHere });
      } else {
        showBanner(`This session is ${state}. ${waiting} scan(s) could not be added and are kept on this device.`, null);
      }
      return;
    }
    if (result.status === "auth") {
      blocked = "auth";
      showBanner(`Can't send scans (${result.detail}). They are kept on this device.`, {
        label: "Log in again",
        run: () => window.location.assign(`/accounts/login/?next=${encodeURIComponent(window.location.pathname)}`),
      });
      return;
    }
    // Offline or a server error: back off (1 s, 2 s, 4 s … 60 s, with jitter) and try again.
    syncAttempt += 1;
    const delay = Math.min(60000, 1000 * 2 ** (syncAttempt - 1)) * (0.8 + Math.random() * 0.4);
    scheduleSync(delay);
    requestBackgroundSync();
  }

  async function resumeHere() {
    const { response, body } = await api(data.resumeUrl, { method: "POST", body: JSON.stringify({ device_id: CC.deviceId() }) });
    if (response.ok) {
      blocked = null;
      hideBanner();
      snapshot = { state: body, fetchedAt: Date.now() };
      render();
      runSync();
    } else {
      showBanner((body && body.detail) || `Could not resume (HTTP ${response.status}).`, null);
    }
    focusScan();
  }

  // --- corrections and typed quantities ----------------------------------------------------

  function openCorrection(sku) {
    const described = index.skus.get(sku) || { sku, primary: sku, secondary: "" };
    const entry = tallies().get(key(currentLocation, sku));
    correctTarget = { sku, location: currentLocation };
    els.correctItem.textContent = `${described.primary}${described.secondary ? ` · ${described.secondary}` : ""} at ${currentLocation}`;
    els.correctQuantity.value = entry ? formatQuantity(entry.quantity) : "";
    els.correctPanel.hidden = false;
    els.correctQuantity.focus();
    els.correctQuantity.select();
  }

  function closeCorrection() {
    correctTarget = null;
    if (els.correctPanel) els.correctPanel.hidden = true;
  }

  function typedQuantity(input, kind) {
    const value = input.value.trim();
    if (!QUANTITY.test(value) || (kind === "add" && number(value) <= 0)) {
      feedbackEventId = null;
      showFeedback("error", "Check the quantity", kind === "add" ? "Type a number above 0 (up to 3 decimals)." : "Type a number, 0 or more (up to 3 decimals).");
      return null;
    }
    return value;
  }

  function renderManualResults(items) {
    els.manualResults.replaceChildren();
    items.slice(0, 8).forEach((item) => {
      const row = element("li");
      const button = element("button", "button", `${item.primary}${item.secondary ? ` · ${item.secondary}` : ""}`);
      button.type = "button";
      button.dataset.sku = item.sku;
      row.append(button);
      els.manualResults.append(row);
    });
  }

  let searchTimer = null;
  function searchItems(query) {
    const needle = query.trim().toLowerCase();
    if (!needle) {
      renderManualResults([]);
      return;
    }
    const local = [];
    for (const item of index.skus.values()) {
      if (item.name.toLowerCase().includes(needle) || item.sku.toLowerCase().includes(needle)) local.push(item);
      if (local.length >= 8) break;
    }
    const byBarcode = index.barcodes.get(query.trim());
    if (byBarcode && !local.includes(byBarcode)) local.unshift(byBarcode);
    renderManualResults(local);
    clearTimeout(searchTimer);
    if (!navigator.onLine || needle.length < 2) return;
    searchTimer = setTimeout(async () => {
      try {
        const { response, body } = await api(`${data.itemsUrl}?q=${encodeURIComponent(query.trim())}&limit=8`, { method: "GET" });
        if (!response.ok || els.manualSearch.value.trim().toLowerCase() !== needle) return;
        const merged = local.slice();
        (body.results || body).forEach((item) => {
          if (!index.skus.has(item.sku)) addItem(item);
          const described = index.skus.get(item.sku);
          if (!merged.includes(described)) merged.push(described);
        });
        renderManualResults(merged);
      } catch (error) {
        /* offline: local results stay */
      }
    }, 250);
  }

  // --- session commands ------------------------------------------------------------------

  async function pause() {
    if (!navigator.onLine) {
      showFeedback("error", "You are offline", "Pause when you are back online. Your scans are kept on this device.");
      return;
    }
    await runSync();
    const { response, body } = await api(data.pauseUrl, { method: "POST" });
    if (response.ok) {
      window.location.assign(data.runsUrl);
    } else {
      showFeedback("error", "Could not pause", (body && body.detail) || `HTTP ${response.status}`);
    }
  }

  async function submit() {
    if (Date.now() > submitArmedUntil) {
      submitArmedUntil = Date.now() + 5000;
      els.submit.textContent = "Tap again to submit";
      setTimeout(() => {
        if (Date.now() > submitArmedUntil) els.submit.textContent = "Submit";
      }, 5100);
      return;
    }
    submitArmedUntil = 0;
    els.submit.textContent = "Submit";
    await runSync();
    const waiting = events.filter((saved) => saved.sync === "pending").length;
    if (waiting) {
      showFeedback("error", "Not submitted yet", `${waiting} scan(s) are still waiting to sync. Submit when they are sent.`);
      return;
    }
    const { response, body } = await api(data.submitUrl, { method: "POST" });
    if (response.ok) {
      snapshot = { state: body, fetchedAt: Date.now() };
      await CC.setMeta(`state:${sessionId}`, snapshot);
      setLocation(null);
      render();
      showFeedback("submitted", "Count submitted", "Thank you. You can pick another count.");
    } else {
      showFeedback("error", "Could not submit", (body && body.detail) || `HTTP ${response.status}`);
    }
  }

  // --- camera (where the browser has BarcodeDetector) -----------------------------------------

  let cameraStream = null;
  let cameraTimer = null;
  let lastCamera = { value: "", at: 0 };

  async function toggleCamera() {
    if (cameraStream) {
      stopCamera();
      return;
    }
    try {
      const detector = new window.BarcodeDetector();
      cameraStream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
      els.cameraVideo.srcObject = cameraStream;
      els.camera.hidden = false;
      els.cameraToggle.setAttribute("aria-pressed", "true");
      await els.cameraVideo.play();
      cameraTimer = setInterval(async () => {
        try {
          const codes = await detector.detect(els.cameraVideo);
          const value = codes.length ? codes[0].rawValue : "";
          if (value && (value !== lastCamera.value || Date.now() - lastCamera.at > 1500)) {
            lastCamera = { value, at: Date.now() };
            processing = processing.then(() => handleCode(value));
          }
        } catch (error) {
          /* a frame that could not be read */
        }
      }, 300);
    } catch (error) {
      stopCamera();
      showFeedback("error", "Camera unavailable", String((error && error.message) || error));
    }
  }

  function stopCamera() {
    clearInterval(cameraTimer);
    if (cameraStream) cameraStream.getTracks().forEach((track) => track.stop());
    cameraStream = null;
    els.camera.hidden = true;
    els.cameraToggle.setAttribute("aria-pressed", "false");
  }

  // --- wiring ----------------------------------------------------------------------------

  function bind() {
    if (els.scanForm) {
      els.scanForm.addEventListener("submit", (event) => {
        event.preventDefault();
        const value = els.scanInput.value;
        els.scanInput.value = "";
        // Scans are handled one after another, in the order they were read.
        processing = processing.then(() => handleCode(value)).catch(() => {});
        focusScan();
      });
    }
    if (els.keyboardToggle) {
      els.keyboardToggle.addEventListener("click", () => {
        const typing = els.scanInput.getAttribute("inputmode") === "none";
        els.scanInput.setAttribute("inputmode", typing ? "text" : "none");
        els.keyboardToggle.setAttribute("aria-pressed", String(typing));
        els.scanInput.blur();
        focusScan();
      });
    }
    if (els.cameraToggle && "BarcodeDetector" in window && navigator.mediaDevices) {
      els.cameraToggle.hidden = false;
      els.cameraToggle.addEventListener("click", () => {
        toggleCamera();
        focusScan();
      });
    }
    if (els.nextLocation) {
      els.nextLocation.addEventListener("click", () => {
        setLocation(null);
        feedbackEventId = null;
        showFeedback("idle", "Scan the next location", "");
        render();
        focusScan();
      });
    }
    if (els.here) {
      els.here.addEventListener("click", (event) => {
        const button = event.target.closest("button[data-sku]");
        if (button) openCorrection(button.dataset.sku);
      });
    }
    if (els.correctForm) {
      els.correctForm.addEventListener("submit", (event) => {
        event.preventDefault();
        const quantity = typedQuantity(els.correctQuantity, "set");
        if (quantity === null || !correctTarget) return;
        const target = correctTarget;
        closeCorrection();
        processing = processing.then(() =>
          record({ location: target.location, sku: target.sku, quantity, kind: "set", mode: "manual" })
        );
        focusScan(true);
      });
      els.correctCancel.addEventListener("click", () => {
        closeCorrection();
        focusScan();
      });
    }
    if (els.manualForm) {
      els.manualSearch.addEventListener("input", () => searchItems(els.manualSearch.value));
      els.manualResults.addEventListener("click", (event) => {
        const button = event.target.closest("button[data-sku]");
        if (!button) return;
        manualItem = index.skus.get(button.dataset.sku);
        els.manualItem.textContent = manualItem ? `${manualItem.primary}${manualItem.secondary ? ` · ${manualItem.secondary}` : ""}` : "No item chosen.";
        els.manualQuantity.focus();
      });
      els.manualForm.addEventListener("submit", (event) => {
        event.preventDefault();
        const kind = event.submitter && event.submitter.value === "set" ? "set" : "add";
        if (!currentLocation) {
          feedbackEventId = null;
          showFeedback("error", "Scan a location first", "Typed quantities are counted at the current location.");
          focusScan();
          return;
        }
        if (!manualItem) {
          feedbackEventId = null;
          showFeedback("error", "Choose an item", "Search by name, SKU or barcode, then pick it from the list.");
          els.manualSearch.focus();
          return;
        }
        const quantity = typedQuantity(els.manualQuantity, kind);
        if (quantity === null) return;
        const item = manualItem;
        processing = processing.then(() =>
          record({ location: currentLocation, sku: item.sku, quantity, kind, mode: "manual" })
        );
        els.manualQuantity.value = "";
        els.manualSearch.value = "";
        manualItem = null;
        els.manualItem.textContent = "No item chosen.";
        renderManualResults([]);
        focusScan(true);
      });
    }
    if (els.pause) els.pause.addEventListener("click", () => pause().finally(() => focusScan(true)));
    if (els.submit) els.submit.addEventListener("click", () => submit().finally(() => focusScan(true)));

    // The scan field keeps focus: after any tap that does not land in another field (buttons
    // put focus where their action needs it, which is the scan field unless they open a form).
    document.addEventListener("pointerup", (event) => {
      if (!event.target.closest("input, textarea, select, summary, a, button, label, [data-keep-focus]")) {
        setTimeout(() => focusScan(false), 0);
      }
    });
    document.addEventListener("focusout", () => {
      setTimeout(() => {
        if (!document.activeElement || document.activeElement === document.body) focusScan(false);
      }, 0);
    });
    window.addEventListener("online", () => {
      if (blocked === "auth") blocked = null;
      syncAttempt = 0;
      runSync().then(refreshState);
    });
    window.addEventListener("offline", renderIndicator);
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") {
        focusScan();
        if (navigator.onLine) refreshState().then(() => runSync());
      }
    });
    // Other devices may count the same session: read its state every 20 s while visible.
    setInterval(() => {
      if (document.visibilityState === "visible" && navigator.onLine && !blocked) refreshState();
    }, 20000);
  }

  async function start() {
    bind();
    try {
      currentLocation = localStorage.getItem(LOCATION_KEY);
    } catch (error) {
      currentLocation = null;
    }
    try {
      await CC.setMeta("csrf", csrf());
      await CC.setMeta("capture-url", data.captureUrl);
      snapshot = await CC.getMeta(`state:${sessionId}`);
      await loadEvents();
    } catch (error) {
      showBanner("This browser can't store scans on this device (IndexedDB is unavailable), so it can't record them. Leave private mode or use another browser.", null);
    }
    if (snapshot || events.length) render();
    if (currentLocation) showFeedback("location", `Location ${currentLocation}`, "Scan the items here, or the next location.");
    focusScan();
    await loadCatalog();
    await refreshState();
    document.documentElement.dataset.countReady = "true";
    runSync();
  }

  start();
})();
