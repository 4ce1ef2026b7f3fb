// The local console: polls /_dev/api/state every second and renders it. No framework, no build step.
"use strict";

const REFRESH_MS = 1000;

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  })[c]);
}

function time(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? esc(iso) : d.toLocaleTimeString([], { hour12: false }) + "." +
    String(d.getMilliseconds()).padStart(3, "0");
}

function status(value) {
  return `<span class="status ${esc(value)}">${esc(value)}</span>`;
}

function fill(id, rows, columns, emptyText) {
  const body = document.getElementById(id);
  body.innerHTML = rows.length ? rows.join("") :
    `<tr class="empty"><td colspan="${columns}">${esc(emptyText)}</td></tr>`;
}

function count(id, n) {
  document.getElementById(`count-${id}`).textContent = n;
}

function timeline(history) {
  return `<ol class="timeline">${(history || []).map((h) =>
    `<li>${time(h.at)} ${status(h.to)} <span class="cause">${esc(h.cause)}</span></li>`).join("")}</ol>`;
}

function outbox(message) {
  return Object.entries(message.notifications || {}).map(([eventId, e]) => ({ eventId, message, ...e }));
}

function size(bytes) {
  return bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(1)} MB` : `${Math.round(bytes / 1024)} KB`;
}

// What went to the handset, beside what the sender gave when it was converted (a HEIC sent as a JPEG).
function sentMedia(media) {
  return (media || []).map((a) => {
    const converted = a.original_content_type && (a.original_content_type !== a.content_type ||
      (a.original_size && a.original_size !== a.size));
    return `<div class="cause media">${esc(a.content_type)} ${size(a.size || 0)}${converted ?
      ` (from ${esc(a.original_content_type)} ${size(a.original_size || 0)})` : ""}</div>`;
  }).join("");
}

function details(m, links) {
  const encoding = m.channel === "sms" && m.encoding ? `<div class="cause encoding">${esc(m.encoding)}, ${
    esc(m.segments)} segment${m.segments === 1 ? "" : "s"}</div>` : "";
  const template = m.template_id ?
    `<div class="cause template">template ${esc(m.template_id)} v${esc(m.template_version)}</div>` : "";
  const short = links.map((l) => `<div class="cause link"><span class="mono">/l/${esc(l.code)}</span> &rarr; ${
    esc(l.url)}</div>`).join("");
  return encoding + template + short + sentMedia(m.media);
}

function eventSummary(e) {
  const click = e.type === "link.clicked" && e.data ?
    ` <span class="cause click">${esc(e.data.url)} at ${time(e.data.clicked_at)}</span>` : "";
  return `${esc(e.type)}: ${esc(e.state)}${click}`;
}

function renderMessages(messages, links) {
  const byMessage = {};
  (links || []).forEach((l) => { (byMessage[l.message_id] = byMessage[l.message_id] || []).push(l); });
  const rows = messages.map((m) => {
    const events = outbox(m);
    const summary = events.map(eventSummary).join("<br>");
    return `<tr data-message-id="${esc(m.id)}">
      <td class="mono">${esc(m.id)}</td><td>${esc(m.to)}</td><td>${esc(m.from)}</td><td>${esc(m.channel)}${
        details(m, byMessage[m.id] || [])}</td>
      <td class="status-cell">${status(m.status)}${m.final && m.status === "sent" ? " (final)" : ""}
        ${m.error_code ? `<div class="bad">${esc(m.error_code)}</div>` : ""}</td>
      <td class="carrier">${esc(m.carrier)}${m.carrier_failed_over_from ?
        ` <span class="cause">(from ${esc(m.carrier_failed_over_from)})</span>` : ""}</td>
      <td class="mono provider-id">${esc(m.provider_id)}</td><td>${timeline(m.history)}</td>
      <td class="events">${summary}</td><td>${time(m.created_at)}</td></tr>`;
  });
  fill("messages-body", rows, 10, "No messages yet: send one with the curl printed by make dev.");
  count("messages", messages.length);
}

function renderGroups(groups, messages) {
  const rows = groups.map((g) => {
    const legs = messages.filter((m) => m.group_id === g.id);
    const tally = {};
    legs.forEach((m) => { tally[m.status] = (tally[m.status] || 0) + 1; });
    const statuses = Object.entries(tally).map(([s, n]) => `${status(s)} ${n}`).join(" ");
    return `<tr data-group-id="${esc(g.id)}"><td class="mono">${esc(g.id)}</td><td>${esc(g.total)}</td>
      <td>${statuses}</td><td>${time(g.created_at)}</td></tr>`;
  });
  fill("groups-body", rows, 4, "No groups yet.");
  count("groups", groups.length);
}

function renderBatches(batches) {
  const rows = batches.map((b) => {
    const details = Object.entries(b).filter(([k, v]) => k !== "id" && k !== "created_at" &&
      (typeof v !== "object" || v === null)).map(([k, v]) => `${esc(k)}: ${esc(v)}`).join(", ");
    return `<tr data-batch-id="${esc(b.id)}"><td class="mono">${esc(b.id)}</td><td>${details}</td>
      <td>${time(b.created_at)}</td></tr>`;
  });
  fill("batches-body", rows, 3, "No batches.");
  count("batches", batches.length);
}

function renderDeliveries(messages, inbox) {
  const answers = {};
  inbox.forEach((e) => { (answers[e.event_id] = answers[e.event_id] || []).push(e.answered); });
  const events = messages.flatMap(outbox).sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
  const rows = events.map((e) => `<tr data-event-id="${esc(e.eventId)}">
    <td class="mono">${esc(e.eventId)}</td><td>${esc(e.type)}</td><td class="mono">${esc(e.message.id)}</td>
    <td class="${e.state === "delivered" ? "ok" : e.state === "gave_up" ? "bad" : ""}">${esc(e.state)}</td>
    <td>${esc(e.attempts)}</td><td>${e.last_error ? esc(e.last_error) : e.state === "delivered" ? "2xx" : ""}</td>
    <td>${(answers[e.eventId] || []).reverse().map(esc).join(", ")}</td></tr>`);
  fill("deliveries-body", rows, 7, "No customer events yet (a message needs a webhook_url or the tenant's default).");
  count("deliveries", events.length);
}

function renderInbox(inbox) {
  const rows = inbox.map((e) => `<tr data-inbox-seq="${esc(e.seq)}" data-event-id="${esc(e.event_id)}">
    <td>${esc(e.seq)}</td><td>${time(e.received_at)}</td><td class="mono">${esc(e.event_id)}</td>
    <td>${esc(e.type)}</td><td class="mono">${esc(e.message_id)}</td><td>${status(e.status)}</td>
    <td class="signature ${e.signature.valid ? "ok" : "bad"}">${e.signature.valid ? "valid" :
      "invalid: " + esc(e.signature.reason)}</td><td>${esc(e.answered)}</td></tr>`);
  fill("inbox-body", rows, 8, "The inbox is empty.");
  count("inbox", inbox.length);
}

function renderInbound(messages) {
  const rows = messages.map((m) => `<tr data-message-id="${esc(m.id)}"><td class="mono">${esc(m.id)}</td>
    <td>${esc(m.from)}</td><td>${esc(m.to)}</td><td>${esc(m.body ?? m.text)}</td>
    <td>${esc((m.media || m.media_urls || []).length)}</td><td>${time(m.created_at)}</td></tr>`);
  fill("inbound-body", rows, 6, "No inbound messages.");
  count("inbound", messages.length);
}

function renderSimulator(sent) {
  const rows = sent.map((s) => `<tr data-provider-id="${esc(s.id)}"><td class="mono">${esc(s.id)}</td>
    <td>${esc(Array.isArray(s.to) ? s.to.join(", ") : s.to)}</td><td>${esc(s.from)}</td><td>${esc(s.type)}</td>
    <td>${status(s.status)}</td><td>${esc(s.attempt)}</td><td>${time(s.received_at)}</td></tr>`);
  fill("simulator-body", rows, 7, "The simulator has received nothing yet.");
  count("simulator", sent.length);
}

function renderTwilio(sent) {
  const rows = sent.map((s) => `<tr data-provider-id="${esc(s.sid)}"><td class="mono">${esc(s.sid)}</td>
    <td>${esc(s.to)}</td><td>${esc(s.from)}</td><td>${esc(s.num_media)}</td><td>${status(s.status)}</td>
    <td>${esc(s.error_code ?? "")}</td><td>${esc(s.date_created)}</td></tr>`);
  fill("twilio-body", rows, 7, "The Twilio simulator has received nothing yet.");
  count("twilio", sent.length);
}

async function refresh() {
  try {
    const response = await fetch("/_dev/api/state", { cache: "no-store" });
    const state = await response.json();
    const inbound = state.messages.filter((m) => m.direction === "inbound").concat(state.inbound || []);
    const outbound = state.messages.filter((m) => m.direction !== "inbound");
    renderMessages(outbound, state.links);
    renderGroups(state.groups, state.messages);
    renderBatches(state.batches);
    renderDeliveries(state.messages, state.inbox);
    renderInbox(state.inbox);
    renderInbound(inbound);
    renderSimulator(state.simulator);
    renderTwilio(state.twilio || []);
    const errors = document.getElementById("errors");
    errors.hidden = !state.errors.length;
    errors.textContent = state.errors.join("; ");
    document.getElementById("refreshed").textContent = time(state.now);
  } catch (err) {
    const errors = document.getElementById("errors");
    errors.hidden = false;
    errors.textContent = `cannot reach the dev server: ${err}`;
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

refresh();
