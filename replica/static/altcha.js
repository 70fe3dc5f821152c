// <altcha-widget>: our own small stand-in for the ALTCHA captcha widget the city embeds.
//
// Attributes (as on the city's page):
//   challenge      URL of the challenge (GET, ALTCHA v2 JSON)
//   configuration  JSON, we read verifyUrl (POST {"payload": base64}) and minDuration (ms)
//   language       only "de" is implemented
// Events:
//   statechange         detail {state}: unverified | verifying | verified | expired | error
//                       (on HTTP trouble also {httpStatus, body})
//   serververification  detail = the verify response ({meta, data, token})
// The widget renders into its own light DOM (the real one has no shadow root either); it lives inside
// the booking component's shadow root.

const STRINGS = {
  label: "Ich bin kein Bot.",
  verifying: "Überprüfung läuft...",
  verified: "Erfolgreich überprüft.",
  expired: "Die Zeit ist abgelaufen. Versuchen Sie es erneut.",
  error: "Die Prüfung ist fehlgeschlagen. Versuchen Sie es später erneut.",
  loadError: "Das Widget konnte nicht geladen werden.",
};

const DEFAULT_MIN_DURATION_MS = 500;
const SOLVE_TIMEOUT_MS = 90000;
const WORKER_URL = new URL("./altcha-worker.js", import.meta.url);

function utf8Base64(text) {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function solveInWorker(parameters) {
  return new Promise((resolve, reject) => {
    let worker;
    try {
      worker = new Worker(WORKER_URL);
    } catch (err) {
      reject(Object.assign(new Error("worker"), { loadError: true }));
      return;
    }
    worker.onmessage = (event) => {
      worker.terminate();
      if (event.data.error || !event.data.solution) reject(new Error(event.data.error || "no solution"));
      else resolve(event.data.solution);
    };
    worker.onerror = () => {
      worker.terminate();
      reject(Object.assign(new Error("worker failed"), { loadError: true }));
    };
    worker.postMessage({ parameters, timeoutMs: SOLVE_TIMEOUT_MS });
  });
}

class AltchaWidget extends HTMLElement {
  constructor() {
    super();
    this.state = "unverified";
    this.token = null;
    this._expiryTimer = null;
    this._built = false;
  }

  connectedCallback() {
    // Re-attaching (the app re-renders its step) must keep the state.
    if (this._built) return;
    this._built = true;
    const suffix = Math.random().toString(36).slice(2, 10);
    const inputId = `altcha-checkbox-${suffix}`;
    this.innerHTML = "";
    const box = document.createElement("div");
    box.className = "altcha";
    box.innerHTML = `
      <div class="altcha-main">
        <div class="altcha-checkbox"><input type="checkbox" id="${inputId}"><span class="altcha-box" aria-hidden="true"></span></div>
        <div class="altcha-label"><label for="${inputId}"></label></div>
      </div>
      <div class="altcha-error" role="alert" hidden></div>`;
    this.append(box);
    this._box = box;
    this._input = box.querySelector("input");
    this._label = box.querySelector("label");
    this._error = box.querySelector(".altcha-error");
    this._input.addEventListener("change", () => this._onToggle());
    if (!(window.isSecureContext && window.crypto && crypto.subtle && window.Worker)) {
      this._setState("error", STRINGS.loadError);
      this._input.disabled = true;
      return;
    }
    this._setState("unverified");
  }

  disconnectedCallback() {
    // Keep timers: a re-attached widget continues; an abandoned one expires harmlessly.
  }

  get configuration() {
    try {
      return JSON.parse(this.getAttribute("configuration") || "{}");
    } catch {
      return {};
    }
  }

  reset() {
    clearTimeout(this._expiryTimer);
    this.token = null;
    this._setState("unverified");
  }

  _onToggle() {
    if (this.state === "verifying" || this.state === "verified") {
      this._input.checked = this.state === "verified";
      return;
    }
    this.verify();
  }

  _setState(state, errorText = "", extra = {}) {
    this.state = state;
    const labels = { verifying: STRINGS.verifying, verified: STRINGS.verified };
    this._label.textContent = labels[state] || STRINGS.label;
    this._input.checked = state === "verified";
    this._box.dataset.state = state;
    this._error.hidden = !errorText;
    this._error.textContent = errorText;
    this.dispatchEvent(new CustomEvent("statechange", { detail: { state, ...extra }, bubbles: true }));
  }

  async verify() {
    const started = performance.now();
    const config = this.configuration;
    const minDurationMs = config.minDuration ?? DEFAULT_MIN_DURATION_MS;
    this.token = null;
    this._setState("verifying");
    let challenge;
    try {
      const resp = await fetch(this.getAttribute("challenge"), { headers: { Accept: "application/json" } });
      const body = await resp.json().catch(() => null);
      if (!resp.ok) {
        this._setState("error", STRINGS.error, { httpStatus: resp.status, body });
        return;
      }
      challenge = body;
    } catch {
      this._setState("error", STRINGS.error, { httpStatus: 0, body: null });
      return;
    }
    if (!challenge || typeof challenge.parameters !== "object" || !challenge.parameters) {
      this._setState("error", STRINGS.error);
      return;
    }
    let solution;
    try {
      solution = await solveInWorker(challenge.parameters);
    } catch (err) {
      this._setState("error", err.loadError ? STRINGS.loadError : STRINGS.error);
      return;
    }
    const elapsedMs = performance.now() - started;
    if (elapsedMs < minDurationMs) await sleep(minDurationMs - elapsedMs);

    const payload = utf8Base64(JSON.stringify({ challenge, solution }));
    let result;
    try {
      const resp = await fetch(config.verifyUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ payload }),
      });
      result = await resp.json().catch(() => null);
      if (!resp.ok) {
        this._setState("error", STRINGS.error, { httpStatus: resp.status, body: result });
        return;
      }
    } catch {
      this._setState("error", STRINGS.error, { httpStatus: 0, body: null });
      return;
    }
    const ok = result && result.meta && result.meta.success === true && result.token;
    this.dispatchEvent(new CustomEvent("serververification", { detail: result, bubbles: true }));
    if (!ok) {
      this._setState("error", STRINGS.error);
      return;
    }
    this.token = result.token;
    this._setState("verified", "", { token: result.token });
    this._armExpiry(challenge.parameters.expiresAt);
  }

  _armExpiry(expiresAt) {
    clearTimeout(this._expiryTimer);
    if (typeof expiresAt !== "number") return;
    const remainingMs = expiresAt * 1000 - Date.now();
    // The server just accepted the solution, so a challenge "already expired" here means the browser's
    // clock and the server's disagree; trust the server. setTimeout also overflows past ~24.8 days.
    if (remainingMs <= 0 || remainingMs > 2 ** 31 - 1) return;
    this._expiryTimer = setTimeout(() => {
      if (this.state !== "verified") return;
      this.token = null;
      this._setState("expired", STRINGS.expired);
    }, Math.max(0, remainingMs));
  }
}

if (!customElements.get("altcha-widget")) customElements.define("altcha-widget", AltchaWidget);
