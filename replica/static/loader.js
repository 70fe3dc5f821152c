// Entry point the host page loads (type="module"): the wrapper element and the booking component.
import "./wrapper.js";
import "./app.js";
