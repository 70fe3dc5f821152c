// MTA dashboard: swap in the sections the server pushes over Server-Sent Events,
// and show times as "12 s ago". No framework, no build step.
(function () {
  "use strict";
  const live = document.getElementById("live");
  const main = document.querySelector("main[data-events]");

  function setLive(state, text) {
    live.dataset.state = state;
    live.querySelector(".live-text").textContent = text;
  }

  function ago(date) {
    const s = Math.round((Date.now() - date.getTime()) / 1000);
    const abs = Math.abs(s);
    let text;
    if (abs < 60) text = abs + " s";
    else if (abs < 3600) text = Math.round(abs / 60) + " min";
    else if (abs < 86400) text = Math.round(abs / 360) / 10 + " h";
    else return null; // older: keep the absolute date
    return s >= 0 ? text + " ago" : "in " + text;
  }

  function relativeTimes(root) {
    for (const el of root.querySelectorAll("time[datetime]")) {
      if (!el.dataset.abs) el.dataset.abs = el.textContent;
      const rel = ago(new Date(el.getAttribute("datetime")));
      el.textContent = rel || el.dataset.abs;
    }
  }

  function apply(sections) {
    for (const [name, html] of Object.entries(sections)) {
      const el = document.querySelector('[data-section="' + name + '"]');
      if (!el) continue;
      el.innerHTML = html;
      relativeTimes(el);
      el.classList.remove("flash");
      void el.offsetWidth; // restart the animation
      el.classList.add("flash");
    }
    document.body.dataset.version = String((Number(document.body.dataset.version) || 0) + 1);
  }

  relativeTimes(document);
  setInterval(function () { relativeTimes(document); }, 1000);

  if (!("EventSource" in window) || !main) {
    setLive("lost", "no live updates (reload to refresh)");
    return;
  }
  const source = new EventSource(main.dataset.events);
  source.addEventListener("open", function () { setLive("live", "live"); });
  source.addEventListener("error", function () { setLive("lost", "reconnecting…"); });
  source.addEventListener("sections", function (event) {
    setLive("live", "live");
    apply(JSON.parse(event.data).sections);
  });
})();
