// <zms-appointment-wrapped>: the booking component of the replica (our own code, no framework).
//
// Same steps, German labels, element ids, hash routes and API call order as the city's zmscitizenview
// (see shared/site/munich-site.md §4). Everything renders into an open shadow root. Strings live in
// texts.js, helpers (Berlin dates, API client, routes, DOM) in util.js; this module holds the element:
// first the flow (one section per step and for the e-mail links), then one render method per view.

import "./altcha.js";
import {
  DEFAULT_API_BASE,
  DAY_PART_THRESHOLD,
  CALENDAR_MONTHS,
  LAYOUT,
  QUICK_LINKS,
  RENAMED_BUTTONS,
  T,
  ERRORS,
  GENERIC_ERROR,
  CAPTCHA_ERRORS,
  FATAL,
  EMAIL_RE,
  PHONE_RE,
  NAME_MAX,
  CUSTOM_MAX,
} from "./texts.js";
import {
  fmtLongDateOfTs,
  fmtMonth,
  berlinToday,
  hhmm,
  hourOf,
  utcDate,
  dayHeading,
  monthOf,
  addMonths,
  daysOfMonth,
  shiftMonth,
  ApiError,
  classify,
  CitizenApi,
  decodeAppointmentHash,
  parseRoute,
  h,
  button,
  callout,
  htmlToText,
  addressLine,
  setDisabled,
} from "./util.js";

// ---------------------------------------------------------------------------------------------
// The component

function freshState() {
  return {
    view: "loading", // loading | booking | fatal | error | confirmed | already | manage | canceled
    step: 0,
    fatal: null,
    error: null, // [header, text] for the error view
    service: null,
    count: 1,
    preselectedOfficeId: null,
    exclusive: false,
    providers: [],
    selected: new Set(),
    captcha: { required: false, enabled: null, loadError: false, valid: false, token: null },
    cal: freshCalendar(),
    slot: null,
    process: null,
    customer: { firstName: "", lastName: "", email: "", phone: "", remarks: "", remarks2: "" },
    fieldErrors: {},
    stepError: null, // {type, header, text, back}
    busy: false,
    accepted: false,
    done: false,
    rebookFrom: null,
    showInfo: false,
    confirmCancel: false,
  };
}

function freshCalendar() {
  return {
    days: new Map(), // iso -> {providerIDs: [id], offices: Map(id -> [ts]), loaded}
    start: null,
    end: null,
    month: null,
    selectedDay: null,
    loading: false,
    loadingSlots: false,
    fetched: false,
    listView: false,
    // What the last answer said about the horizon (spec §2.4a rule 5) and its free-slot window.
    prevBookable: null,
    nextBookable: null,
    slotsStart: null,
    slotsEnd: null,
    // The hour (number) or day part ("am" | "pm") shown when Früher/Später page the day's times.
    group: null,
    listOpen: null, // the list view's open day
    failed: false, // the last calendar request failed: its error callout stands alone
  };
}

class ZmsAppointmentWrapped extends HTMLElement {
  connectedCallback() {
    if (this.main) return;
    this.layoutVariant = this.getAttribute("data-layout-variant") || "default";
    this.t = this.layoutVariant === LAYOUT.renamedButtons ? { ...T, ...RENAMED_BUTTONS } : T;
    this.root = this.layoutVariant === LAYOUT.noShadowDom ? this : this.attachShadow({ mode: "open" });
    const css = new URL("./style.css", import.meta.url);
    this.root.append(h("link", { rel: "stylesheet", href: css.href }));
    this.main = h("div.zms-appointment", { "data-layout-variant": this.layoutVariant, lang: "de" });
    this.root.append(this.main);
    this.api = new CitizenApi(this.getAttribute("base-url") || DEFAULT_API_BASE);
    // A site release that still has the <= muc45 availability endpoints, or a renamed calendar endpoint.
    this.legacyApi = this.getAttribute("data-calendar-api") === "legacy";
    this.calendarEndpoint = this.getAttribute("data-calendar-endpoint") || "available-calendar";
    this.catalog = null;
    this.widget = null;
    this.captchaDetails = null;
    this.calSeq = 0;
    this.reservationTimer = null;
    this.s = freshState();
    this.onHashChange = () => this.route();
    window.addEventListener("hashchange", this.onHashChange);
    this.route();
  }

  disconnectedCallback() {
    window.removeEventListener("hashchange", this.onHashChange);
    clearTimeout(this.reservationTimer);
  }

  // --- plumbing ---------------------------------------------------------------------------

  /** 429, 503 and other server failures replace the whole component; returns true if it did. */
  handleFatal(err, s = this.s) {
    if (!(err instanceof ApiError)) {
      console.error(err);
      err = new ApiError("unavailable", 0);
    }
    if (err.kind === "api") return false;
    if (s === this.s) {
      s.view = "fatal";
      s.fatal = err.kind;
      clearTimeout(this.reservationTimer);
      this.render();
    }
    return true;
  }

  showError(key, s = this.s) {
    if (s !== this.s) return;
    s.view = "error";
    s.error = ERRORS[key] || GENERIC_ERROR;
    this.render();
  }

  async loadCatalog(query) {
    if (!this.catalog) {
      const data = await this.api.call("offices-and-services", { query });
      this.catalog = {
        offices: Array.isArray(data.offices) ? data.offices : [],
        services: Array.isArray(data.services) ? data.services : [],
        relations: Array.isArray(data.relations) ? data.relations : [],
      };
    }
    return this.catalog;
  }

  office(id) {
    return this.catalog && this.catalog.offices.find((o) => String(o.id) === String(id));
  }

  relation(officeId, serviceId) {
    return this.catalog.relations.find(
      (r) => String(r.officeId) === String(officeId) && String(r.serviceId) === String(serviceId),
    );
  }

  officesOffering(service) {
    const ids = new Set(
      this.catalog.relations.filter((r) => String(r.serviceId) === String(service.id)).map((r) => String(r.officeId)),
    );
    return this.catalog.offices.filter((o) => ids.has(String(o.id)));
  }

  // --- routing ----------------------------------------------------------------------------

  async route() {
    clearTimeout(this.reservationTimer);
    const route = parseRoute(window.location.hash);
    if (route.name === "confirm") return this.showConfirm(route.hash);
    if (route.name === "manage") return this.showManage(route.hash);
    return this.startBooking(route);
  }

  async startBooking(route) {
    const s = (this.s = freshState());
    this.render();
    const query = {};
    if (route.serviceId) query.serviceId = route.serviceId;
    if (route.officeId) query.locationId = route.officeId;
    try {
      await this.loadCatalog(Object.keys(query).length ? query : null);
    } catch (err) {
      if (!this.handleFatal(err, s)) this.showError("generic", s);
      return;
    }
    if (s !== this.s) return;
    if (!route.valid) return this.showError("invalidJumpinLink", s);
    if (route.serviceId) {
      const service = this.catalog.services.find((x) => String(x.id) === String(route.serviceId));
      const office = route.officeId ? this.office(route.officeId) : null;
      if (!service || (route.officeId && (!office || !this.relation(office.id, service.id)))) {
        return this.showError("invalidJumpinLink", s);
      }
      if (!this.officesOffering(service).length) return this.showError("invalidJumpinLink", s);
      s.view = "booking";
      this.selectService(service, route.officeId, route.exclusive);
    } else {
      s.view = "booking";
      this.render();
    }
  }

  // --- step 0: service ----------------------------------------------------------------------

  selectService(service, officeId = null, exclusive = false, captchaToken = null) {
    const s = this.s;
    s.service = service;
    s.count = 1;
    s.preselectedOfficeId = officeId ? String(officeId) : null;
    s.exclusive = exclusive;
    s.stepError = null;
    s.providers = this.providersFor(service, s.preselectedOfficeId, exclusive);
    s.selected = new Set(
      s.preselectedOfficeId ? [s.preselectedOfficeId] : s.providers.map((o) => String(o.id)),
    );
    s.captcha.required = this.officesOffering(service).some((o) => o.scope && o.scope.captchaActivatedRequired);
    if (captchaToken) {
      // Rescheduling: reading the appointment minted a token, so no widget is needed.
      Object.assign(s.captcha, { enabled: true, valid: true, token: captchaToken });
    }
    this.render();
    if (s.captcha.required && !captchaToken) this.ensureCaptcha(s);
  }

  /** Offices shown on the appointment step: the deep-linked one first, then alternatives unless excluded. */
  providersFor(service, officeId, exclusive) {
    const offering = this.officesOffering(service);
    const preselected = officeId ? offering.find((o) => String(o.id) === officeId) : null;
    const seenNames = new Set(preselected ? [preselected.name] : []);
    const alternatives = [];
    // Several ids share one display name (e.g. a Pass calendar); offer the one not disabled for this service.
    const usable = offering.filter((o) => !(o.disabledByServices || []).map(String).includes(String(service.id)));
    for (const o of usable.length ? usable : offering) {
      if (o === preselected || seenNames.has(o.name)) continue;
      seenNames.add(o.name);
      alternatives.push(o);
    }
    let list = preselected ? [preselected] : [];
    const allowAlternatives = !preselected || preselected.showAlternativeLocations !== false;
    if (allowAlternatives && !(preselected && exclusive)) list = list.concat(alternatives);
    return list.sort((a, b) => (b.priority ?? -Infinity) - (a.priority ?? -Infinity));
  }

  async ensureCaptcha(s) {
    if (!this.captchaDetails) {
      try {
        this.captchaDetails = await this.api.call("captcha-details");
      } catch (err) {
        if (this.handleFatal(err, s)) return;
        s.captcha.loadError = true;
        if (s === this.s) this.render();
        return;
      }
    }
    if (s !== this.s) return;
    s.captcha.enabled = this.captchaDetails.captchaEnabled !== false;
    if (s.captcha.enabled) {
      const widget = this.captchaWidget();
      s.captcha.valid = widget.state === "verified";
      s.captcha.token = widget.token;
    } else {
      s.captcha.valid = true; // globally off: the city's UI shows no widget and lets the user go on
    }
    this.render();
  }

  captchaWidget() {
    if (this.widget) return this.widget;
    const base = this.api.base;
    const widget = document.createElement("altcha-widget");
    widget.className = "altcha-captcha";
    widget.setAttribute("challenge", `${base}/captcha-challenge/`);
    widget.setAttribute(
      "configuration",
      JSON.stringify({ hideFooter: true, hideLogo: true, verifyUrl: `${base}/captcha-verify/` }),
    );
    widget.setAttribute("language", "de");
    widget.setAttribute("aria-label", "Sicherheitsüberprüfung - Ich bin kein Bot");
    widget.addEventListener("statechange", (ev) => {
      const { state, httpStatus, body } = ev.detail;
      if (httpStatus !== undefined && httpStatus !== null) {
        const err = classify(httpStatus, body);
        if (err.kind !== "api" && this.handleFatal(err)) return;
      }
      if (state === "verifying" || state === "error") {
        this.s.captcha.valid = false;
        this.s.captcha.token = null;
        this.updateStep0Next();
      }
    });
    widget.addEventListener("serververification", (ev) => {
      const result = ev.detail || {};
      const ok = result.meta && result.meta.success === true && result.data && result.data.valid === true;
      this.s.captcha.valid = Boolean(ok && result.token);
      this.s.captcha.token = ok ? result.token : null;
      this.updateStep0Next();
    });
    this.widget = widget;
    return widget;
  }

  resetCaptcha() {
    this.s.captcha.valid = false;
    this.s.captcha.token = null;
    if (this.widget) this.widget.reset();
  }

  step0Ready() {
    const c = this.s.captcha;
    return Boolean(this.s.service) && (!c.required || c.valid);
  }

  updateStep0Next() {
    if (this.s.view !== "booking" || this.s.step !== 0 || !this.step0Next) return;
    setDisabled(this.step0Next, !this.step0Ready());
  }

  durationMinutes() {
    const s = this.s;
    const office = (s.preselectedOfficeId && this.office(s.preselectedOfficeId)) || s.providers[0];
    if (!office || !office.slotTimeInMinutes) return null;
    const rel = this.relation(office.id, s.service.id);
    return s.count * ((rel && rel.slots) || 1) * office.slotTimeInMinutes;
  }

  // --- step 1: appointment --------------------------------------------------------------------

  goToStep1() {
    const s = this.s;
    s.step = 1;
    s.stepError = null;
    s.slot = null;
    s.cal = freshCalendar();
    s.showInfo = false;
    this.render();
    this.loadCalendar();
  }

  calendarQuery(day) {
    const s = this.s;
    const query = {
      startDate: s.cal.start,
      endDate: s.cal.end,
      officeIds: s.providers.map((o) => String(o.id)).filter((id) => s.selected.has(id)).join(","),
      serviceIds: String(s.service.id),
      serviceCounts: String(s.count),
      slotsStartDate: day,
      slotsEndDate: day,
    };
    if (s.captcha.token) query.captchaToken = s.captcha.token;
    return query;
  }

  mergeCalendar(data, requestedDay) {
    const cal = this.s.cal;
    const days = data.availableDays;
    // The city's page refuses an answer it does not understand (AppointmentSelection.vue
    // applyCalendarResponse): an error callout, not "no appointments".
    if (!Array.isArray(days) || !days.every((d) => d && typeof d === "object" && "date" in d && "providerIDs" in d)) {
      throw new ApiError("api", 200, "invalidCalendarAnswer", data);
    }
    cal.prevBookable = data.prevBookableDate || null;
    cal.nextBookable = data.nextBookableDate || null;
    cal.slotsStart = data.slotsStartDate || requestedDay;
    cal.slotsEnd = data.slotsEndDate || requestedDay;
    const months = new Set([monthOf(requestedDay), ...days.map((d) => monthOf(String(d.date)))]);
    for (const iso of [...cal.days.keys()]) if (months.has(monthOf(iso))) cal.days.delete(iso);
    for (const d of days) {
      const offices = new Map(
        (d.offices || []).map((o) => [String(o.officeId), (o.appointments || []).map(Number).sort((a, b) => a - b)]),
      );
      cal.days.set(String(d.date), {
        providerIDs: String(d.providerIDs || "").split(",").filter(Boolean),
        offices,
        loaded: offices.size > 0,
      });
    }
  }

  bookable(iso) {
    const entry = this.s.cal.days.get(iso);
    return Boolean(entry && entry.providerIDs.some((id) => this.s.selected.has(id)));
  }

  bookableDays() {
    return [...this.s.cal.days.keys()].filter((iso) => this.bookable(iso)).sort();
  }

  /** The backend loads slots for one day only; follow it when it picked another day than asked. */
  adoptLoadedDay() {
    const cal = this.s.cal;
    const entry = cal.days.get(cal.selectedDay);
    if (entry && entry.loaded && this.bookable(cal.selectedDay)) return;
    const loaded = this.bookableDays().find((iso) => cal.days.get(iso).loaded);
    if (loaded) cal.selectedDay = loaded;
    else if (!this.bookable(cal.selectedDay)) cal.selectedDay = this.bookableDays()[0] || null;
    if (cal.selectedDay) cal.month = monthOf(cal.selectedDay);
  }

  /** The availability endpoints: the current single one (maybe renamed), or the legacy pair (<= muc45). */
  async fetchCalendar(day) {
    const data = await this.api.call(this.calendarEndpoint, { query: this.calendarQuery(day) });
    this.mergeCalendar(data, day);
  }

  legacyQuery() {
    const q = this.calendarQuery(null);
    const query = { officeId: q.officeIds, serviceId: q.serviceIds, serviceCount: q.serviceCounts };
    if (q.captchaToken) query.captchaToken = q.captchaToken;
    return query;
  }

  async fetchLegacyDays() {
    const cal = this.s.cal;
    let days = [];
    try {
      const query = { startDate: cal.start, endDate: cal.end, ...this.legacyQuery() };
      const data = await this.api.call("available-days-by-office", { query });
      days = Array.isArray(data.availableDays) ? data.availableDays : [];
    } catch (err) {
      if (!(err instanceof ApiError && err.code === "noAppointmentForThisDay")) throw err;
    }
    cal.days.clear();
    for (const d of days) {
      const providerIDs = String(d.providerIDs || "").split(",").filter(Boolean);
      cal.days.set(String(d.time), { providerIDs, offices: new Map(), loaded: false });
    }
  }

  async fetchLegacySlots(day) {
    let offices = [];
    try {
      const data = await this.api.call("available-appointments-by-office", { query: { date: day, ...this.legacyQuery() } });
      offices = Array.isArray(data.offices) ? data.offices : [];
    } catch (err) {
      if (!(err instanceof ApiError && err.code === "appointmentNotAvailable")) throw err;
    }
    const entry = this.s.cal.days.get(day);
    if (!entry) return;
    entry.offices = new Map(offices.map((o) => [String(o.officeId), (o.appointments || []).map(Number).sort((a, b) => a - b)]));
    entry.loaded = true;
  }

  async loadCalendar() {
    const s = this.s;
    const cal = s.cal;
    const seq = ++this.calSeq;
    const stale = () => s !== this.s || seq !== this.calSeq;
    if (!s.selected.size) {
      cal.days.clear();
      cal.fetched = true;
      this.render();
      return;
    }
    const today = berlinToday();
    cal.start = today;
    cal.end = addMonths(today, CALENDAR_MONTHS);
    cal.loading = true;
    cal.failed = false;
    this.render();
    try {
      if (this.legacyApi) await this.fetchLegacyDays();
      else await this.fetchCalendar(today);
      if (stale()) return;
      const first = this.bookableDays()[0];
      if (first) {
        if (!cal.selectedDay || !this.bookable(cal.selectedDay)) cal.selectedDay = first;
        cal.month = monthOf(cal.selectedDay);
        const day = cal.selectedDay;
        if (this.legacyApi) await this.fetchLegacySlots(day);
        else await this.fetchCalendar(day);
        if (stale()) return;
        this.adoptLoadedDay();
      } else {
        cal.selectedDay = null;
        cal.month = monthOf(today);
      }
    } catch (err) {
      if (stale()) return;
      cal.loading = false;
      cal.fetched = true;
      this.calendarFailed(err, s);
      return;
    }
    cal.loading = false;
    cal.fetched = true;
    this.render();
  }

  /** Slots of one day; with keepSelection (month navigation) only the calendar month is refreshed. */
  async loadDay(iso, { keepSelection = false } = {}) {
    const s = this.s;
    const cal = s.cal;
    const seq = ++this.calSeq;
    if (this.legacyApi && keepSelection) {
      this.render(); // the legacy day list already covers the whole range
      return;
    }
    cal.loadingSlots = !keepSelection;
    cal.failed = false;
    this.render();
    try {
      if (this.legacyApi) await this.fetchLegacySlots(iso);
      else await this.fetchCalendar(iso);
      if (s !== this.s || seq !== this.calSeq) return;
      if (!keepSelection) this.adoptLoadedDay();
      cal.group = null;
    } catch (err) {
      if (s !== this.s || seq !== this.calSeq) return;
      cal.loadingSlots = false;
      this.calendarFailed(err, s);
      return;
    }
    cal.loadingSlots = false;
    this.render();
  }

  /** A day tile (or, with jump, a month chevron that jumps to the next/previous bookable date). */
  selectDay(iso, { jump = false } = {}) {
    const cal = this.s.cal;
    if (!jump && (!this.bookable(iso) || iso === cal.selectedDay)) return;
    cal.selectedDay = iso;
    cal.month = monthOf(iso);
    cal.group = null;
    this.s.slot = null;
    this.s.stepError = null;
    this.loadDay(iso);
  }

  /** The month chevrons (CalendarView.vue onCalendarClick): with a bookable date beyond the painted
   * month, jump there (one calendar request, that day selected); without one, the calendar only
   * turns its page (no request). */
  changeMonth(delta) {
    const cal = this.s.cal;
    if (cal.loadingSlots) return;
    const target = delta > 0 ? cal.nextBookable : cal.prevBookable;
    if (target && !this.legacyApi) {
      this.selectDay(target, { jump: true });
      return;
    }
    cal.month = shiftMonth(cal.month, delta);
    this.render();
  }

  /** min/max months of the chevrons (AppointmentSelection.vue updateCalendarNavigationBounds). */
  navigationBounds() {
    const cal = this.s.cal;
    const keys = [cal.slotsStart, cal.slotsEnd, ...this.bookableDays()].filter(Boolean).sort();
    let min = cal.prevBookable || keys[0] || cal.start;
    let max = cal.nextBookable || keys[keys.length - 1] || cal.end;
    if (min < cal.start) min = cal.start;
    if (max > cal.end) max = cal.end;
    if (min > max) max = min;
    return [monthOf(min), monthOf(max)];
  }

  toggleProvider(id, checked) {
    const s = this.s;
    if (checked) s.selected.add(id);
    else s.selected.delete(id);
    s.slot = null;
    s.stepError = null;
    this.loadCalendar();
  }

  /** An API error on the booking steps: captcha trouble means the session is gone. */
  /** AppointmentSelection.vue: a calendar error answer hides the calendar and the no-slots callout
   * alike, only the error callout stays (the site's "nothing free" answers show the no-slots one). */
  calendarFailed(err, s = this.s) {
    s.cal.failed = !(err instanceof ApiError && ["noAppointmentForThisScope", "noAppointmentForThisDay"].includes(err.code));
    this.stepFailed(err, s);
  }

  stepFailed(err, s = this.s) {
    if (this.handleFatal(err, s) || s !== this.s) return;
    if (CAPTCHA_ERRORS.has(err.code)) {
      const [header, text] = ERRORS.captchaSession;
      s.stepError = { type: "error", header, text, back: true };
      this.resetCaptcha();
    } else if (err.code === "noAppointmentForThisScope" || err.code === "noAppointmentForThisDay") {
      s.cal.days.clear();
      s.stepError = null;
    } else {
      const [header, text] = ERRORS[err.code] || GENERIC_ERROR;
      s.stepError = { type: "error", header, text };
    }
    this.render();
  }

  async reserve() {
    const s = this.s;
    if (!s.slot || s.busy) return;
    s.busy = true;
    s.stepError = null;
    this.render();
    const body = {
      timestamp: s.slot.ts,
      officeId: Number(s.slot.officeId),
      serviceId: [Number(s.service.id)],
      serviceCount: [s.count],
    };
    if (s.captcha.token) body.captchaToken = s.captcha.token;
    let process;
    try {
      process = await this.api.call("reserve-appointment", { method: "POST", body });
    } catch (err) {
      s.busy = false;
      if (this.handleFatal(err, s) || s !== this.s) return;
      if (err.code === "appointmentNotAvailable") {
        const [header, text] = ERRORS.appointmentNotAvailable;
        s.slot = null;
        s.stepError = { type: "error", header, text };
        this.loadDay(s.cal.selectedDay);
        return;
      }
      this.stepFailed(err, s);
      return;
    }
    if (s !== this.s) return;
    s.busy = false;
    s.process = process;
    s.step = 2;
    s.fieldErrors = {};
    this.armReservationTimer(process);
    this.render();
  }

  armReservationTimer(process) {
    clearTimeout(this.reservationTimer);
    const minutes = (process.scope && process.scope.reservationDuration) || 15;
    const s = this.s;
    this.reservationTimer = setTimeout(() => {
      if (s !== this.s || s.done || s.view !== "booking" || s.step < 2) return;
      const [header, text] = ERRORS.sessionTimeout;
      s.process = null;
      this.goToStep1();
      s.stepError = { type: "warning", header, text };
      this.render();
    }, minutes * 60 * 1000);
  }

  // --- step 2: contact ------------------------------------------------------------------------

  scope() {
    const s = this.s;
    return (s.process && s.process.scope) || (s.slot && (this.office(s.slot.officeId) || {}).scope) || {};
  }

  validateCustomer() {
    const c = this.s.customer;
    const scope = this.scope();
    const errors = {};
    const name = (value, missing) => {
      if (!value.trim()) return missing;
      if (value.length > NAME_MAX) return this.t.errMaxLength(NAME_MAX);
      return null;
    };
    errors.firstName = name(c.firstName, this.t.errFirstName);
    errors.lastName = name(c.lastName, this.t.errLastName);
    if (!c.email.trim()) errors.email = scope.emailRequired === false ? null : this.t.errMailRequired;
    else if (!EMAIL_RE.test(c.email.trim())) errors.email = this.t.errMailFormat;
    if (scope.telephoneActivated) {
      if (!c.phone.trim()) errors.phone = scope.telephoneRequired ? this.t.errPhoneRequired : null;
      else if (!PHONE_RE.test(c.phone.trim())) errors.phone = this.t.errPhoneFormat;
    }
    const custom = (activated, required, value) => {
      if (!activated) return null;
      if (required && !value.trim()) return this.t.errCustom;
      if (value.length > CUSTOM_MAX) return this.t.errMaxLength(CUSTOM_MAX);
      return null;
    };
    errors.remarks = custom(scope.customTextfieldActivated, scope.customTextfieldRequired, c.remarks);
    errors.remarks2 = custom(scope.customTextfield2Activated, scope.customTextfield2Required, c.remarks2);
    for (const key of Object.keys(errors)) if (!errors[key]) delete errors[key];
    return errors;
  }

  async updateCustomer() {
    const s = this.s;
    if (s.busy) return;
    s.fieldErrors = this.validateCustomer();
    s.stepError = null;
    if (Object.keys(s.fieldErrors).length) {
      this.render();
      const first = this.main.querySelector("[aria-invalid=true]");
      if (first) first.focus();
      return;
    }
    const c = s.customer;
    const scope = this.scope();
    const orNull = (value, shown) => (shown && value.trim() ? value.trim() : null);
    const body = {
      processId: s.process.processId,
      authKey: s.process.authKey,
      scope: s.process.scope,
      familyName: `${c.firstName.trim()} ${c.lastName.trim()}`,
      email: c.email.trim(),
      telephone: orNull(c.phone, scope.telephoneActivated),
      customTextfield: orNull(c.remarks, scope.customTextfieldActivated),
      customTextfield2: orNull(c.remarks2, scope.customTextfield2Activated),
    };
    s.busy = true;
    this.render();
    try {
      const process = await this.api.call("update-appointment", { method: "POST", body });
      if (s !== this.s) return;
      s.process = { ...s.process, ...process };
      s.step = 3;
      s.accepted = false;
    } catch (err) {
      if (this.handleFatal(err, s) || s !== this.s) return;
      const field = {
        invalidEmail: ["email", this.t.errMailFormat],
        emailIsRequired: ["email", this.t.errMailRequired],
        invalidTelephone: ["phone", this.t.errPhoneFormat],
        telephoneIsRequired: ["phone", this.t.errPhoneRequired],
        invalidCustomTextfield: ["remarks", this.t.errCustom],
        invalidCustomTextfield2: ["remarks2", this.t.errCustom],
        invalidFamilyName: ["lastName", this.t.errLastName],
      }[err.code];
      if (field) s.fieldErrors[field[0]] = field[1];
      const [header, text] = ERRORS[err.code] || GENERIC_ERROR;
      s.stepError = { type: "error", header, text };
    }
    s.busy = false;
    this.render();
  }

  // --- step 3: overview -----------------------------------------------------------------------

  async preconfirm() {
    const s = this.s;
    if (s.busy || !s.accepted) return;
    s.busy = true;
    s.stepError = null;
    this.render();
    try {
      const body = { processId: s.process.processId, authKey: s.process.authKey, scope: s.process.scope };
      const process = await this.api.call("preconfirm-appointment", { method: "POST", body });
      if (s !== this.s) return;
      s.process = { ...s.process, ...process };
      s.done = true;
      clearTimeout(this.reservationTimer);
    } catch (err) {
      s.busy = false;
      if (this.handleFatal(err, s) || s !== this.s) return;
      const [header, text] = ERRORS[err.code] || GENERIC_ERROR;
      s.stepError = { type: "error", header, text };
      this.render();
      return;
    }
    s.busy = false;
    this.render();
    if (s.rebookFrom) {
      // Rescheduling: the old appointment goes once the new one is reserved and preconfirmed.
      const old = s.rebookFrom;
      s.rebookFrom = null;
      try {
        await this.api.call("cancel-appointment", { method: "POST", body: old });
      } catch (err) {
        this.handleFatal(err, s);
      }
    }
  }

  // --- e-mail links ---------------------------------------------------------------------------

  async showConfirm(raw) {
    const s = (this.s = freshState());
    this.render();
    const ref = decodeAppointmentHash(raw);
    if (!ref) return this.showError("invalidJumpinLink", s);
    const body = { processId: ref.processId, authKey: ref.authKey };
    try {
      s.process = await this.api.call("confirm-appointment", { method: "POST", body });
      s.view = "confirmed";
    } catch (err) {
      if (this.handleFatal(err, s)) return;
      if (err.code !== "processNotPreconfirmedAnymore") return this.showError(err.code, s);
      try {
        s.process = await this.api.call("appointment", { query: body });
        s.view = "already";
      } catch (err2) {
        if (this.handleFatal(err2, s)) return;
        return this.showError("preconfirmationExpired", s);
      }
    }
    if (s === this.s) this.render();
  }

  async showManage(raw) {
    const s = (this.s = freshState());
    this.render();
    const ref = decodeAppointmentHash(raw);
    if (!ref) return this.showError("invalidJumpinLink", s);
    try {
      s.process = await this.api.call("appointment", {
        query: { processId: ref.processId, authKey: ref.authKey },
      });
    } catch (err) {
      if (this.handleFatal(err, s)) return;
      return this.showError(err.code, s);
    }
    if (s !== this.s) return;
    s.process.authKey = s.process.authKey || ref.authKey;
    s.view = "manage";
    s.confirmCancel = ref.action === "cancel";
    this.render();
    if (ref.action === "reschedule") this.reschedule();
  }

  async cancelAppointment() {
    const s = this.s;
    if (s.busy) return;
    s.busy = true;
    this.render();
    try {
      const body = { processId: s.process.processId, authKey: s.process.authKey };
      await this.api.call("cancel-appointment", { method: "POST", body });
      s.view = "canceled";
    } catch (err) {
      s.busy = false;
      if (this.handleFatal(err, s)) return;
      const [header, text] = ERRORS[err.code] || GENERIC_ERROR;
      s.stepError = { type: "error", header, text };
    }
    s.busy = false;
    s.confirmCancel = false;
    if (s === this.s) this.render();
  }

  /** Reschedule: book a new slot for the same service and office (the appointment read minted a captcha token). */
  async reschedule() {
    const old = this.s;
    try {
      await this.loadCatalog(null);
    } catch (err) {
      if (!this.handleFatal(err, old)) this.showError("generic", old);
      return;
    }
    if (old !== this.s) return;
    const service = this.catalog.services.find((x) => String(x.id) === String(old.process.serviceId));
    if (!service || !this.office(old.process.officeId)) return this.showError("invalidJumpinLink", old);
    const s = (this.s = freshState());
    s.view = "booking";
    this.selectService(service, String(old.process.officeId), false, old.process.captchaToken || null);
    s.count = Number(old.process.serviceCount) || 1;
    s.captcha.valid = true;
    s.rebookFrom = { processId: old.process.processId, authKey: old.process.authKey };
    this.goToStep1();
  }

  bookAnother() {
    history.replaceState(null, "", `${window.location.pathname}${window.location.search}#/`);
    this.route();
  }

  downloadIcs() {
    const ics = this.s.process && this.s.process.icsContent;
    if (!ics) return;
    const url = URL.createObjectURL(new Blob([ics], { type: "text/calendar" }));
    const link = h("a", { href: url, download: "Termin.ics" });
    this.main.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  // --- rendering ------------------------------------------------------------------------------

  render() {
    const s = this.s;
    const views = {
      loading: () => [h("div.m-spinner", { role: "status", text: this.t.loading })],
      fatal: () => this.renderFatal(),
      error: () => [callout("error", s.error[0], s.error[1])],
      booking: () => [this.renderStepper(), ...this.renderStep()],
      confirmed: () => this.renderConfirmed(),
      already: () => this.renderAlreadyActivated(),
      manage: () => this.renderManage(),
      canceled: () => [
        callout("success", this.t.canceledHeader, this.t.canceledText),
        h("div.m-button-group", {}, button(this.t.bookAnother, { onClick: () => this.bookAnother() })),
      ],
    };
    const active = this.root === this ? document.activeElement : this.root.activeElement;
    const focused = active && this.main.contains(active) && active.id;
    this.main.replaceChildren(...views[s.view]().filter(Boolean));
    if (focused) {
      const again = this.main.querySelector(`#${CSS.escape(focused)}`);
      if (again && again.tagName !== "ALTCHA-WIDGET") again.focus();
    }
  }

  renderFatal() {
    const [header, text] = FATAL[this.s.fatal] || FATAL.unavailable;
    const type = { rateLimit: "warning", maintenance: "info" }[this.s.fatal] || "error";
    return [h(`div.zms-fatal.zms-fatal--${this.s.fatal}`, {}, callout(type, header, text))];
  }

  renderStepper() {
    return h(
      "ol.m-progress-indicator",
      { "aria-label": "Fortschritt" },
      this.t.steps.map((label, i) =>
        h(
          "li.m-progress-indicator__step",
          {
            class: i === this.s.step ? "is-active" : i < this.s.step ? "is-done" : "",
            "aria-current": i === this.s.step ? "step" : null,
          },
          h("span.m-progress-indicator__number", { text: String(i + 1) }),
          h("span.m-progress-indicator__label", { text: label }),
        ),
      ),
    );
  }

  renderStep() {
    return [this.renderService, this.renderAppointment, this.renderContact, this.renderOverview][this.s.step].call(this);
  }

  stepErrorCallout() {
    const e = this.s.stepError;
    if (!e) return null;
    return callout(e.type, e.header, e.text);
  }

  renderService() {
    const s = this.s;
    if (!s.service) return [this.renderServiceSearch(), this.renderQuickLinks()];
    const service = s.service;
    const max = Math.max(1, Number(service.maxQuantity) || 1);
    const setCount = (n) => {
      s.count = Math.min(max, Math.max(1, n));
      this.render();
    };
    const duration = this.durationMinutes();
    // muc-patternlab-vue MucCounter: the id lands on its root grid; the count is text in a <strong>
    const counter = h(
      `div.grid.muc-counter#service-${service.id}`,
      {},
      h(
        "div.grid-item",
        {},
        h(
          "div.content-centered",
          {},
          button(null, {
            iconName: "minus",
            variant: "secondary",
            disabled: s.count <= 1,
            onClick: () => setCount(s.count - 1),
            attrs: { "aria-label": `Anzahl ${service.name} reduzieren auf ${s.count - 1}` },
          }),
        ),
        h(
          "p",
          {},
          h(
            "strong.content-centered",
            { "aria-live": "polite" },
            h("span.visually-hidden", { text: `Aktuell ausgewählte Anzahl für ${service.name} ist ` }),
            String(s.count),
          ),
        ),
        h(
          "div.content-centered",
          {},
          button(null, {
            iconName: "plus",
            variant: "secondary",
            disabled: s.count >= max,
            onClick: () => setCount(s.count + 1),
            attrs: { "aria-label": `Anzahl ${service.name} erhöhen auf ${s.count + 1}` },
          }),
        ),
      ),
      h("div.grid-item.content-centered-justify-left", {}, h("p", {}, h("label", { text: service.name }))),
    );
    const next = button(this.t.next, { disabled: !this.step0Ready(), onClick: () => this.goToStep1() });
    this.step0Next = next;
    return [
      h(
        "section.m-component.service-selection",
        {},
        h("h2", { text: this.t.service }),
        h("h3.service-name", { text: service.name }),
        counter,
        duration ? h("p.estimated-duration", { text: `${this.t.estimatedDuration} ${duration} ${this.t.minutes}` }) : null,
        this.renderCaptcha(),
      ),
      this.stepErrorCallout(),
      h(
        "div.m-button-group",
        {},
        button(this.t.changeService, {
          variant: "secondary",
          onClick: () => {
            history.replaceState(null, "", `${window.location.pathname}${window.location.search}#/`);
            s.service = null;
            s.preselectedOfficeId = null;
            s.stepError = null;
            this.render();
          },
        }),
        next,
      ),
    ];
  }

  renderCaptcha() {
    const c = this.s.captcha;
    if (!c.required) return null;
    if (c.loadError) return h("p.altcha-load-error", { text: this.t.captchaLoadError });
    if (c.enabled === null) return h("p.m-hint", { text: this.t.loading });
    if (!c.enabled) return null;
    return h("div.captcha", {}, this.captchaWidget());
  }

  renderServiceSearch() {
    const services = [...this.catalog.services].sort((a, b) => a.name.localeCompare(b.name, "de"));
    const list = h("ul.service-search__options#service-search-listbox", { role: "listbox", hidden: true });
    const input = h("input.m-input#select-service-search", {
      type: "search",
      role: "combobox",
      autocomplete: "off",
      placeholder: this.t.servicePlaceholder,
      "aria-controls": "service-search-listbox",
      "aria-expanded": "false",
      "aria-autocomplete": "list",
    });
    const fill = () => {
      const q = input.value.trim().toLocaleLowerCase("de");
      const hits = services.filter((x) => x.name.toLocaleLowerCase("de").includes(q));
      list.replaceChildren(
        ...(hits.length
          ? hits.map((x) =>
              h(
                "li.service-search__option",
                {
                  role: "option",
                  "data-service-id": x.id,
                  tabindex: -1,
                  on: { click: () => this.pickService(x), keydown: (ev) => ev.key === "Enter" && this.pickService(x) },
                },
                x.name,
              ),
            )
          : [h("li.service-search__empty", { role: "option", "aria-disabled": "true", text: this.t.noServiceFound })]),
      );
      list.hidden = false;
      input.setAttribute("aria-expanded", "true");
    };
    input.addEventListener("input", fill);
    input.addEventListener("focus", fill);
    input.addEventListener("keydown", (ev) => {
      if (ev.key === "ArrowDown") list.querySelector("[data-service-id]")?.focus();
      if (ev.key === "Escape") list.hidden = true;
    });
    return h(
      "section.m-component.service-search",
      {},
      h("label.m-label", { for: "select-service-search", text: this.t.serviceSearch }),
      input,
      list,
    );
  }

  pickService(service) {
    history.replaceState(null, "", `${window.location.pathname}${window.location.search}#/services/${service.id}`);
    this.selectService(service);
  }

  renderQuickLinks() {
    const known = new Set(this.catalog.services.map((x) => String(x.id)));
    const links = QUICK_LINKS.filter(([, id]) => known.has(String(id)));
    if (!links.length) return null;
    return h(
      "div.m-linklist-inline",
      {},
      h("p.m-linklist-inline__title", { text: this.t.oftenSearched }),
      h(
        "ul.m-linklist-inline__list",
        {},
        links.map(([label, id]) =>
          h("li.m-linklist-inline__list-item", {}, h("a.m-link", { href: `#/services/${id}`, "data-service-id": id, text: label })),
        ),
      ),
    );
  }

  renderAppointment() {
    const s = this.s;
    const cal = s.cal;
    const out = [];
    if (s.providers.length > 1) {
      out.push(
        h(
          "fieldset.m-component.m-checkbox-group.provider-selection",
          {},
          h("legend.m-checkbox-group__heading", {}, h("h2", { text: this.t.location })),
          s.providers.map((o) => {
            const id = String(o.id);
            // MucCheckbox.vue with id "provider-<id>": input#checkbox-provider-<id>, its label holding
            // the office name and a hint span#checkbox-hint-provider-<id> (street and number).
            return h(
              "div.m-checkboxes__item",
              {},
              h(`input.m-checkboxes__input#checkbox-provider-${id}`, {
                name: "checkbox",
                type: "checkbox",
                checked: s.selected.has(id),
                on: { change: (ev) => this.toggleProvider(id, ev.target.checked) },
              }),
              h(
                "label.m-label.m-checkboxes__label",
                { for: `checkbox-provider-${id}` },
                o.name,
                h(`span.m-hint#checkbox-hint-provider-${id}`, { text: addressLine(o) }),
              ),
            );
          }),
          s.selected.size ? null : h("p.m-error-message", { role: "alert", text: this.t.providerSelectionError }),
        ),
      );
    } else if (s.providers.length === 1) {
      const o = s.providers[0];
      out.push(
        h(
          "div.m-component.m-teaser-contact",
          {},
          h(`h3#provider-${o.id}`, { text: o.name }),
          h("p.m-teaser-contact__address", {
            text: [addressLine(o), [o.address?.postal_code, o.address?.city].filter(Boolean).join(" ")]
              .filter(Boolean)
              .join(", "),
          }),
        ),
      );
    }

    const noSlots = cal.fetched && !cal.loading && !cal.failed && s.selected.size > 0 && !this.bookableDays().length;
    const section = h("section.m-component.appointment-selection", {});
    if (noSlots && !(s.stepError && s.stepError.back)) {
      section.append(h("h2", { text: this.t.dateAndTime }), this.renderNoSlots());
    } else if (s.selected.size > 0 && !cal.failed && !(s.stepError && s.stepError.back)) {
      // CalendarListToggle.vue: the heading, then one switch button labelled with the current view
      // and what a press does; both options are aria-hidden spans.
      const list = cal.listView;
      section.append(
        h(
          "div.calendar-list-toggle-container",
          {},
          h("h2#viewToggleLabel", { text: this.t.dateAndTime }),
          h(
            "button.m-toggle-switch",
            {
              type: "button",
              class: list ? "m-toggle-switch--pressed" : "",
              "aria-label": list
                ? `${this.t.listViewActive} ${this.t.switchToCalendarView}`
                : `${this.t.calendarViewActive} ${this.t.switchToListView}`,
              on: {
                click: () => {
                  cal.listView = !cal.listView;
                  cal.listOpen = null;
                  if (!cal.listView && cal.selectedDay) cal.month = monthOf(cal.selectedDay);
                  this.render();
                },
              },
            },
            h("span.m-toggle-switch__label", { class: list ? "disabled" : "", "aria-hidden": "true", text: this.t.calendarView }),
            h("span.m-toggle-switch__indicator", { "aria-hidden": "true" }, h("span")),
            h("span.m-toggle-switch__label", { class: list ? "" : "disabled", "aria-hidden": "true", text: this.t.listView }),
          ),
        ),
      );
      if (cal.loading || !cal.fetched) {
        section.append(h("div.m-spinner", { role: "status", text: this.t.loadingTimes }));
      } else {
        section.append(...(cal.listView ? [this.renderDayList()] : [this.renderCalendar(), this.renderTimes()]));
      }
    }
    out.push(section);
    if (s.slot) out.push(this.renderSelectedSlot());
    out.push(this.stepErrorCallout());
    const buttons = [];
    if (!s.rebookFrom || (s.stepError && s.stepError.back)) {
      buttons.push(
        button(this.t.back, {
          variant: "secondary",
          onClick: () => {
            s.step = 0;
            s.stepError = null;
            this.calSeq++;
            this.render();
          },
        }),
      );
    }
    buttons.push(button(this.t.next, { disabled: !s.slot || s.busy, onClick: () => this.reserve() }));
    out.push(h("div.m-button-group", {}, buttons));
    return out;
  }

  renderNoSlots() {
    const s = this.s;
    const infos = s.providers
      .filter((o) => s.selected.has(String(o.id)) && o.scope && o.scope.infoForAllAppointments)
      .map((o) => [o.name, htmlToText(o.scope.infoForAllAppointments)]);
    const extra = [];
    if (infos.length) {
      extra.push(
        button(this.t.newAppointmentsInfo, {
          variant: "ghost",
          attrs: { "aria-expanded": s.showInfo ? "true" : "false" },
          onClick: () => {
            s.showInfo = !s.showInfo;
            this.render();
          },
        }),
      );
      if (s.showInfo) {
        extra.push(
          h(
            "div.availability-info",
            { role: "dialog", "aria-label": this.t.newAppointmentsInfo },
            infos.map(([name, text]) => h("div", {}, infos.length > 1 ? h("h4", { text: name }) : null, h("p", { text }))),
          ),
        );
      }
    }
    const [header, text] = ERRORS.noAppointmentForThisScope;
    return callout("info", header, text, ...extra);
  }

  renderCalendar() {
    const cal = this.s.cal;
    const month = cal.month || monthOf(cal.start);
    const first = utcDate(`${month}-01`);
    const spacers = (first.getUTCDay() + 6) % 7; // Monday first; days of other months are not shown
    const noTiles = this.layoutVariant === LAYOUT.renamedDayTiles;
    const cells = [];
    for (let i = 0; i < spacers; i++) cells.push(h("div", {}));
    for (const iso of daysOfMonth(month)) {
      const bookable = this.bookable(iso);
      const selected = iso === cal.selectedDay;
      const day = String(Number(iso.slice(8)));
      // MucDayTile.vue: role=button, aria-label "<day of month> auswählen", aria-disabled, the number.
      cells.push(
        h(
          noTiles ? "div.muc-calendar-day" : "div.muc-calendar-item",
          {
            role: noTiles ? null : "button",
            tabindex: bookable ? "0" : "-1",
            class: [bookable ? "" : "disabled-tile", selected ? "selected" : ""].filter(Boolean).join(" "),
            "aria-label": noTiles ? null : `${day} auswählen`,
            "aria-disabled": bookable ? "false" : "true",
            on: {
              click: () => this.selectDay(iso),
              keyup: (ev) => ev.key === "Enter" && this.selectDay(iso),
            },
          },
          day,
        ),
      );
    }
    const [minMonth, maxMonth] = this.navigationBounds();
    const chevron = (delta) =>
      button(null, {
        variant: "ghost",
        disabled: delta < 0 ? month <= minMonth : month >= maxMonth,
        onClick: () => this.changeMonth(delta),
        attrs: { "aria-label": delta < 0 ? this.t.prevMonth : this.t.nextMonth },
        iconName: delta < 0 ? "chevron-left" : "chevron-right",
        iconLeft: delta > 0,
      });
    // MucCalendar.vue with disable-view-change: caption (chevrons around an h3 "<Monat> <Jahr>"),
    // then MucCalendarDay.vue: a header row of weekdays and a grid of spacers and day tiles.
    return h(
      "div.m-component.calendar-root",
      {},
      h(
        "div.muc-calendar-wrap",
        {},
        h(
          "div",
          {},
          h(
            "div.container-wrapper",
            {},
            h("div.calendar-caption", {}, chevron(-1), h("div.header", {}, h("h3", { text: fmtMonth.format(first) })), chevron(1)),
            h(
              "div.container-view-size",
              {},
              h(
                "div.muc-calendar-view-full-size",
                {},
                h(
                  "div.muc-calendar-container.table-header",
                  {},
                  ["Mo", "Di", "Mi", "Do", "Fr", "Sa", "So"].map((d) => h("div.header-item", {}, h("strong", { text: d }))),
                ),
                h("div.muc-calendar-container", {}, cells),
              ),
            ),
          ),
        ),
      ),
    );
  }

  /** ListView.vue: an accordion of the first five bookable days, labelled like the day heading. */
  renderDayList() {
    const s = this.s;
    const cal = s.cal;
    const days = this.bookableDays().slice(0, 5);
    if (!cal.listOpen && days.length) cal.listOpen = cal.selectedDay && days.includes(cal.selectedDay) ? cal.selectedDay : days[0];
    const sections = days.map((iso, index) => {
      const open = iso === cal.listOpen;
      return h(
        "div",
        {},
        h(
          `h4.m-accordion__section-header#listHeading-${index}`,
          {},
          h(
            "button.m-accordion__section-button",
            {
              type: "button",
              "aria-expanded": open ? "true" : "false",
              "aria-controls": `#listContent-${index}`,
              on: {
                click: () => {
                  cal.listOpen = open ? null : iso;
                  if (!open && iso !== cal.selectedDay) this.selectDay(iso);
                  else this.render();
                },
              },
            },
            dayHeading(iso),
          ),
        ),
        h(
          `section.m-accordion__section-content.collapse#listContent-${index}`,
          { class: open ? "show" : "", "aria-labelledby": `listHeading-${index}` },
          h("div.m-textplus__content", {}, open && iso === cal.selectedDay && !cal.loadingSlots ? this.renderGroups() : null),
        ),
      );
    });
    return h(
      "div",
      {},
      h("div.m-content", {}, h("h3.no-top-margin", { text: this.t.availableTimes })),
      h("div.m-component.m-component-accordion", {}, h("div.m-component__body", {}, h("div.m-accordion#listViewAccordion", {}, sections))),
    );
  }

  slotsByProvider() {
    const s = this.s;
    const entry = s.cal.days.get(s.cal.selectedDay);
    if (!entry) return [];
    return s.providers
      .filter((o) => s.selected.has(String(o.id)))
      .map((o) => [o, entry.offices.get(String(o.id)) || []])
      .filter(([, slots]) => slots.length);
  }

  /** The selected day's times per office, grouped by hour (more than 18 on the day) or by day part,
   * plus whether Früher/Später page through the groups (CalendarView.vue: more than one office
   * offers the service, providersWithAppointments.length > 1). */
  dayGroups() {
    const byProvider = this.slotsByProvider();
    const total = byProvider.reduce((n, [, slots]) => n + slots.length, 0);
    const hourly = total > DAY_PART_THRESHOLD;
    const offices = byProvider.map(([office, slots]) => {
      const groups = new Map();
      for (const ts of slots) {
        const hour = hourOf(ts);
        const key = hourly ? hour : hour >= 12 ? "pm" : "am";
        if (!groups.has(key)) groups.set(key, []);
        groups.get(key).push(ts);
      }
      return [office, groups];
    });
    const keys = [...new Set(offices.flatMap(([, groups]) => [...groups.keys()]))].sort((a, b) =>
      hourly ? a - b : a === b ? 0 : a === "am" ? -1 : 1,
    );
    return { offices, keys, hourly, paging: this.s.providers.length > 1 };
  }

  groupLabel(key, hourly) {
    return hourly ? `${key}:00-${key}:59` : key === "am" ? this.t.am : this.t.pm;
  }

  /** TimeSlotGrid.vue per office and group, then the Früher/Später buttons when they page. */
  renderGroups() {
    const cal = this.s.cal;
    const { offices, keys, hourly, paging } = this.dayGroups();
    if (!keys.length) return [];
    if (cal.group === null || !keys.includes(cal.group)) cal.group = keys[0];
    const current = cal.group;
    const renamed = LAYOUT.renamedTimeslotIds.has(this.layoutVariant);
    const out = [];
    for (const [office, groups] of offices) {
      if (paging && !groups.has(current)) continue;
      const oid = String(office.id);
      const grids = [];
      for (const [key, list] of groups) {
        if (paging && key !== current) continue;
        const label = this.groupLabel(key, hourly);
        const items = list.map((ts) => this.renderSlot(office, ts, renamed));
        grids.push(
          renamed
            ? h(`div.slot-list#slots-${oid}`, {}, h("span.timeslot-group__label", { text: label }), items)
            : h(
                `div#timeslot-grid-provider-${oid}`,
                {},
                this.s.providers.length > 1 ? h(`h5.location-title#provider-${oid}`, { text: office.name }) : null,
                h("div.wrapper", {}, h("p.left-text.nowrap", { text: label }), h("div.grid", {}, items)),
              ),
        );
      }
      out.push(h("div", {}, grids));
    }
    if (paging) {
      const index = keys.indexOf(current);
      const page = (step) => {
        cal.group = keys[index + step];
        this.render();
      };
      out.push(
        h(
          "div.wrapper.m-button-group",
          {},
          button(this.t.earlier, { variant: "ghost", disabled: index <= 0, onClick: () => page(-1), iconName: "chevron-left", iconLeft: true }),
          button(this.t.later, {
            variant: "ghost",
            disabled: index >= keys.length - 1,
            onClick: () => page(1),
            iconName: "chevron-right",
            attrs: { class: "float-right" },
          }),
        ),
      );
    }
    return out;
  }

  /** CalendarView.vue's times: "Verfügbare Termine", the day as h4 ("Mittwoch, 09.12.2026"), the
   * groups; nothing at all when the day has no time for the ticked offices. */
  renderTimes() {
    const s = this.s;
    const cal = s.cal;
    if (!cal.selectedDay) return null;
    const head = h("div.m-content", {}, h("h3.no-top-margin", { text: this.t.availableTimes }));
    if (cal.loadingSlots) {
      return h("div.m-component", {}, head, h("div.m-content", {}, h("div.m-spinner-container", {}, h("div.m-spinner", { role: "status", text: this.t.loadingTimes }))));
    }
    const groups = this.renderGroups();
    if (!groups.length) return null;
    return h("div.m-component", {}, head, h("div.day-heading", {}, h("h4", { text: dayHeading(cal.selectedDay) })), groups);
  }

  renderSlot(office, ts, renamed) {
    const s = this.s;
    const oid = String(office.id);
    const selected = s.slot && s.slot.officeId === oid && s.slot.ts === ts;
    const pick = () => {
      s.slot = { officeId: oid, ts };
      s.stepError = null;
      this.render();
      this.main.querySelector(".selected-appointment")?.scrollIntoView({ block: "center" });
    };
    if (renamed) {
      return h(
        "div.slot-cell",
        { "data-office": oid, "data-ts": ts },
        h(`button.slot-btn#slot-${oid}-${ts}`, {
          type: "button",
          class: selected ? "is-selected" : "",
          "aria-pressed": selected ? "true" : "false",
          on: { click: pick },
          text: hhmm(ts),
        }),
      );
    }
    // TimeSlotGrid.vue: a MucButton (primary when selected) with the time, labelled "HH:MM Uhr, <Ort>".
    return h(
      "div.grid-item",
      { "data-provider-id": oid, "data-timeslot": ts },
      button(hhmm(ts), {
        variant: selected ? "primary" : "secondary",
        onClick: pick,
        id: `provider-${oid}-timeslot-${ts}`,
        attrs: {
          class: "timeslot",
          "data-provider-id": oid,
          "aria-label": `${hhmm(ts)} ${this.t.timeStampSuffix}, ${office.name}`,
        },
      }),
    );
  }

  renderSelectedSlot() {
    const s = this.s;
    const office = this.office(s.slot.officeId);
    return h(
      "div.selected-appointment",
      { tabindex: 0 },
      callout(
        "info",
        this.t.selectedAppointment,
        null,
        h(
          "ul.selected-appointment__details",
          {},
          h("li", { text: `${s.count} x ${s.service.name}` }),
          office ? h("li", { text: `${office.name}, ${addressLine(office)}` }) : null,
          h("li", { text: `${fmtLongDateOfTs.format(new Date(s.slot.ts * 1000))}, ${hhmm(s.slot.ts)} ${this.t.clock}` }),
        ),
      ),
    );
  }

  renderContact() {
    const s = this.s;
    const scope = this.scope();
    const c = s.customer;
    const field = ({ key, id, label, tag = "input", type = "text", required = false, maxlength = null, placeholder = null, autocomplete = null }) => {
      const error = s.fieldErrors[key];
      // patternlab MucInput/MucTextArea: the group gets has-error and a FormErrorMessage
      // (span.m-error-message#text-input-error, role=alert); the control itself is not marked.
      const control = h(`${tag}.${tag === "textarea" ? "m-textarea" : "m-input"}#${id}`, {
        type: tag === "input" ? type : null,
        name: id,
        value: c[key],
        required,
        "aria-required": required ? "true" : "false",
        maxlength,
        placeholder,
        autocomplete,
        on: { input: (ev) => (c[key] = ev.target.value) },
      });
      return h(
        "div.m-form-group",
        { class: error ? "has-error" : "" },
        h("label.m-label", { for: id, class: required ? "" : "m-label--optional" }, label),
        h("div.m-input-wrapper", {}, control),
        error
          ? h(
              "span.m-error-message.form-error-message#text-input-error",
              { role: "alert", tabindex: "0", "aria-live": "polite" },
              h("span", { text: error }),
            )
          : null,
      );
    };
    const form = h(
      "form.m-form.customer-info",
      { novalidate: true, on: { submit: (ev) => ev.preventDefault() } },
      field({ key: "firstName", id: "input-firstname", label: this.t.firstName, required: true, maxlength: NAME_MAX, autocomplete: "given-name" }),
      field({ key: "lastName", id: "input-lastname", label: this.t.lastName, required: true, maxlength: NAME_MAX, autocomplete: "family-name" }),
      field({
        key: "email", id: "input-mailaddress", label: this.t.mailAddress, type: "email",
        required: scope.emailRequired !== false, autocomplete: "email",
      }),
      scope.telephoneActivated
        ? field({
            key: "phone", id: "input-telephonenumber", label: this.t.telephone, type: "tel",
            required: Boolean(scope.telephoneRequired), placeholder: "+491511234567", autocomplete: "tel",
          })
        : null,
      scope.customTextfieldActivated
        ? field({
            key: "remarks", id: "textarea-remarks", tag: "textarea", label: scope.customTextfieldLabel || this.t.remarks,
            required: Boolean(scope.customTextfieldRequired), maxlength: CUSTOM_MAX,
          })
        : null,
      scope.customTextfield2Activated
        ? field({
            key: "remarks2", id: "textarea-remarks2", tag: "textarea", label: scope.customTextfield2Label || this.t.remarks2,
            required: Boolean(scope.customTextfield2Required), maxlength: CUSTOM_MAX,
          })
        : null,
    );
    return [
      h("section.m-component", {}, h("h2", { text: this.t.contactDetails }), form),
      this.stepErrorCallout(),
      h(
        "div.m-button-group",
        {},
        button(this.t.back, {
          variant: "secondary",
          onClick: () => {
            s.step = 1;
            s.stepError = null;
            s.fieldErrors = {};
            this.render();
          },
        }),
        button(this.t.next, { disabled: s.busy, onClick: () => this.updateCustomer() }),
      ),
    ];
  }

  appointmentDetails(process) {
    const ts = Number(process.timestamp);
    const office = this.office(process.officeId);
    const scope = process.scope || {};
    const rows = [
      [this.t.service, `${process.serviceCount || 1} x ${process.serviceName || (this.s.service && this.s.service.name) || ""}`],
      [this.t.location, [process.officeName || (office && office.name), office && addressLine(office)].filter(Boolean).join(", ")],
      [this.t.appointment, ts ? `${fmtLongDateOfTs.format(new Date(ts * 1000))}, ${hhmm(ts)} ${this.t.clock}` : ""],
    ];
    if (process.displayNumber) rows.push([this.t.appointmentNumber, String(process.displayNumber)]);
    return h(
      "dl.appointment-details",
      {},
      rows.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })]),
      scope.infoForAppointment ? [h("dt", { text: "Hinweis" }), h("dd", { text: htmlToText(scope.infoForAppointment) })] : [],
    );
  }

  renderOverview() {
    const s = this.s;
    const p = s.process;
    const c = s.customer;
    const scope = this.scope();
    const contact = [`${c.firstName} ${c.lastName}`, c.email, scope.telephoneActivated ? c.phone : null];
    if (scope.customTextfieldActivated && c.remarks) contact.push(`${scope.customTextfieldLabel || this.t.remarks}: ${c.remarks}`);
    if (scope.customTextfield2Activated && c.remarks2) contact.push(`${scope.customTextfield2Label || this.t.remarks2}: ${c.remarks2}`);
    const summary = h(
      `div.m-component.appointment-summary#process-${p.processId}-displayNumber-${p.displayNumber ?? ""}`,
      {},
      h("h2", { text: this.t.overview }),
      this.appointmentDetails(p),
      h("h3", { text: this.t.contact }),
      h("ul.contact-summary", {}, contact.filter(Boolean).map((line) => h("li", { text: line }))),
    );
    if (s.done) {
      const minutes = scope.activationDuration || 30;
      return [callout("warning", this.t.activateHeader, this.t.activateText(minutes)), summary];
    }
    const reserve = button(this.t.bookAppointment, { disabled: !s.accepted || s.busy, onClick: () => this.preconfirm() });
    summary.append(
      h("h3", { text: this.t.legalNotes }),
      h("p.m-hint", { text: this.t.privacyText }),
      h(
        "div.m-checkbox",
        {},
        h("input.m-checkbox__input#checkbox-electronic-communication", {
          type: "checkbox",
          required: true,
          checked: s.accepted,
          on: {
            change: (ev) => {
              s.accepted = ev.target.checked;
              setDisabled(reserve, !s.accepted || s.busy);
            },
          },
        }),
        h("label.m-checkbox__label", { for: "checkbox-electronic-communication", text: this.t.communicationLabel }),
      ),
    );
    return [
      summary,
      this.stepErrorCallout(),
      h(
        "div.m-button-group",
        {},
        button(this.t.back, {
          variant: "secondary",
          onClick: () => {
            s.step = 2;
            s.stepError = null;
            this.render();
          },
        }),
        reserve,
      ),
    ];
  }

  renderConfirmed() {
    const p = this.s.process;
    return [
      callout("success", this.t.bookedHeader, this.t.bookedText),
      h("div.m-component", {}, this.appointmentDetails(p)),
      h(
        "div.m-button-group",
        {},
        button(this.t.downloadIcs, { variant: "secondary", disabled: !p.icsContent, onClick: () => this.downloadIcs() }),
        button(this.t.bookAnother, { onClick: () => this.bookAnother() }),
      ),
    ];
  }

  renderAlreadyActivated() {
    return [
      h(
        "div.m-banner.m-banner--info",
        { role: "status", "data-test": "appointment-already-activated-banner" },
        h("p", { text: this.t.alreadyActivated }),
      ),
      h("div.m-component", {}, this.appointmentDetails(this.s.process)),
      h("div.m-button-group", {}, button(this.t.bookAnother, { onClick: () => this.bookAnother() })),
    ];
  }

  renderManage() {
    const s = this.s;
    const out = [h("div.m-component", {}, h("h2", { text: this.t.appointment }), this.appointmentDetails(s.process))];
    out.push(this.stepErrorCallout());
    if (s.confirmCancel) {
      out.push(
        h(
          "div.m-dialog",
          { role: "dialog", "aria-labelledby": "cancel-dialog-heading" },
          h("h3#cancel-dialog-heading", { text: this.t.cancelModalHeading }),
          h("p", { text: this.t.cancelModalText }),
          h(
            "div.m-button-group",
            {},
            button(this.t.cancelAbort, {
              variant: "secondary",
              onClick: () => {
                s.confirmCancel = false;
                this.render();
              },
            }),
            button(this.t.cancelConfirm, { disabled: s.busy, onClick: () => this.cancelAppointment() }),
          ),
        ),
      );
    } else {
      out.push(
        h(
          "div.m-button-group",
          {},
          button(this.t.reschedule, { variant: "secondary", onClick: () => this.reschedule() }),
          button(this.t.cancelAppointment, {
            variant: "secondary",
            onClick: () => {
              s.confirmCancel = true;
              this.render();
            },
          }),
        ),
      );
    }
    return out;
  }
}


if (!customElements.get("zms-appointment-wrapped")) customElements.define("zms-appointment-wrapped", ZmsAppointmentWrapped);
