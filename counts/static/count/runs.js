/* Cyclecount run picker: shows scans still waiting on this device and keeps sending them. */
(function () {
  "use strict";

  const CC = window.CC;
  if (!CC) return;

  async function showQueues() {
    let records = [];
    try {
      const sessions = await CC.pendingSessions();
      records = await Promise.all(sessions.map(async (session) => [session, (await CC.sessionEvents(session)).filter((r) => r.sync === "pending").length]));
    } catch (error) {
      return;
    }
    let total = 0;
    records.forEach(([session, waiting]) => {
      total += waiting;
      const note = document.querySelector(`[data-queue-for="${session}"]`);
      if (note) {
        note.hidden = waiting === 0;
        note.textContent = `${waiting} scan(s) waiting on this device`;
      }
    });
    const pending = document.getElementById("pending-count");
    const counts = document.getElementById("sync-counts");
    if (pending && counts && total) {
      counts.hidden = false;
      pending.textContent = String(total);
      pending.parentElement.dataset.pending = "true";
    }
    return records;
  }

  async function sendWaiting() {
    const captureUrl = await CC.getMeta("capture-url");
    if (!captureUrl || !navigator.onLine) return;
    const csrf = CC.cookie("csrftoken");
    for (const session of await CC.pendingSessions()) {
      await CC.flush(session, { captureUrl, csrf });
    }
    showQueues();
  }

  showQueues().then(sendWaiting).catch(() => {});
  window.addEventListener("online", () => sendWaiting().catch(() => {}));
})();
