/* Cyclecount count views, every page: the service worker, the network indicator, logging out. */
(function () {
  "use strict";

  const PAGE_CACHE = "cc-pages-v1";
  const body = document.body;

  function showNetwork() {
    const state = document.getElementById("network-state");
    if (!state) return;
    const online = navigator.onLine;
    state.dataset.online = String(online);
    state.textContent = online ? "Online" : "Offline";
  }
  window.addEventListener("online", showNetwork);
  window.addEventListener("offline", showNetwork);
  showNetwork();

  /** Keep this page (and anything else the page asks for) for offline reloads. */
  async function keepForOffline(urls) {
    if (!("caches" in window)) return;
    const cache = await caches.open(PAGE_CACHE);
    await Promise.all(
      urls.map(async (url) => {
        try {
          const response = await fetch(url, { credentials: "same-origin" });
          if (response.ok && !response.redirected) await cache.put(url, response);
        } catch (error) {
          /* offline: whatever was kept before stays */
        }
      })
    );
  }

  async function registerWorker() {
    if (!("serviceWorker" in navigator) || !body.dataset.swUrl) return;
    // A page the worker served is already kept by it; the first visit is not.
    const servedByWorker = Boolean(navigator.serviceWorker.controller);
    try {
      await navigator.serviceWorker.register(body.dataset.swUrl, { scope: body.dataset.swScope });
      await navigator.serviceWorker.ready;
      if (!servedByWorker && navigator.onLine) {
        await keepForOffline([window.location.pathname]);
      }
      document.documentElement.dataset.offlineReady = "true";
      document.dispatchEvent(new CustomEvent("cc:offline-ready"));
    } catch (error) {
      document.documentElement.dataset.offlineReady = "false";
    }
  }
  registerWorker();

  // Another person may use this phone next: drop the saved pages (the scan queue stays, it is
  // tied to its session and is sent when its associate is back).
  const logout = document.getElementById("logout-form");
  if (logout) {
    logout.addEventListener("submit", () => {
      if ("caches" in window) caches.delete(PAGE_CACHE);
    });
  }

  // Device ids for the start / continue forms (the server keeps which device has a session).
  document.querySelectorAll("input[name=device_id]").forEach((input) => {
    input.value = window.CC ? window.CC.deviceId() : "";
  });
})();
