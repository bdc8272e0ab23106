/* Cyclecount count views' service worker, served at /count/sw.js (scope /count/).
 *
 * The view prepends `self.CC_SW_CONFIG` ({version, assets, core, scope, login}). Static files
 * of the shell are cached at install and served cache-first; pages under /count/ are fetched
 * network-first and kept for offline reloads. API calls are never cached or answered here:
 * the pages queue scans in IndexedDB (core.js) and this worker can flush that queue on a
 * background sync.
 */
/* global CC */
"use strict";

const CONFIG = self.CC_SW_CONFIG;
const SHELL_CACHE = `cc-shell-${CONFIG.version}`;
const PAGE_CACHE = "cc-pages-v1";
const NETWORK_TIMEOUT_MS = 6000;

importScripts(CONFIG.core);

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(SHELL_CACHE)
      .then((cache) => cache.addAll(CONFIG.assets))
      .then(() => self.skipWaiting())
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) =>
        Promise.all(keys.filter((key) => key.startsWith("cc-shell-") && key !== SHELL_CACHE).map((key) => caches.delete(key)))
      )
      .then(() => self.clients.claim())
  );
});

function withTimeout(promise, milliseconds) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("network timeout")), milliseconds);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error) => {
        clearTimeout(timer);
        reject(error);
      }
    );
  });
}

async function cacheFirst(request) {
  const cached = await caches.match(request);
  if (cached) return cached;
  const response = await fetch(request);
  if (response.ok) {
    const cache = await caches.open(SHELL_CACHE);
    cache.put(request, response.clone());
  }
  return response;
}

function offlinePage() {
  const html =
    '<!doctype html><html lang="en"><head><meta charset="utf-8">' +
    '<meta name="viewport" content="width=device-width, initial-scale=1"><title>Offline · Cyclecount</title></head>' +
    '<body><main><h1>You are offline</h1><p>This page is not saved on this device yet. ' +
    `Your scans are kept here and are sent when you are back online.</p><p><a href="${CONFIG.scope}">Your counts</a></p>` +
    "</main></body></html>";
  return new Response(html, { status: 503, headers: { "Content-Type": "text/html; charset=utf-8" } });
}

async function networkFirst(request) {
  const cache = await caches.open(PAGE_CACHE);
  try {
    const response = await withTimeout(fetch(request), NETWORK_TIMEOUT_MS);
    // Keep real pages only: not redirects to the login page, not errors.
    if (response.ok && !response.redirected && response.type === "basic") {
      await cache.put(request.url.split("?")[0], response.clone());
    }
    return response;
  } catch (error) {
    const cached = (await cache.match(request, { ignoreSearch: true })) || (await cache.match(CONFIG.scope));
    return cached || offlinePage();
  }
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (CONFIG.assets.includes(url.pathname)) {
    event.respondWith(cacheFirst(request));
  } else if (request.mode === "navigate" && url.pathname.startsWith(CONFIG.scope) && url.pathname !== `${CONFIG.scope}sw.js`) {
    event.respondWith(networkFirst(request));
  }
  // Everything else (the API, the catalog) goes to the network as usual.
});

// Background sync: the page registers "cc-flush" when it could not send; the browser wakes us
// when it is back online, even after the tab was closed.
self.addEventListener("sync", (event) => {
  if (event.tag !== "cc-flush") return;
  event.waitUntil(
    (async () => {
      const csrf = await CC.getMeta("csrf");
      const captureUrl = await CC.getMeta("capture-url");
      if (!captureUrl) return;
      for (const session of await CC.pendingSessions()) {
        const result = await CC.flush(session, { captureUrl, csrf });
        if (result.status === "offline" || result.status === "error") throw new Error("retry later");
      }
    })()
  );
});

self.addEventListener("message", (event) => {
  if (event.data === "cc-clear-pages") event.waitUntil(caches.delete(PAGE_CACHE));
});
