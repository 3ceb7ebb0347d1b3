// The dashboard's live parts: site charts polled from the JSON API (uPlot), HTML fragments
// refreshed when the live feed (server-sent events) reports a change, and the
// temporary-limit form. Sign-in is a cookie the API accepts, so fetch() needs no token.
(() => {
  "use strict";

  const body = document.body;
  const refreshMs = Math.max(1, Number(body.dataset.refresh || 5)) * 1000;
  const offsetS = Number(body.dataset.utcOffset || 0); // the display zone (site local time)
  const HOUR = 3600;
  // the page's language: its words for what the script writes (base.html, #i18n)
  const WORDS = JSON.parse((document.getElementById("i18n") || {}).textContent || "{}");
  const t = (s) => WORDS[s] || s;

  async function getJSON(url) {
    const r = await fetch(url, { headers: { Accept: "application/json" } });
    if (r.status === 401) {
      location.href = "/login?next=" + encodeURIComponent(location.pathname);
    }
    return { ok: r.ok, status: r.status, data: r.ok ? await r.json() : null };
  }

  const secs = (iso) => Date.parse(iso) / 1000;
  const pad = (n) => String(n).padStart(2, "0");
  function hhmm(t, seconds) { // t in unix seconds, shown in the display zone
    const d = new Date((t + offsetS) * 1000);
    const s = pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes());
    return seconds ? s + ":" + pad(d.getUTCSeconds()) : s;
  }
  function day(t) {
    const d = new Date((t + offsetS) * 1000);
    return pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate());
  }
  // uPlot reads a Date's local fields: shift so that they show the display zone
  function zoned(t) {
    const d = new Date((t + offsetS) * 1000);
    return new Date(d.getTime() + d.getTimezoneOffset() * 60000);
  }

  // ------------------------------------------------------------------ charts

  const stepped = () => uPlot.paths.stepped({ align: 1 });
  const LIMIT = { label: t("limit kW"), stroke: "#b91c1c", width: 2, paths: stepped() };
  const SERIES = {
    overview: [
      LIMIT,
      { label: t("load (measured)"), stroke: "#1d4ed8", fill: "rgba(29,78,216,.12)", width: 1.5 },
      { label: t("load (plan)"), stroke: "#1d4ed8", dash: [6, 4], width: 1.5, paths: stepped() },
    ],
    detail: [
      LIMIT,
      { label: t("household"), stroke: "#6b7280", fill: "rgba(107,114,128,.15)", width: 1, paths: stepped() },
      { label: t("EV (measured)"), stroke: "#16a34a", fill: "rgba(22,163,74,.12)", width: 1.5 },
      { label: t("EV (plan)"), stroke: "#16a34a", dash: [6, 4], width: 1.5, paths: stepped() },
      // capacity held for chargers the plan cannot steer: apart from the plan, not in it
      { label: t("reserved"), stroke: "#b45309", dash: [2, 3], width: 1.5, paths: stepped() },
      { label: t("total (measured)"), stroke: "#1d4ed8", width: 1.5 },
      { label: t("total (plan)"), stroke: "#1d4ed8", dash: [6, 4], width: 1.5, paths: stepped() },
    ],
  };
  // a legend value: empty (not "--") where the cursor is off the chart or a series has none
  const kw = (u, v) => (v == null ? "" : v.toFixed(1));

  // One x axis for the measured past and the planned future; null where a series has none.
  function columns(load, plan, mode, lo, hi) {
    const rows = new Map(); // x -> {limit, household, ev, evPlan}
    const row = (x) => {
      if (!rows.has(x)) rows.set(x, {});
      return rows.get(x);
    };
    const last = load.starts.length - 1;
    load.starts.forEach((iso, i) => {
      const r = row(secs(iso));
      r.limit = load.limit_kw[i];
      r.household = load.household_kw[i];
      // the bucket still filling: its stations may not have metered yet
      if (i < last) r.ev = load.ev_kw[i];
    });
    if (plan) {
      const inp = plan.inputs;
      inp.slot_starts.forEach((iso, i) => {
        const x = secs(iso);
        if (x > hi) return;
        const r = row(x);
        r.planLimit = inp.limit_kw[i];
        r.planHousehold = inp.household_kw[i];
        r.evPlan = inp.planned_ev_kw[i] || 0;
        r.reserved = inp.reserved_kw[i] || 0;
        // a site's battery (+ charging) and solar (a negative load): in the planned total
        r.onSite = ((inp.storage_kw || [])[i] || 0) - ((inp.solar_kw || [])[i] || 0);
      });
    }
    const xs = [...rows.keys()].filter((x) => x >= lo - HOUR && x <= hi).sort((a, b) => a - b);
    const pick = (f) => xs.map((x) => { const v = f(rows.get(x)); return v == null ? null : v; });
    const sum = (a, b) => (a == null || b == null ? null : a + b);
    const limit = pick((r) => (r.planLimit != null ? r.planLimit : r.limit));
    const measured = pick((r) => sum(r.household, r.ev));
    const planned = pick((r) => sum(sum(sum(r.planHousehold, r.evPlan), r.reserved), r.onSite));
    if (mode === "overview") return [xs, limit, measured, planned];
    return [xs, limit, pick((r) => (r.household != null ? r.household : r.planHousehold)),
      pick((r) => r.ev), pick((r) => r.evPlan), pick((r) => r.reserved), measured, planned];
  }

  function makeChart(el, state) {
    const series = [{ value: (u, v) => (v == null ? "" : hhmm(v)) }, ...SERIES[el.dataset.mode].map((s) => ({ ...s, spanGaps: true, value: kw }))];
    const opts = {
      width: Math.max(300, el.clientWidth), height: el.dataset.mode === "detail" ? 320 : 220,
      tzDate: zoned,
      scales: { x: { time: true, range: () => [state.lo, state.hi] }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
      axes: [{ values: (u, splits) => splits.map((t) => (hhmm(t) === "00:00" ? day(t) : hhmm(t))) },
        { label: "kW", size: 50 }],
      series,
      hooks: {
        draw: [(u) => { // the CSMS's now
          const x = u.valToPos(state.now, "x", true);
          const { ctx, bbox } = u;
          ctx.save();
          ctx.strokeStyle = "#111827";
          ctx.setLineDash([2, 3]);
          ctx.beginPath();
          ctx.moveTo(x, bbox.top);
          ctx.lineTo(x, bbox.top + bbox.height);
          ctx.stroke();
          ctx.restore();
        }],
      },
    };
    const u = new uPlot(opts, [[], ...series.slice(1).map(() => [])], el);
    new ResizeObserver(() => u.setSize({ width: Math.max(300, el.clientWidth), height: opts.height }))
      .observe(el);
    return u;
  }

  async function updateChart(el) {
    const site = encodeURIComponent(el.dataset.siteChart);
    const hours = Number(el.dataset.hours || 3);
    const ahead = Number(el.dataset.ahead || 6);
    const step = Math.max(60, Math.round((hours * HOUR) / 180));
    const [load, plan] = await Promise.all([
      getJSON(`/api/sites/${site}/load?hours=${hours}&step_s=${step}`),
      getJSON(`/api/sites/${site}/plan`),
    ]);
    if (!load.ok) return;
    const now = secs(load.data.now);
    const state = el._state || (el._state = {});
    Object.assign(state, { now, lo: now - hours * HOUR, hi: now + ahead * HOUR });
    const data = columns(load.data, plan.ok ? plan.data : null, el.dataset.mode, state.lo, state.hi);
    el._chart = el._chart || makeChart(el, state);
    el._chart.setData(data);
    const starts = load.data.starts;
    el.dataset.updates = String(Number(el.dataset.updates || 0) + 1);
    el.dataset.lastPoint = starts[starts.length - 1];
    el.dataset.planId = plan.ok ? String(plan.data.id) : "";
    const clock = document.getElementById("clock");
    if (clock) clock.textContent = hhmm(now, true);
    const stat = document.querySelector(`[data-site-stat="${CSS.escape(el.dataset.siteChart)}"]`);
    if (stat) {
      const i = Math.max(0, starts.length - 2); // the last full bucket
      const loadKw = (load.data.household_kw[i] || 0) + load.data.ev_kw[i];
      const lim = load.data.limit_kw[i];
      let text = `${t("now")} ${loadKw.toFixed(1)}` + (lim != null ? ` / ${lim.toFixed(1)}` : "")
        + ` kW (EV ${load.data.ev_kw[i].toFixed(1)} kW)`;
      if (plan.ok) {
        text += ` · ${hhmm(secs(plan.data.planned_at))} ${t(plan.data.status)}, ${plan.data.sessions}`;
      }
      stat.textContent = text;
    }
  }

  const charts = [...document.querySelectorAll("[data-site-chart]")];
  async function pollCharts() {
    await Promise.all(charts.map((el) => updateChart(el).catch((e) => console.error(e))));
  }
  if (charts.length) {
    pollCharts();
    setInterval(pollCharts, refreshMs);
  }

  // ------------------------------------------------------------------ fragments + live feed

  const fragments = [...document.querySelectorAll("[data-fragment]")];
  async function refreshFragments() {
    await Promise.all(fragments.map(async (el) => {
      const r = await fetch(el.dataset.fragment, { headers: { Accept: "text/html" } });
      if (r.ok) el.innerHTML = await r.text();
    }));
  }
  let pending = null;
  function soon() { // many events in a burst: one refresh
    if (!pending) pending = setTimeout(() => { pending = null; refreshFragments(); }, 500);
  }
  if (fragments.length) setInterval(refreshFragments, Math.max(refreshMs, 5000));

  const live = document.getElementById("live");
  const TYPES = ["StationConnected", "StationDisconnected", "TransactionChanged", "ChargingNeedsChanged",
    "GridEventChanged"];
  if (body.dataset.live && fragments.length && window.EventSource) {
    const feed = new EventSource("/api/events?types=" + TYPES.join(","));
    feed.addEventListener("ready", () => live && live.classList.replace("off", "on"));
    feed.addEventListener("error", () => live && live.classList.replace("on", "off"));
    TYPES.forEach((t) => feed.addEventListener(t, soon));
  }

  // ------------------------------------------------------------------ temporary limit

  const form = document.getElementById("limit-form");
  if (form) {
    const out = document.getElementById("limit-result");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const site = encodeURIComponent(form.dataset.site);
      const fd = new FormData(form);
      const kw = Number(fd.get("kw"));
      const minutes = Number(fd.get("minutes"));
      out.className = "";
      out.textContent = t("sending…");
      // the CSMS clock may run faster than the browser's (the demo): ask it the time
      const clock = await getJSON(`/api/sites/${site}/load?hours=0.01&step_s=60`);
      if (!clock.ok) { out.className = "bad"; out.textContent = `CSMS clock: ${clock.status}`; return; }
      const end = new Date(Date.parse(clock.data.now) + minutes * 60000).toISOString();
      const r = await fetch(`/api/sites/${site}/events`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json",
          [form.dataset.csrfHeader]: "dashboard" },
        body: JSON.stringify({ node: fd.get("node"), kind: "limit", kw, end }),
      });
      const answer = await r.json().catch(() => ({}));
      if (r.ok) {
        out.className = "ok";
        out.textContent = `${t("limit set")}: ${kw} kW, ${fd.get("node")}, → ${hhmm(secs(end))}`;
        form.dataset.sent = String(Number(form.dataset.sent || 0) + 1);
        pollCharts();
        setTimeout(pollCharts, 1000);
        setTimeout(refreshFragments, 1000);
      } else {
        const d = answer.detail;
        const why = Array.isArray(d) ? d.map((e) => `${(e.loc || []).slice(-1)}: ${e.msg}`).join("; ") : d;
        out.className = "bad";
        out.textContent = `Refused (${r.status}): ${why || r.statusText}`;
      }
    });
  }

  // ------------------------------------------------------------------ V2G terms

  const terms = document.getElementById("v2g-terms");
  if (terms) {
    const out = document.getElementById("v2g-result");
    const station = encodeURIComponent(terms.dataset.station);
    const f = terms.querySelector("form");
    f.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const fd = new FormData(f);
      const tx = encodeURIComponent(fd.get("transaction_id"));
      const num = (k, scale) => (fd.get(k) === "" ? null : Number(fd.get(k)) * scale);
      const body = {
        opted_in: fd.get("opted_in") === "" ? null : fd.get("opted_in") === "true",
        mode: fd.get("mode") || null,
        min_soc: num("min_soc", 0.01),
        compensation_per_kwh: num("compensation_per_kwh", 1),
      };
      out.className = "";
      out.textContent = t("sending…");
      const r = await fetch(`/api/sessions/${station}/${tx}/v2g`, {
        method: "PUT",
        headers: { "Content-Type": "application/json", Accept: "application/json",
          [terms.dataset.csrfHeader]: "dashboard" },
        body: JSON.stringify(body),
      });
      const answer = await r.json().catch(() => ({}));
      if (r.ok) {
        out.className = "ok";
        out.textContent = `${t("V2G terms saved")}: ${JSON.stringify(answer.terms)}`;
        setTimeout(refreshFragments, 1000);
      } else {
        const d = answer.detail;
        const why = Array.isArray(d) ? d.map((e) => `${(e.loc || []).slice(-1)}: ${e.msg}`).join("; ") : d;
        out.className = "bad";
        out.textContent = `Refused (${r.status}): ${why || r.statusText}`;
      }
    });
  }

  // ------------------------------------------------------------------ station commands

  const commands = document.getElementById("commands");
  if (commands) {
    const out = document.getElementById("command-result");
    const station = encodeURIComponent(commands.dataset.station);
    commands.querySelectorAll("form[data-command]").forEach((f) => f.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const body = {};
      for (const [k, v] of new FormData(f)) {
        if (v === "") continue; // left out: the command's default
        const input = f.elements[k];
        body[k] = input.type === "number" ? Number(v) : (v === "true" || v === "false" ? v === "true" : v);
      }
      out.className = "";
      out.textContent = t("sending…");
      const r = await fetch(`/api/stations/${station}/commands/${f.dataset.command}`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json",
          [commands.dataset.csrfHeader]: "dashboard" },
        body: JSON.stringify(body),
      });
      const answer = await r.json().catch(() => ({}));
      out.dataset.command = f.dataset.command;
      if (r.ok) {
        out.className = "ok";
        out.textContent = `${f.dataset.command}: ${t("answered")} ${JSON.stringify(answer.reply)}`;
        setTimeout(refreshFragments, 1000);
      } else {
        const d = answer.detail;
        const why = Array.isArray(d) ? d.map((e) => `${(e.loc || []).slice(-1)}: ${e.msg}`).join("; ") : d;
        out.className = "bad";
        out.textContent = `${f.dataset.command}: ${t("failed")} (${r.status}) ${why || r.statusText}`;
      }
    }));
  }
})();
