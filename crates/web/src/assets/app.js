// zg-serving pages: live figures over server-sent events, sortable tables.
"use strict";

function liveUpdates() {
  const src = document.body.dataset.events;
  const state = document.getElementById("live-state");
  if (!src || !window.EventSource) return;
  const events = new EventSource(src);
  let busy = false;
  events.addEventListener("open", () => { if (state) state.textContent = "live"; });
  events.addEventListener("error", () => { if (state) state.textContent = "reconnecting..."; });
  events.addEventListener("refresh", async () => {
    if (busy) return;
    busy = true;
    try {
      const response = await fetch(location.href, { headers: { "X-Live": "1" } });
      if (!response.ok) return;
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      document.querySelectorAll("[data-live][id]").forEach((old) => {
        const next = fresh.getElementById(old.id);
        if (next) { old.replaceWith(next); sortable(next); }
      });
    } catch (e) {
      if (state) state.textContent = "offline";
    } finally {
      busy = false;
    }
  });
}

function cellValue(row, index) {
  const cell = row.cells[index];
  if (!cell) return "";
  const raw = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
  const n = Number(raw);
  return raw !== "" && !Number.isNaN(n) ? n : raw.toLowerCase();
}

function sortable(root) {
  const tables = root.matches && root.matches("table.sortable") ? [root] : root.querySelectorAll("table.sortable");
  tables.forEach((table) => {
    table.querySelectorAll("thead th").forEach((th, index) => {
      th.addEventListener("click", () => {
        const up = th.getAttribute("aria-sort") !== "ascending";
        table.querySelectorAll("thead th").forEach((o) => o.removeAttribute("aria-sort"));
        th.setAttribute("aria-sort", up ? "ascending" : "descending");
        const body = table.tBodies[0];
        const rows = Array.from(body.rows);
        rows.sort((a, b) => {
          const x = cellValue(a, index), y = cellValue(b, index);
          const order = x < y ? -1 : x > y ? 1 : 0;
          return up ? order : -order;
        });
        rows.forEach((r) => body.appendChild(r));
      });
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  liveUpdates();
  sortable(document);
});
