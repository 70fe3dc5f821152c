"""What every role may know about a city's booking site: how to link a person into its booking page.

An alert (bot) and a booking walk (worker) open the same page; the link is site metadata, not
worker code. ``worker.sites.munich.selectors`` re-exports ``deep_link`` beside the page's other
facts.
"""

from __future__ import annotations

MUNICH = "munich"


def deep_link(site_url: str, service_id: int, office_id: int | None = None) -> str:
    """Munich's booking page opened on ``#/services/<sid>[/locations/<oid>]`` (fact sheet §4.2)."""
    base = site_url.split("#", 1)[0]
    route = f"#/services/{service_id}"
    if office_id is not None:
        route += f"/locations/{office_id}"
    return base + route


__all__ = ["MUNICH", "deep_link"]
