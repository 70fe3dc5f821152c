// <zms-appointment>: the element the host page embeds. Like the city's wrapper it opens a shadow root
// holding <zms-appointment-i18n-host> > <zms-appointment-wrapped>, and copies its own attributes
// (base-url, appointment-detail-url, show-login-option, data-layout-variant, ...) onto the inner element.

class ZmsAppointmentI18nHost extends HTMLElement {
  connectedCallback() {
    this.setAttribute("lang", "de-DE");
  }
}

class ZmsAppointment extends HTMLElement {
  connectedCallback() {
    if (this.shadowRoot || this.firstElementChild) return;
    // The "no-shadow-dom" layout variant of the replica renders everything into the light DOM.
    const root = this.getAttribute("data-layout-variant") === "no-shadow-dom" ? this : this.attachShadow({ mode: "open" });
    const host = document.createElement("zms-appointment-i18n-host");
    const inner = document.createElement("zms-appointment-wrapped");
    for (const attr of this.attributes) inner.setAttribute(attr.name, attr.value);
    host.append(inner);
    root.append(host);
  }
}

if (!customElements.get("zms-appointment-i18n-host")) customElements.define("zms-appointment-i18n-host", ZmsAppointmentI18nHost);
if (!customElements.get("zms-appointment")) customElements.define("zms-appointment", ZmsAppointment);
