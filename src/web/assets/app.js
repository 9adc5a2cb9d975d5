// lookout's page, made live: rows follow the daemon's events (Server-Sent Events from
// /api/v1/events), actions post without leaving the page and the job they start is followed,
// the table sorts and filters in place, times read in the browser's zone. Without JavaScript
// every form and link works as it is.
"use strict";
(function () {
  const base = document.body.dataset.base || "";
  const announce = (text) => {
    const el = document.getElementById("announce");
    if (el) el.textContent = text;
  };
  const localTimes = (root) => {
    for (const t of root.querySelectorAll("time[datetime]")) {
      const d = new Date(t.getAttribute("datetime"));
      if (!isNaN(d)) {
        t.title = t.getAttribute("datetime");
        t.textContent = d.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
      }
    }
  };
  const rowOf = (name) =>
    document.querySelector('#services tbody tr[data-name="' + CSS.escape(name) + '"]');
  const recount = () => {
    const rows = document.querySelectorAll("#services tbody tr");
    const counts = {};
    for (const r of rows) counts[r.dataset.status] = (counts[r.dataset.status] || 0) + 1;
    for (const a of document.querySelectorAll(".counts a[data-filter]")) {
      const n = counts[a.dataset.filter] || 0;
      a.textContent = a.textContent.replace(/^\d+/, String(n));
      a.parentElement.hidden = n === 0;
    }
  };
  const refreshRow = async (name) => {
    const row = rowOf(name);
    if (!row) return;
    const res = await fetch(base + "/services/" + encodeURIComponent(name) + "/row", {
      headers: { Accept: "text/html" },
      credentials: "same-origin",
    });
    if (!res.ok) return;
    const tpl = document.createElement("template");
    tpl.innerHTML = (await res.text()).trim();
    const fresh = tpl.content.firstElementChild;
    if (!fresh) return;
    const current = rowOf(name);
    if (!current) return;
    current.replaceWith(fresh);
    fresh.classList.add("changed");
    localTimes(fresh);
    wireForms(fresh);
    applyFilter();
    recount();
  };
  const setUpdating = (name) => {
    const row = rowOf(name);
    if (!row) return;
    row.dataset.status = "updating";
    const badge = row.querySelector(".badge");
    if (badge) {
      badge.className = "badge b-updating";
      badge.textContent = "updating";
    }
    recount();
  };
  // Live events.
  if (window.EventSource && document.body.dataset.live === "true") {
    const live = document.getElementById("live");
    const source = new EventSource(base + "/api/v1/events");
    source.addEventListener("hello", () => { if (live) live.hidden = false; });
    source.onerror = () => { if (live) live.hidden = true; };
    // The typed events say what happens; `changed` says a row's view is up to date with it.
    const done = ["update_available", "updated", "rolled_back", "update_failed"];
    for (const name of done) {
      source.addEventListener(name, (e) => {
        const data = JSON.parse(e.data);
        if (data.service) announce(data.service + ": " + name.replace("_", " "));
      });
    }
    source.addEventListener("changed", (e) => {
      const names = JSON.parse(e.data).services || [];
      const badge = document.getElementById("status");
      if (names.length === 0 || (badge && names.includes(badge.dataset.name))) {
        if (badge || names.length === 0) location.reload();
        return;
      }
      for (const name of names) refreshRow(name);
    });
    source.addEventListener("update_started", (e) => {
      const data = JSON.parse(e.data);
      if (data.service) {
        setUpdating(data.service);
        announce(data.service + ": update started");
      }
    });
    source.addEventListener("lagged", () => location.reload());
  }
  // Actions post in place; the page follows the job they start.
  const follow = async (job) => {
    announce((job.service || "all services") + ": " + job.kind + " started");
    for (let i = 0; i < 600; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      const res = await fetch(base + "/api/v1/jobs/" + encodeURIComponent(job.id), { credentials: "same-origin" });
      if (!res.ok) return;
      const now = await res.json();
      if (now.state !== "running") {
        announce((now.service || "all services") + ": " + now.kind + " " + now.state);
        if (now.service) refreshRow(now.service);
        return;
      }
    }
  };
  const wireForms = (root) => {
    for (const form of root.querySelectorAll("form.act")) {
      form.addEventListener("submit", async (e) => {
        e.preventDefault();
        // A row's buttons share one form; the pressed one says what to do (`do`).
        const button = e.submitter || form.querySelector("button");
        const body = new URLSearchParams(new FormData(form, button));
        if (button) button.disabled = true;
        try {
          const res = await fetch(form.action, {
            method: "POST",
            body,
            headers: { Accept: "application/json" },
            credentials: "same-origin",
          });
          const answer = await res.json().catch(() => ({}));
          const error = document.getElementById("error");
          if (error) error.hidden = res.ok;
          if (!res.ok) {
            if (error) error.textContent = answer.error || "Refused (" + res.status + ")";
          } else if (answer.job) {
            if (answer.job.service && answer.job.kind !== "check") setUpdating(answer.job.service);
            follow(answer.job);
          } else if (answer.reload || document.getElementById("status")) {
            location.reload();
          } else if (answer.service) {
            refreshRow(answer.service);
          }
        } finally {
          if (button) button.disabled = false;
        }
      });
    }
  };
  // Sorting and filtering in place.
  const order = { status: (r) => Number(r.dataset.order), name: (r) => r.dataset.name, last_check: (r) => r.dataset.lastCheck };
  const sortBy = (key) => {
    const tbody = document.querySelector("#services tbody");
    if (!tbody || !order[key]) return;
    const rows = Array.from(tbody.rows);
    rows.sort((a, b) => {
      const x = order[key](a), y = order[key](b);
      return x < y ? -1 : x > y ? 1 : a.dataset.name.localeCompare(b.dataset.name);
    });
    if (key === "last_check") rows.reverse();
    for (const r of rows) tbody.appendChild(r);
  };
  const filterStatus = document.getElementById("f-status");
  const filterName = document.getElementById("f-q");
  const applyFilter = () => {
    const st = filterStatus ? filterStatus.value : "";
    const q = filterName ? filterName.value.trim().toLowerCase() : "";
    for (const r of document.querySelectorAll("#services tbody tr")) {
      r.hidden = (st && r.dataset.status !== st) || (q && !r.dataset.name.toLowerCase().includes(q));
    }
  };
  document.addEventListener("DOMContentLoaded", () => {
    localTimes(document);
    wireForms(document);
    for (const a of document.querySelectorAll("thead a[data-sort]")) {
      a.addEventListener("click", (e) => { e.preventDefault(); sortBy(a.dataset.sort); });
    }
    for (const a of document.querySelectorAll(".counts a[data-filter]")) {
      a.addEventListener("click", (e) => {
        if (!filterStatus) return;
        e.preventDefault();
        filterStatus.value = filterStatus.value === a.dataset.filter ? "" : a.dataset.filter;
        applyFilter();
      });
    }
    if (filterStatus) filterStatus.addEventListener("change", applyFilter);
    if (filterName) filterName.addEventListener("input", applyFilter);
    const sort = document.getElementById("f-sort");
    if (sort) sort.addEventListener("change", () => sortBy(sort.value));
  });
})();
