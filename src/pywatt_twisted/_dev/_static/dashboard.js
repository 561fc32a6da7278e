// The pywatt dev dashboard: renders /_pywatt/events (server-sent events). No framework,
// no build step; every text is set with textContent (log lines are never parsed as HTML).
"use strict";

(function () {
  const state = { modules: [], requests: [], logs: {}, limits: { requests: 200, lines: 200 },
                  skew: 0, receivedAt: Date.now(), selected: null };

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children || []) node.appendChild(child);
    return node;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "";
    seconds = Math.max(0, Math.floor(seconds));
    const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    return (h ? h + "h " : "") + (h || m ? m + "m " : "") + s + "s";
  }

  function clockTime(epoch) {
    return new Date(epoch * 1000).toLocaleTimeString();
  }

  function renderModules() {
    const body = document.querySelector("#modules tbody");
    const elapsed = (Date.now() - state.receivedAt) / 1000;
    body.replaceChildren(...state.modules.map((m) => {
      const status = m.reloading ? "reloading" : m.status;
      const exit = m.last_exit ? m.last_exit.how + (m.last_exit.wanted ? " (stopped)" : "") +
        " at " + clockTime(m.last_exit.at) : "";
      const channels = Object.entries(m.channels || {}).map(([k, v]) =>
        el("div", { text: k + ": " + v }));
      const endpoints = (m.endpoints || []).map((e) =>
        el("div", { class: "mono", text: e.methods.join("|") + " " + e.path }));
      const row = el("tr", { "data-module": m.module_id, "data-status": status }, [
        el("td", { class: "mono", text: m.module_id }),
        el("td", {}, [el("span", { class: "badge " + status, text: status })]),
        el("td", { class: "pid", text: m.pid === null ? "" : String(m.pid) }),
        el("td", { class: "uptime",
                   text: m.uptime === null ? "" : duration(m.uptime + elapsed) }),
        el("td", { class: "restarts", text: String(m.restarts) }),
        el("td", { text: exit + (m.error ? " — " + m.error : "") }),
        el("td", {}, channels),
        el("td", {}, endpoints),
      ]);
      return row;
    }));
  }

  function requestRow(r) {
    const cls = r.status === null ? "status-none" : "status-" + String(r.status)[0];
    return el("tr", {}, [
      el("td", { text: clockTime(r.at) }),
      el("td", { class: "mono", text: r.module }),
      el("td", { text: r.method }),
      el("td", { class: "mono", text: r.path }),
      el("td", { class: cls, text: r.status === null ? "aborted" : String(r.status) }),
      el("td", { text: r.ms.toFixed(1) + " ms" }),
    ]);
  }

  function renderRequests() {
    const body = document.querySelector("#requests tbody");
    body.replaceChildren(...state.requests.slice().reverse().map(requestRow));
    document.getElementById("request-count").textContent =
      "(last " + state.requests.length + ", at most " + state.limits.requests + ")";
  }

  function sources() {
    const ids = state.modules.map((m) => m.module_id);
    for (const s of Object.keys(state.logs)) if (!ids.includes(s)) ids.push(s);
    return ids;
  }

  function renderLogs() {
    const all = sources();
    if (state.selected === null || !all.includes(state.selected)) state.selected = all[0] || null;
    document.getElementById("log-sources").replaceChildren(...all.map((s) => {
      const button = el("button", { type: "button", "data-source": s, text: s,
                                    class: s === state.selected ? "selected" : "" });
      button.addEventListener("click", () => { state.selected = s; renderLogs(); });
      return button;
    }));
    const list = document.getElementById("log");
    const lines = state.logs[state.selected] || [];
    const stick = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
    list.replaceChildren(...lines.map((line) => el("li", { class: line.level }, [
      el("span", { class: "level", text: line.level.toUpperCase() }),
      document.createTextNode(clockTime(line.at) + " " + line.text),
    ])));
    if (stick) list.scrollTop = list.scrollHeight;
  }

  function setConnection(live) {
    const badge = document.getElementById("connection");
    badge.textContent = live ? "live" : "reconnecting";
    badge.className = "badge " + (live ? "live" : "off");
  }

  function push(list, item, limit) {
    list.push(item);
    if (list.length > limit) list.splice(0, list.length - limit);
  }

  function connect() {
    const events = new EventSource("events");
    events.addEventListener("open", () => setConnection(true));
    events.addEventListener("error", () => setConnection(false));
    events.addEventListener("snapshot", (e) => {
      const data = JSON.parse(e.data);
      state.modules = data.modules;
      state.requests = data.requests;
      state.logs = data.logs;
      state.limits = data.limits;
      state.receivedAt = Date.now();
      setConnection(true);
      renderModules(); renderRequests(); renderLogs();
    });
    events.addEventListener("modules", (e) => {
      const data = JSON.parse(e.data);
      state.modules = data.modules;
      state.receivedAt = Date.now();
      renderModules();
      renderLogs();
    });
    events.addEventListener("request", (e) => {
      push(state.requests, JSON.parse(e.data), state.limits.requests);
      renderRequests();
    });
    events.addEventListener("log", (e) => {
      const line = JSON.parse(e.data);
      if (!state.logs[line.source]) state.logs[line.source] = [];
      push(state.logs[line.source], line, state.limits.lines);
      if (line.source === state.selected || state.selected === null) renderLogs();
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    connect();
    // Uptimes move with the clock between two updates.
    setInterval(renderModules, 1000);
  });
})();
