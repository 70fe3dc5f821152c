"""The City of Munich's appointment site (ZMS / eAppointment): one package, every assumption in one
place.

- ``selectors`` / ``booking_selectors``: what the adapter and the booker assume about the page and
  the citizen API (each assumption with its place in the city's source: ``docs/site-conformance.md``);
- ``failures``: the one mapping from the site's answers to ``CheckFailure`` types, shared by checks
  and bookings;
- ``adapter``: ``MunichAdapter``, the ``SiteAdapter`` (walk, warm check, the request plan per round);
- ``booker``: ``MunichBooker``, the ``SiteBooker`` (reserve, contact, preconfirm, cancel).
"""
