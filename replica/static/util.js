// Helpers of the booking component: Berlin dates, the citizen-API client, e-mail link routes, DOM.

import { TZ } from "./texts.js";

// ---------------------------------------------------------------------------------------------
// Dates and times (Europe/Berlin)

export const fmtIsoDate = new Intl.DateTimeFormat("en-CA", { timeZone: TZ, year: "numeric", month: "2-digit", day: "2-digit" });
export const fmtTime = new Intl.DateTimeFormat("de-DE", { timeZone: TZ, hour: "2-digit", minute: "2-digit" });
export const fmtHour = new Intl.DateTimeFormat("de-DE", { timeZone: TZ, hour: "numeric", hourCycle: "h23" });
export const fmtLongDateOfTs = new Intl.DateTimeFormat("de-DE", {
  timeZone: TZ, weekday: "long", day: "numeric", month: "long", year: "numeric",
});
// ISO dates are handled as UTC midnights so that arithmetic never crosses a DST edge.
export const fmtLongDay = new Intl.DateTimeFormat("de-DE", {
  timeZone: "UTC", weekday: "long", day: "numeric", month: "long", year: "numeric",
});
export const fmtMonth = new Intl.DateTimeFormat("de-DE", { timeZone: "UTC", month: "long", year: "numeric" });
// The day heading above the times and the list view's day labels: "Mittwoch, 09.12.2026"
// (zmscitizenview formatAppointmentDateTime.ts formatDayFromDate: weekday long, 2-digit day and month).
export const fmtDayHeading = new Intl.DateTimeFormat("de-DE", {
  timeZone: "UTC", weekday: "long", year: "numeric", month: "2-digit", day: "2-digit",
});

export const berlinToday = () => fmtIsoDate.format(new Date());
export const hhmm = (ts) => fmtTime.format(new Date(ts * 1000));
export const hourOf = (ts) => parseInt(fmtHour.format(new Date(ts * 1000)), 10);
export const utcDate = (iso) => new Date(`${iso}T00:00:00Z`);
export const isoOfUtc = (d) => d.toISOString().slice(0, 10);
export const longDay = (iso) => fmtLongDay.format(utcDate(iso));
export const dayHeading = (iso) => fmtDayHeading.format(utcDate(iso));
export const monthOf = (iso) => iso.slice(0, 7);

export function addMonths(iso, months) {
  const d = utcDate(iso);
  return isoOfUtc(new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + months, d.getUTCDate())));
}

export function daysOfMonth(month) {
  const [y, m] = month.split("-").map(Number);
  const count = new Date(Date.UTC(y, m, 0)).getUTCDate();
  return Array.from({ length: count }, (_, i) => `${month}-${String(i + 1).padStart(2, "0")}`);
}

export function shiftMonth(month, delta) {
  return addMonths(`${month}-01`, delta).slice(0, 7);
}

// ---------------------------------------------------------------------------------------------
// API client

export class ApiError extends Error {
  /** kind: "api" (a 4xx with an error list) | "rateLimit" | "maintenance" | "unavailable" */
  constructor(kind, status, code = null, body = null) {
    super(`${kind} ${status} ${code || ""}`);
    this.kind = kind;
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

export function classify(status, body) {
  const codes = (body && Array.isArray(body.errors) ? body.errors : []).map((e) => e && e.errorCode);
  if (status === 429 || codes.includes("rateLimitExceeded")) return new ApiError("rateLimit", status, "rateLimitExceeded", body);
  if (status === 503 || codes.includes("serviceUnavailable")) return new ApiError("maintenance", status, "serviceUnavailable", body);
  if (status >= 500 || status === 0) return new ApiError("unavailable", status, codes[0] || null, body);
  return new ApiError("api", status, codes[0] || "unknownError", body);
}

export class CitizenApi {
  constructor(base) {
    this.base = base.replace(/\/+$/, "");
  }

  async call(endpoint, { method = "GET", query = null, body = null } = {}) {
    let url = `${this.base}/${endpoint}/`;
    if (query) url += `?${new URLSearchParams(query)}`;
    let resp;
    try {
      resp = await fetch(url, {
        method,
        headers: body ? { "Content-Type": "application/json", Accept: "application/json" } : { Accept: "application/json" },
        body: body ? JSON.stringify(body) : undefined,
      });
    } catch {
      throw new ApiError("unavailable", 0);
    }
    let data = null;
    let parsed = true;
    try {
      data = await resp.json();
    } catch {
      parsed = false;
    }
    if (!resp.ok) throw classify(resp.status, data);
    if (!parsed || data === null || typeof data !== "object") throw new ApiError("unavailable", resp.status);
    return data;
  }
}

// ---------------------------------------------------------------------------------------------
// Routes

/** Decode the <hash> of the e-mail links: base64 of {"id", "authKey"}, maybe URL-encoded several times. */
export function decodeAppointmentHash(raw) {
  let text = raw;
  for (let i = 0; i < 5 && /%[0-9a-fA-F]{2}/.test(text); i++) {
    try {
      text = decodeURIComponent(text);
    } catch {
      break;
    }
  }
  let b64 = text.trim().replace(/-/g, "+").replace(/_/g, "/").replace(/=+$/, "");
  if (b64.length % 4 === 1) return null;
  b64 += "=".repeat((4 - (b64.length % 4)) % 4);
  try {
    const binary = atob(b64);
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    const data = JSON.parse(new TextDecoder().decode(bytes));
    const id = Number(data.id);
    if (!Number.isInteger(id) || id <= 0 || typeof data.authKey !== "string") return null;
    return { processId: id, authKey: data.authKey, action: data.action || null };
  } catch {
    return null;
  }
}

export function parseRoute(hash) {
  const [path, query = ""] = hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query);
  const parts = path.split("/").filter(Boolean);
  if (parts[0] === "services" && parts[1]) {
    return {
      name: "booking",
      serviceId: parts[1],
      officeId: parts[2] === "locations" && parts[3] ? parts[3] : null,
      exclusive: params.get("exclusiveLocation") === "1",
      valid: parts.length === 2 || (parts.length === 4 && parts[2] === "locations"),
    };
  }
  if (parts[0] === "appointment" && parts[1] === "confirm") {
    return { name: "confirm", hash: parts.slice(2).join("/") };
  }
  if (parts[0] === "appointment" && parts[1]) {
    return { name: "manage", hash: parts.slice(1).join("/") };
  }
  return { name: "booking", serviceId: null, officeId: null, exclusive: false, valid: true };
}

// ---------------------------------------------------------------------------------------------
// DOM helper: h("div.class#id", {attrs, on: {click}}, ...children)

export function h(spec, attrs = {}, ...children) {
  const [, tag, rest] = spec.match(/^([a-z0-9-]+)(.*)$/);
  const el = document.createElement(tag);
  for (const token of rest.match(/[.#][^.#]+/g) || []) {
    if (token[0] === ".") el.classList.add(token.slice(1));
    else el.id = token.slice(1);
  }
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "on") for (const [ev, fn] of Object.entries(value)) el.addEventListener(ev, fn);
    else if (key === "class") el.className = [el.className, value].filter(Boolean).join(" ");
    else if (key === "text") el.textContent = value;
    else if (key === "value" || key === "checked") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** The patternlab icon: <svg aria-hidden="true" class="m-button__icon"><use href="#icon-<name>"/></svg>. */
export function icon(name, className = "m-button__icon") {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("class", className);
  const use = document.createElementNS(ns, "use");
  use.setAttribute("href", `#icon-${name}`);
  svg.append(use);
  return svg;
}

export function button(label, { variant = "primary", disabled = false, onClick, id = null, attrs = {}, iconName = null, iconLeft = false } = {}) {
  const parts = [label === null ? null : h("span", { text: label })];
  if (iconName) parts[iconLeft ? "unshift" : "push"](icon(iconName, `m-button__icon m-button__icon--${iconLeft ? "before" : "after"}`));
  const el = h(`button.m-button.m-button--${variant}`, { type: "button", id, ...attrs }, parts);
  if (disabled) {
    el.setAttribute("aria-disabled", "true");
    el.classList.add("disabled");
  }
  el.addEventListener("click", (ev) => {
    if (el.getAttribute("aria-disabled") === "true") {
      ev.preventDefault();
      return;
    }
    onClick && onClick(ev);
  });
  return el;
}

export function callout(type, header, text, ...extra) {
  return h(
    `div.m-callout.m-callout--${type}`,
    { role: type === "error" ? "alert" : "status" },
    h("div.m-callout__body", {}, h("h3.m-callout__headline", { text: header }), text ? h("p.m-callout__content", { text }) : null, ...extra),
  );
}

/** Server-provided HTML (scope hints) shown as plain text: the replica never injects markup. */
export function htmlToText(html) {
  if (!html) return "";
  const doc = new DOMParser().parseFromString(String(html).replace(/<br\s*\/?>/gi, "\n"), "text/html");
  return (doc.body.textContent || "").trim();
}

export function addressLine(office) {
  const a = (office && office.address) || {};
  return [a.street, a.house_number].filter(Boolean).join(" ");
}
export function setDisabled(el, disabled) {
  if (disabled) {
    el.setAttribute("aria-disabled", "true");
    el.classList.add("disabled");
  } else {
    el.removeAttribute("aria-disabled");
    el.classList.remove("disabled");
  }
}
