// tubeserver dashboard: the overview's live table (polls /api/tubes and /api/stats, computes
// rates from two polls' counters) and the buried view's confirmed actions (POST to the JSON
// API, then reload). Everything is built with textContent: no data ever becomes markup.
"use strict";

(function () {
  const FLASH = "tubeserver-flash";

  // A duration for people; dashboard.py's _age() writes the same.
  function age(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 120) return seconds + " s";
    if (seconds < 7200) return Math.floor(seconds / 60) + " min";
    if (seconds < 172800) return Math.floor(seconds / 3600) + " h";
    return Math.floor(seconds / 86400) + " d";
  }

  function showFlash(text, isError) {
    const box = document.getElementById("flash");
    if (!box) return;
    box.textContent = text;
    box.className = isError ? "error" : "";
  }

  async function getJson(url) {
    const response = await fetch(url, { cache: "no-store" });
    if (!response.ok) throw new Error(url + " answered " + response.status);
    return response.json();
  }

  function live(table) {
    const period = Number(table.dataset.live);
    const columns = Array.from(table.tHead.rows[0].cells).map(
      (th) => ({ key: th.dataset.key, format: th.dataset.format }));
    let previous = null; // { at: ms, tubes: Map name -> tube } of the last poll
    let failing = false;

    function cell(tube, column, now) {
      const td = document.createElement("td");
      const value = tube[column.key];
      td.className = column.format;
      td.dataset.value = value === null || value === undefined ? "" : String(value);
      if (column.format === "name") {
        const a = document.createElement("a");
        a.href = "/tubes/" + encodeURIComponent(tube.name);
        a.textContent = tube.name;
        td.append(a);
      } else if (column.format === "age") {
        td.textContent = age(value);
      } else if (column.format === "rate") {
        const before = previous && previous.tubes.get(tube.name);
        const seconds = previous ? (now - previous.at) / 1000 : 0;
        const rate = before && seconds > 0 ? (value - before[column.key]) / seconds : -1;
        // A tube dropped and made again restarts its counters: no rate for that poll.
        td.textContent = rate >= 0 ? rate.toFixed(1) : "–";
        td.dataset.value = rate >= 0 ? rate.toFixed(3) : "";
      } else if (column.format === "pause") {
        td.textContent = tube.paused ? value + " s left" : "";
      } else {
        td.textContent = String(value);
      }
      return td;
    }

    function render(tubes, now) {
      const rows = tubes.map((tube) => {
        const tr = document.createElement("tr");
        tr.dataset.tube = tube.name;
        for (const column of columns) tr.append(cell(tube, column, now));
        return tr;
      });
      table.tBodies[0].replaceChildren(...rows);
    }

    async function poll() {
      try {
        const [tubes, stats] = await Promise.all([getJson("/api/tubes"), getJson("/api/stats")]);
        const now = performance.now();
        render(tubes, now);
        for (const el of document.querySelectorAll("[data-stat]")) {
          el.textContent = String(stats[el.dataset.stat]);
        }
        previous = { at: now, tubes: new Map(tubes.map((t) => [t.name, t])) };
        document.getElementById("updated").textContent =
          "Last update " + new Date().toLocaleTimeString() + ".";
        if (failing) showFlash("", false);
        failing = false;
      } catch (error) {
        failing = true;
        showFlash("Cannot reach the server: " + error.message, true);
      } finally {
        setTimeout(poll, period);
      }
    }
    poll();
  }

  async function act(button) {
    const what = button.dataset.what;
    let url = button.dataset.post;
    let result;
    try {
      if (button.dataset.kickAll) {
        // kick-tube kicks delayed jobs when none is buried: ask for the count right before.
        const tube = await getJson(button.dataset.kickAll);
        const buried = tube["current-jobs-buried"];
        if (!buried) {
          result = { text: what + ": no buried jobs left", error: true };
        }
        url += "?bound=" + buried;
      }
      if (!result) {
        const response = await fetch(url, { method: "POST" });
        const answer = await response.json();
        result = response.ok ? { text: what + ": " + answer.reply }
          : { text: what + " failed: " + answer.error, error: true };
      }
    } catch (error) {
      result = { text: what + " failed: " + error.message, error: true };
    }
    sessionStorage.setItem(FLASH, JSON.stringify(result));
    location.reload();
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-post]");
    if (!button || button.disabled) return;
    if (!window.confirm(button.dataset.confirm)) return;
    for (const b of document.querySelectorAll("button[data-post]")) b.disabled = true;
    act(button);
  });

  document.addEventListener("DOMContentLoaded", () => {
    const saved = sessionStorage.getItem(FLASH);
    if (saved) {
      sessionStorage.removeItem(FLASH);
      const { text, error } = JSON.parse(saved);
      showFlash(text, error);
    }
    const table = document.querySelector("table[data-live]");
    if (table) live(table);
  });
})();
