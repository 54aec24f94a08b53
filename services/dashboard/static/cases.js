// The Cases view: the queue (/cases) and one case (/cases/<id>), over /api/cases.
// Values go into the page with textContent only. Every action is a JSON POST with the
// X-CSRF-Token the last GET handed out and its own action_id (a retry is recorded once).
"use strict";

let csrf = "";

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function fail(message) {
  const box = document.getElementById("errors");
  box.hidden = false;
  box.textContent += message + "\n";
  box.dataset.count = String(Number(box.dataset.count) + 1);
}

function when(ms) {
  return ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : "";
}

function age(seconds) {
  const d = Math.floor(seconds / 86400), h = Math.floor((seconds % 86400) / 3600),
    m = Math.floor((seconds % 3600) / 60);
  if (d) return `${d}d ${String(h).padStart(2, "0")}h`;
  if (h) return `${h}h ${String(m).padStart(2, "0")}m`;
  return `${m}m`;
}

async function getJson(url) {
  const r = await fetch(url, { credentials: "same-origin" });
  if (r.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname); return null; }
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  csrf = body.csrf || csrf;
  return body;
}

function showUser(user) {
  if (!user) return;
  const box = document.getElementById("user");
  box.textContent = `${user.name} (${user.role}) `;
  const form = el("form");
  form.method = "post"; form.action = "/logout"; form.style.display = "inline";
  form.appendChild(el("button", "Log out"));
  box.appendChild(form);
}

// crypto.getRandomValues works on plain http too (randomUUID needs a secure context)
function newActionId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return "p-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function cell(row, text, cls) { const td = el("td", text, cls); row.appendChild(td); return td; }

async function loadQueue() {
  document.getElementById("queue").hidden = false;
  const params = new URLSearchParams(location.search);
  for (const name of ["status", "severity", "assignee"]) {
    const input = document.getElementById("f-" + name);
    if (params.get(name)) input.value = params.get(name);
  }
  const query = new URLSearchParams();
  for (const name of ["status", "severity", "assignee"]) {
    const v = document.getElementById("f-" + name).value.trim();
    if (v) query.set(name, v);
  }
  const body = await getJson("/api/cases?" + query);
  if (!body) return;
  showUser(body.user);
  const tbody = document.querySelector("#queue-table tbody");
  tbody.replaceChildren();
  let alerts = 0;
  for (const c of body.cases) {
    alerts += c.alerts;
    const tr = el("tr");
    tr.dataset.case = c.case_id;
    const link = el("a", c.case_id);
    link.href = "/cases/" + encodeURIComponent(c.case_id);
    cell(tr, "").appendChild(link);
    cell(tr, c.tenant); cell(tr, c.client);
    cell(tr, c.severity, "sev-" + c.severity);
    cell(tr, c.alerts.toLocaleString("en-US"), "num");
    cell(tr, c.status === "open" ? "open" : `closed (${c.close_reason})`);
    cell(tr, c.assignee || "–");
    cell(tr, c.acknowledged ? "yes" : "no");
    cell(tr, age(c.age_s), "num");
    cell(tr, when(c.last_action_at));
    tbody.appendChild(tr);
  }
  document.getElementById("queue-summary").textContent =
    `${body.cases.length.toLocaleString("en-US")} cases, ${alerts.toLocaleString("en-US")} alerts`;
}

function renderCase(body) {
  const c = body.case;
  document.title = `${c.case_id} · Cases · brokerstream`;
  document.getElementById("c-id").textContent = c.case_id;
  const badge = document.getElementById("c-status");
  badge.textContent = c.status === "open" ? "open" : `closed: ${c.close_reason}`;
  badge.className = "badge " + c.status;
  const facts = document.getElementById("c-facts");
  facts.replaceChildren();
  const end = c.closed_at || body.now;
  for (const [k, v] of [["tenant", c.tenant], ["client", c.client], ["severity", c.severity],
    ["alerts", c.alert_ids.length], ["assignee", c.assignee || "–"],
    ["acknowledged", c.acknowledged ? `by ${c.acknowledged_by} at ${when(c.acknowledged_at)}` : "no"],
    ["raised", when(c.raised_at)], ["opened", when(c.opened_at)],
    ["age", age(Math.max(0, (end - c.raised_at) / 1000))]]) {
    facts.appendChild(el("dt", k));
    facts.appendChild(el("dd", v));
  }
  const open = c.status === "open";
  document.getElementById("a-assign").hidden = !open;
  document.getElementById("a-acknowledge").hidden = !open || c.acknowledged;
  document.getElementById("a-close").hidden = !open;
  document.getElementById("a-reopen").hidden = open;
  const reasons = document.querySelector("#a-close select");
  if (!reasons.options.length) {
    for (const r of body.reasons) reasons.appendChild(el("option", r));
  }
  const alerts = document.querySelector("#alerts-table tbody");
  alerts.replaceChildren();
  for (const a of body.alerts) {
    const tr = el("tr");
    tr.dataset.alert = a.alert_id;
    cell(tr, when(a.detected_at));
    cell(tr, `${a.rule_id} v${a.rule_version}`);
    cell(tr, a.severity, "sev-" + a.severity);
    cell(tr, a.subject); cell(tr, a.summary);
    cell(tr, JSON.stringify(a.facts, null, 1), "facts");
    cell(tr, a.evidence.join(", "));
    alerts.appendChild(tr);
  }
  const history = document.querySelector("#history-table tbody");
  history.replaceChildren();
  for (const h of c.history) {
    const tr = el("tr", undefined, h.rejected ? "rejected" : "");
    cell(tr, when(h.at)); cell(tr, h.actor); cell(tr, h.action);
    let details = { open: `${h.alert_ids.length} alert(s)`, link: `+${h.alert_ids.length} alert(s)`,
      assign: `to ${h.assignee}`, close: h.reason }[h.action] || "";
    if (h.note) details = details ? `${details}: ${h.note}` : h.note;
    if (h.rejected) details = `(not applied: ${h.rejected}) ${details}`;
    cell(tr, details);
    history.appendChild(tr);
  }
}

async function loadCase(id) {
  document.getElementById("case").hidden = false;
  const body = await getJson("/api/cases/" + encodeURIComponent(id));
  if (!body) return;
  showUser(body.user);
  renderCase(body);
  for (const form of document.querySelectorAll(".case-actions form")) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = Object.fromEntries(new FormData(form).entries());
      data.action_id = newActionId();
      const message = document.getElementById("action-message");
      message.hidden = true;
      const r = await fetch(`/api/cases/${encodeURIComponent(id)}/${form.dataset.action}`, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify(data),
      });
      const answer = await r.json();
      if (!r.ok) { message.textContent = answer.error || r.statusText; message.hidden = false; return; }
      csrf = answer.csrf || csrf;
      form.reset();
      renderCase(answer);
    });
  }
}

async function main() {
  const match = location.pathname.match(/^\/cases\/(.+)$/);
  try {
    if (match) await loadCase(decodeURIComponent(match[1]));
    else {
      document.getElementById("filters").addEventListener("submit", (event) => {
        event.preventDefault();
        const q = new URLSearchParams();
        for (const name of ["status", "severity", "assignee"]) {
          const v = document.getElementById("f-" + name).value.trim();
          if (v) q.set(name, v);
        }
        history.replaceState(null, "", "/cases?" + q);
        loadQueue().catch((e) => fail(e.message));
      });
      await loadQueue();
    }
  } catch (e) {
    fail(e.message);
  }
  document.body.dataset.ready = "1";
}

main();
