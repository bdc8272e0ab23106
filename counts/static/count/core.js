/* Cyclecount count views: the device's scan queue (IndexedDB), its id, and the sync engine.
 *
 * No DOM here: the pages and the service worker (importScripts) both load this file.
 * The rule it keeps: a scan is written to IndexedDB, with the UUID it was given on this device,
 * before anything else happens to it, and it leaves the "pending" state only when the server
 * has answered for that event id (accepted, duplicate, or rejected with reasons).
 */
(function (global) {
  "use strict";

  const DB_NAME = "cyclecount-count";
  const DB_VERSION = 1;
  const BATCH_SIZE = 200;
  const DEVICE_KEY = "cc-device-id";
  let dbPromise = null;
  let sequence = 0;

  // --- IndexedDB -------------------------------------------------------------------------

  function promised(request) {
    return new Promise((resolve, reject) => {
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  }

  function finished(transaction) {
    return new Promise((resolve, reject) => {
      transaction.oncomplete = () => resolve();
      transaction.onerror = () => reject(transaction.error);
      transaction.onabort = () => reject(transaction.error || new Error("IndexedDB transaction aborted"));
    });
  }

  function openDb() {
    if (!dbPromise) {
      dbPromise = new Promise((resolve, reject) => {
        const request = indexedDB.open(DB_NAME, DB_VERSION);
        request.onupgradeneeded = () => {
          const db = request.result;
          if (!db.objectStoreNames.contains("events")) {
            const events = db.createObjectStore("events", { keyPath: "event_id" });
            events.createIndex("session", "session");
          }
          if (!db.objectStoreNames.contains("meta")) {
            db.createObjectStore("meta", { keyPath: "key" });
          }
        };
        request.onsuccess = () => {
          const db = request.result;
          db.onversionchange = () => {
            db.close();
            dbPromise = null;
          };
          resolve(db);
        };
        request.onerror = () => {
          dbPromise = null;
          reject(request.error);
        };
      });
    }
    return dbPromise;
  }

  async function putEvent(record) {
    const db = await openDb();
    const transaction = db.transaction("events", "readwrite");
    transaction.objectStore("events").put(record);
    await finished(transaction);
    return record;
  }

  async function sessionEvents(session) {
    const db = await openDb();
    const transaction = db.transaction("events", "readonly");
    const records = await promised(transaction.objectStore("events").index("session").getAll(IDBKeyRange.only(session)));
    records.sort((a, b) => a.seq - b.seq);
    return records;
  }

  async function allEvents() {
    const db = await openDb();
    const transaction = db.transaction("events", "readonly");
    return promised(transaction.objectStore("events").getAll());
  }

  /** Apply `change(record)` to each event id in one transaction; returns the changed records. */
  async function updateEvents(ids, change) {
    const db = await openDb();
    const transaction = db.transaction("events", "readwrite");
    const store = transaction.objectStore("events");
    const changed = [];
    for (const id of ids) {
      const record = await promised(store.get(id));
      if (record && change(record) !== false) {
        store.put(record);
        changed.push(record);
      }
    }
    await finished(transaction);
    return changed;
  }

  async function deleteEvents(ids) {
    const db = await openDb();
    const transaction = db.transaction("events", "readwrite");
    const store = transaction.objectStore("events");
    ids.forEach((id) => store.delete(id));
    await finished(transaction);
  }

  async function getMeta(key) {
    const db = await openDb();
    const transaction = db.transaction("meta", "readonly");
    const row = await promised(transaction.objectStore("meta").get(key));
    return row ? row.value : null;
  }

  async function setMeta(key, value) {
    const db = await openDb();
    const transaction = db.transaction("meta", "readwrite");
    transaction.objectStore("meta").put({ key, value });
    await finished(transaction);
  }

  // --- ids, times, tokens ----------------------------------------------------------------

  function uuid4() {
    const cryptoApi = global.crypto;
    if (cryptoApi && typeof cryptoApi.randomUUID === "function") {
      return cryptoApi.randomUUID();
    }
    // Plain HTTP on a LAN address is not a secure context: build a version 4 UUID by hand.
    const bytes = cryptoApi.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  /** The wall-clock time here, as ISO 8601 with this device's UTC offset. */
  function localIsoNow(date) {
    const now = date || new Date();
    const pad = (value, width) => String(Math.abs(value)).padStart(width || 2, "0");
    const offset = -now.getTimezoneOffset();
    const sign = offset >= 0 ? "+" : "-";
    return (
      `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}` +
      `T${pad(now.getHours())}:${pad(now.getMinutes())}:${pad(now.getSeconds())}.${pad(now.getMilliseconds(), 3)}` +
      `${sign}${pad(Math.trunc(offset / 60))}:${pad(offset % 60)}`
    );
  }

  function deviceId() {
    let id = null;
    try {
      id = global.localStorage.getItem(DEVICE_KEY);
      if (!id) {
        id = `web-${uuid4()}`;
        global.localStorage.setItem(DEVICE_KEY, id);
      }
    } catch (error) {
      id = id || `web-${uuid4()}`;
    }
    return id;
  }

  function cookie(name) {
    if (typeof document === "undefined") return "";
    const match = document.cookie.match(new RegExp(`(?:^|; )${name}=([^;]*)`));
    return match ? decodeURIComponent(match[1]) : "";
  }

  // --- queue -----------------------------------------------------------------------------

  /**
   * Record one event for `session`. The UUID is made first and the record is durable in
   * IndexedDB when the returned promise resolves; only then does the caller show or send it.
   */
  async function enqueue(session, fields, extra) {
    const eventId = uuid4();
    const payload = Object.assign({ event_id: eventId, counted_at: localIsoNow() }, fields);
    const record = Object.assign(
      {
        event_id: eventId,
        session,
        seq: Date.now() * 1000 + (sequence++ % 1000),
        payload,
        sync: "pending",
        createdAt: Date.now(),
        ackedAt: null,
        outcome: null,
        reason: "",
      },
      extra || {}
    );
    await putEvent(record);
    return record;
  }

  async function readJson(response) {
    try {
      return await response.json();
    } catch (error) {
      return null;
    }
  }

  /**
   * Send the session's pending events in batches until none is left or the server stops us.
   * Resolves to {status, acked, rejected, counts, detail}: status is "ok", "offline",
   * "conflict" (409: the session is not active), "auth" (401/403/404) or "error" (retry later).
   */
  async function flushNow(session, options) {
    const result = {
      status: "ok",
      acked: [],
      rejected: [],
      counts: { accepted: 0, duplicates: 0, unmatched: 0, extra: 0, refused: 0 },
      detail: "",
    };
    for (;;) {
      const pending = (await sessionEvents(session)).filter((record) => record.sync === "pending").slice(0, BATCH_SIZE);
      if (!pending.length) break;
      let response;
      try {
        response = await fetch(options.captureUrl, {
          method: "POST",
          credentials: "same-origin",
          headers: {
            "Content-Type": "application/json",
            Accept: "application/json",
            "X-CSRFToken": options.csrf || "",
          },
          body: JSON.stringify({ session, events: pending.map((record) => record.payload) }),
        });
      } catch (error) {
        result.status = "offline";
        break;
      }
      if (!response.ok) {
        const body = await readJson(response);
        result.detail = (body && (body.detail || body.message)) || `HTTP ${response.status}`;
        if (response.status === 409) result.status = "conflict";
        else if ([401, 403, 404].includes(response.status)) result.status = "auth";
        else result.status = "error";
        break;
      }
      const body = await readJson(response);
      if (!body || typeof body.accepted !== "number") {
        result.status = "error";
        result.detail = "unexpected answer from the server";
        break;
      }
      Object.keys(result.counts).forEach((key) => {
        result.counts[key] += body[key] || 0;
      });
      const errorsById = new Map();
      (body.rejected || []).forEach((rejection) => {
        const record = pending[rejection.index];
        if (record) errorsById.set(record.event_id, rejection.errors || {});
      });
      const now = Date.now();
      const changed = await updateEvents(
        pending.map((record) => record.event_id),
        (record) => {
          if (record.sync !== "pending") return false;
          if (errorsById.has(record.event_id)) {
            const errors = errorsById.get(record.event_id);
            record.sync = "rejected";
            record.outcome = "rejected";
            record.reason = Object.values(errors).flat().join("; ") || "rejected by the server";
          } else {
            record.sync = "synced";
          }
          record.ackedAt = now;
          return true;
        }
      );
      changed.forEach((record) => (record.sync === "rejected" ? result.rejected : result.acked).push(record));
    }
    return result;
  }

  const inFlight = new Map();

  /** One flush per session at a time, across tabs too (Web Locks) where the browser has them. */
  function flush(session, options) {
    if (inFlight.has(session)) return inFlight.get(session);
    const run = () => flushNow(session, options);
    const locks = global.navigator && global.navigator.locks;
    const promise = (locks && typeof locks.request === "function" ? locks.request(`cc-flush-${session}`, run) : run())
      .finally(() => inFlight.delete(session));
    inFlight.set(session, promise);
    return promise;
  }

  /** Every session with scans still waiting on this device (the service worker's background sync). */
  async function pendingSessions() {
    const sessions = new Set();
    (await allEvents()).forEach((record) => {
      if (record.sync === "pending") sessions.add(record.session);
    });
    return Array.from(sessions);
  }

  /**
   * Keep the newest `keep` answered events of a session (for the scan log); pending ones are
   * never removed, nor answered ones newer than `before` (the page still adds them to its counts).
   */
  async function prune(session, keep, before) {
    const records = await sessionEvents(session);
    const answered = records.filter((record) => record.sync !== "pending" && record.ackedAt <= before);
    const excess = answered.length - keep;
    if (excess > 0) {
      await deleteEvents(answered.slice(0, excess).map((record) => record.event_id));
    }
  }

  global.CC = {
    openDb,
    putEvent,
    sessionEvents,
    updateEvents,
    getMeta,
    setMeta,
    uuid4,
    localIsoNow,
    deviceId,
    cookie,
    enqueue,
    flush,
    pendingSessions,
    prune,
  };
})(typeof self !== "undefined" ? self : this);
