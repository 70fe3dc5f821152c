"""The JSON API: status and lists from seeded rows, paging, bad parameters, the admin token."""

from __future__ import annotations

from datetime import datetime

import redis
from fastapi.testclient import TestClient

from api.queries import berlin_day_start
from shared.db.database import Database
from shared.db.models import Notification, NotificationStatus, Slot, Target, TargetState
from shared.domain import utcnow
from shared.settings import Settings
from tests.api.conftest import ADMIN_TOKEN, PERSONAL_STRINGS, SERVICE_ID, USER_ID, seed
from worker.budget import site_budget

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_status_summarises_the_seeded_farm(client: TestClient, db: Database) -> None:
    seed(db)
    body = client.get("/api/v1/status").json()
    assert body["database"]["ok"] and body["redis"]["ok"]
    assert body["targets_by_state"]["ok"] == 1
    assert body["open_slots"] == 2
    assert body["alerts_by_status"]["sent"] == 1
    assert body["alerts_by_status"]["failed"] == 1
    assert body["bookings_by_status"]["reserved"] == 1
    assert {q["name"] for q in body["queues"]} == {"checks", "bookings"}
    latency = body["detection_latency"]
    assert latency["samples"] == 3 and latency["p50_s"] is not None
    assert "upper bound" in latency["definition"].lower()


def test_targets_show_state_last_check_and_latency(client: TestClient, db: Database) -> None:
    seeded = seed(db)
    page = client.get("/api/v1/targets").json()
    assert page["total"] == 1 and page["next_offset"] is None
    target = page["items"][0]
    assert target["id"] == seeded.target_id
    assert target["service_name"] == "Wohnsitzanmeldung"
    assert target["state_text"] == "ok"
    assert target["last_check_outcome"] == "no_slots"  # the newest by start time, not by id
    # "today" is the Berlin day: just after midnight the seeded episodes (10-90 min old) are yesterday's
    day_start = berlin_day_start(utcnow())
    with db.transaction() as session:
        first_seen = [session.get(Slot, i).first_seen_at for i in seeded.slot_ids]  # type: ignore[union-attr]
    assert target["slots_seen_today"] == sum(t >= day_start for t in first_seen)
    assert datetime.fromisoformat(target["last_slot_at"]) == max(first_seen)
    # checks every 10 min, slots seen right after one: the bound is about one interval
    assert 590 <= target["latency_p50_s"] <= 620
    assert client.get(f"/api/v1/targets/{seeded.target_id}").json()["id"] == seeded.target_id


def test_status_shows_the_budget_and_what_a_walk_carried(
    client: TestClient, db: Database, api_settings: Settings, redis_url: str
) -> None:
    """Tried: a dispatch and a walk of nine requests more than the minute's budget. The status shows
    the window full and the nine carried into the coming minutes; the dashboard says so too."""
    seed(db)
    per_minute = api_settings.site_budget_per_minute
    budget = site_budget(redis.Redis.from_url(redis_url), api_settings, "munich")
    assert budget.try_take()
    budget.charge(per_minute + 8)
    (munich,) = [b for b in client.get("/api/v1/status").json()["budgets"] if b["site"] == "munich"]
    assert (munich["used"], munich["limit"], munich["carried"]) == (per_minute, per_minute, 9)
    assert "+9 carried" in client.get("/").text


def test_backing_off_target_says_until_when(client: TestClient, db: Database) -> None:
    seeded = seed(db)
    with db.transaction() as s:
        target = s.get(Target, seeded.target_id)
        assert target is not None
        target.state = TargetState.BACKING_OFF
        target.backoff_until = seeded.now.replace(year=seeded.now.year + 1)
        target.consecutive_failures = 3
        target.last_error = "HTTP 503 from available-calendar"
    target_json = client.get(f"/api/v1/targets/{seeded.target_id}").json()
    assert target_json["state"] == "backing_off"
    assert target_json["state_text"].startswith("backing off until ")
    # the dashboard shows the error in the row, not only on hover
    assert "3 failed in a row: HTTP 503 from available-calendar" in client.get("/").text


def test_lists_page_newest_first(client: TestClient, db: Database) -> None:
    seed(db)
    first = client.get("/api/v1/checks", params={"limit": 5}).json()
    assert first["total"] == 13 and len(first["items"]) == 5 and first["next_offset"] == 5
    ids = [c["id"] for c in first["items"]]
    assert ids == sorted(ids, reverse=True)
    last = client.get("/api/v1/checks", params={"limit": 5, "offset": 10}).json()
    assert len(last["items"]) == 3 and last["next_offset"] is None
    limited = client.get("/api/v1/checks", params={"outcome": "rate_limited"}).json()
    assert limited["total"] == 1 and limited["items"][0]["error"] == "RateLimited: 429"
    open_slots = client.get("/api/v1/slots", params={"open": "true", "service_id": SERVICE_ID}).json()
    assert open_slots["total"] == 2 and all(s["gone_at"] is None for s in open_slots["items"])
    since = client.get("/api/v1/slots", params={"since": "2100-01-01T00:00:00+00:00"}).json()
    assert since["total"] == 0


def test_public_views_carry_no_personal_data(client: TestClient, db: Database) -> None:
    seed(db)
    for path in (
        "/",
        "/api/v1/status",
        "/api/v1/alerts",
        "/api/v1/bookings",
        "/api/v1/slots",
        "/api/v1/targets",
    ):
        text = client.get(path).text
        for secret in PERSONAL_STRINGS:
            assert secret not in text, f"{secret!r} leaked on {path}"
    alert = client.get("/api/v1/alerts").json()["items"][0]
    assert set(alert) == {"id", "kind", "status", "created_at", "sent_at", "attempts", "slot", "summary"}
    assert alert["summary"].startswith("Free slot: Wohnsitzanmeldung at Bürgerbüro Orleansplatz")


def test_bad_parameters_get_clear_422s(client: TestClient) -> None:
    cases = {
        "/api/v1/checks?limit=0": "limit",
        "/api/v1/checks?limit=1000": "limit",
        "/api/v1/checks?offset=-1": "offset",
        "/api/v1/checks?outcome=exploded": "outcome",
        "/api/v1/slots?since=yesterday": "since",
        "/api/v1/slots?since=2026-01-01T10:00:00": "since",  # no time zone
        "/api/v1/slots?service_id=99999999999999999999": "service_id",
        "/api/v1/slots?site=Mün chen": "site",
        "/api/v1/alerts?status=lost": "status",
        "/api/v1/targets/0": "target_id",
    }
    for url, field in cases.items():
        response = client.get(url)
        assert response.status_code == 422, url
        errors = response.json()["detail"]
        assert any(field in map(str, e["loc"]) for e in errors), (url, errors)
        assert all(e["msg"] for e in errors)
    missing = client.get("/api/v1/targets/12345")
    assert missing.status_code == 404 and missing.json() == {"detail": "no target 12345"}


def test_admin_endpoints_need_the_token(client: TestClient, db: Database) -> None:
    seeded = seed(db)
    no_token = client.get("/api/v1/admin/alerts")
    assert no_token.status_code == 401 and "Bearer" in no_token.headers["www-authenticate"]
    assert "MTA_ADMIN_TOKEN" in no_token.json()["detail"]
    wrong = client.get("/api/v1/admin/alerts", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["detail"] == "invalid admin token"
    not_bearer = client.get("/api/v1/admin/alerts", headers={"Authorization": f"Basic {ADMIN_TOKEN}"})
    assert not_bearer.status_code == 401
    non_ascii = client.get("/api/v1/admin/alerts", headers={"Authorization": "Bearer t\u00f6ken".encode()})
    assert non_ascii.status_code == 401
    refused = client.post(f"/api/v1/admin/alerts/{seeded.alert_ids[1]}/retry")
    assert refused.status_code == 401

    alerts = client.get("/api/v1/admin/alerts", headers=ADMIN).json()["items"]
    assert {a["user_id"] for a in alerts} == {USER_ID}
    assert any(a["text"] and "Erika" in a["text"] for a in alerts)
    bookings = client.get("/api/v1/admin/bookings", headers=ADMIN).json()["items"]
    assert bookings[0]["user_id"] == USER_ID
    assert "proc-secret-123" not in str(bookings)  # the city's keys stay secret even for admins


def test_admin_actions_change_state(client: TestClient, db: Database) -> None:
    seeded = seed(db)
    sent, failed, _ = seeded.alert_ids
    retried = client.post(f"/api/v1/admin/alerts/{failed}/retry", headers=ADMIN)
    assert retried.status_code == 200 and retried.json() == {"id": failed, "status": "pending"}
    with db.transaction() as s:
        note = s.get(Notification, failed)
        assert note is not None and note.status == NotificationStatus.PENDING
    again = client.post(f"/api/v1/admin/alerts/{sent}/retry", headers=ADMIN)
    assert again.status_code == 409 and "sent" in again.json()["detail"]
    assert client.post("/api/v1/admin/alerts/999999/retry", headers=ADMIN).status_code == 404

    with db.transaction() as s:
        target = s.get(Target, seeded.target_id)
        assert target is not None
        target.backoff_until = seeded.now.replace(year=seeded.now.year + 1)
    cleared = client.post(f"/api/v1/admin/targets/{seeded.target_id}/clear-backoff", headers=ADMIN)
    assert cleared.status_code == 200 and cleared.json()["backoff_until"] is None

    purged = client.post("/api/v1/admin/retention/purge", headers=ADMIN)
    assert purged.status_code == 200 and purged.json()["checks_deleted"] == 0


def test_admin_api_is_off_without_a_token(api_settings, db: Database) -> None:  # type: ignore[no-untyped-def]
    """Injected: MTA_ADMIN_TOKEN unset. Asserted: admin calls answer 403 saying how to enable them."""
    from api.app import create_app

    settings = api_settings.model_copy(update={"admin_token": None})
    with TestClient(create_app(settings)) as plain:
        response = plain.get("/api/v1/admin/alerts", headers={"Authorization": "Bearer anything"})
    assert response.status_code == 403
    assert "MTA_ADMIN_TOKEN" in response.json()["detail"]


def test_openapi_documents_every_endpoint(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in (
        "/api/v1/status",
        "/api/v1/targets",
        "/api/v1/slots",
        "/api/v1/checks",
        "/api/v1/alerts",
        "/api/v1/bookings",
        "/api/v1/admin/alerts",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in spec["paths"], path
    assert "AdminToken" in spec["components"]["securitySchemes"]
    assert "/events" not in spec["paths"] and "/" not in spec["paths"]
