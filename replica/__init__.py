"""The replica: our own local stand-in for the City of Munich's appointment site.

A FastAPI app that serves the city's citizen API (ZMS / eAppointment ``zmscitizenapi``) under
``/buergeransicht/api/citizen/`` with the same paths, JSON shapes, error codes, rate-limit
semantics and ALTCHA captcha as the real site, from the real catalogue
(``shared/data/munich-catalog.json``), plus the booking page (``replica/pages.py``). Free slots,
faults and page changes are scripted by YAML scenarios on a controllable clock, and tests drive
it through the ``/_replica/`` control API. Written from the fact sheet
(``/work/shared/site/munich-site.md``); no code from the city's project.

Entry points: :func:`replica.app.create_app`, :func:`replica.app.run`.
"""
