"""Prepared answers: ETag and 304, one build per refresh, new data after the interval, writes seen at once."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from api.answer_folder import AnswerFolder
from api.app import create_app
from api.snapshot import JSON, AnswerCache, ReadyAnswer, answer
from shared.db.database import Database
from shared.db.models import Slot
from shared.settings import Settings
from tests.api.conftest import ADMIN_TOKEN, OFFICE_ID, SERVICE_ID, SITE, seed
from tests.support.farm import wait_until

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_etag_round_trip_answers_304_without_a_body(api_settings: Settings, db: Database) -> None:
    """Tried: each prepared public read fetched, then fetched again with its ETag in If-None-Match
    (alone, and in a list as a weak tag), and with another ETag. Asserted: 200 with an ETag and
    ``Cache-Control: no-cache`` first; then 304 with the same ETag and an empty body; a different
    tag gets the body again. Seen failing with ``api.etag.send`` ignoring If-None-Match."""
    seed(db)
    with TestClient(create_app(api_settings, refresh_s=60)) as client:
        for path in ("/api/v1/targets", "/api/v1/slots?limit=5", "/api/v1/status", "/"):
            first = client.get(path)
            assert first.status_code == 200 and first.content
            etag = first.headers["etag"]
            assert etag.startswith('"') and first.headers["cache-control"] == "no-cache"
            for sent in (etag, f'"other", W/{etag}'):
                again = client.get(path, headers={"If-None-Match": sent})
                assert again.status_code == 304, (path, sent)
                assert again.content == b"" and again.headers["etag"] == etag
            other = client.get(path, headers={"If-None-Match": '"not-this-one"'})
            assert other.status_code == 200 and other.content == first.content


def test_answer_is_reused_until_the_interval_then_shows_new_data(
    api_settings: Settings, db: Database
) -> None:
    """Tried: /api/v1/slots read, a new slot written straight into the database (as a worker does),
    the list read again at once, then until it changes. Asserted: the second read is the same
    prepared answer (same ETag, old total); the new slot shows within a few intervals, not before
    one interval has passed since the first read. Seen failing with the cache's age check removed
    (every request rebuilt: the new slot showed at once)."""
    seeded = seed(db)
    refresh_s = 3.0
    with TestClient(create_app(api_settings, refresh_s=refresh_s)) as client:
        first = client.get("/api/v1/slots")
        read_at = time.monotonic()
        total = first.json()["total"]
        with db.transaction() as session:
            session.add(
                Slot(
                    site=SITE,
                    office_id=OFFICE_ID,
                    service_id=SERVICE_ID,
                    start_at=seeded.now + timedelta(days=9),
                    first_seen_at=seeded.now,
                    last_seen_at=seeded.now,
                )
            )
        second = client.get("/api/v1/slots")
        assert time.monotonic() - read_at < refresh_s, "the machine stalled: the test cannot tell"
        assert second.headers["etag"] == first.headers["etag"]
        assert second.json()["total"] == total
        newer = wait_until(
            lambda: client.get("/api/v1/slots").json()["total"] == total + 1 or None,
            10 * refresh_s,
            "the new slot in /api/v1/slots",
        )
        assert newer and time.monotonic() - read_at >= refresh_s


def test_a_write_through_the_api_shows_in_the_next_answer(api_settings: Settings, db: Database) -> None:
    """Tried: a failed alert listed (answer prepared for a long 60 s interval), then retried through
    the admin API. Asserted: the next public list shows it pending at once, not after the interval.
    Seen failing with ``ForgetAnswersOnWrite`` left out of the app and ``_write`` not clearing."""
    seeded = seed(db)
    failed = seeded.alert_ids[1]
    with TestClient(create_app(api_settings, refresh_s=60)) as client:
        before = {a["id"]: a["status"] for a in client.get("/api/v1/alerts").json()["items"]}
        assert before[failed] == "failed"
        assert client.post(f"/api/v1/admin/alerts/{failed}/retry", headers=ADMIN).status_code == 200
        after = {a["id"]: a["status"] for a in client.get("/api/v1/alerts").json()["items"]}
        assert after[failed] == "pending"


def test_one_build_serves_every_concurrent_request() -> None:
    """Tried: 200 concurrent requests for one key while its build is still running, then 200 more
    after it expired. Asserted: one build each time; during the rebuild the expired answer is served
    (nobody waits), and a key whose answer is older than two intervals waits for the new one. Seen
    failing with the in-flight build not shared (200 builds)."""

    async def main() -> None:
        cache = AnswerCache()
        release = asyncio.Event()
        version = 0

        async def build(read_at_s: float) -> ReadyAnswer:
            nonlocal version
            await release.wait()
            version += 1
            return answer(str(version).encode(), "text/plain", read_at_s=read_at_s)

        waiting = [asyncio.create_task(cache.get("k", build, max_age_s=0.3)) for _ in range(200)]
        await asyncio.sleep(0)
        release.set()
        assert {a.body for a in await asyncio.gather(*waiting)} == {b"1"}
        assert cache.builds == 1

        await asyncio.sleep(0.35)  # expired, younger than two intervals
        release.clear()
        stale = await asyncio.gather(*(cache.get("k", build, max_age_s=0.3) for _ in range(200)))
        assert {a.body for a in stale} == {b"1"} and cache.builds == 2
        release.set()
        fresh = await cache.get("k", build, max_age_s=0.3)
        while fresh.body == b"1":  # the rebuild finishes on the loop
            await asyncio.sleep(0.01)
            fresh = await cache.get("k", build, max_age_s=0.3)
        assert fresh.body == b"2" and cache.builds == 2

        await asyncio.sleep(0.65)  # older than two intervals: callers wait for the new answer
        assert (await cache.get("k", build, max_age_s=0.3)).body == b"3"

    asyncio.run(main())


def test_parameter_variants_are_bounded() -> None:
    """Tried: 50 keys into a store of 8. Asserted: 8 kept, the most recently used ones."""

    async def main() -> None:
        cache = AnswerCache(max_keys=8)

        async def build(read_at_s: float) -> ReadyAnswer:
            return answer(b"x", "text/plain", read_at_s=read_at_s)

        for n in range(50):
            await cache.get(f"slots:{n}", build, max_age_s=60)
        builds = cache.builds
        for n in range(42, 50):
            await cache.get(f"slots:{n}", build, max_age_s=60)
        assert cache.builds == builds  # kept
        await cache.get("slots:0", build, max_age_s=60)
        assert cache.builds == builds + 1  # dropped long ago

    asyncio.run(main())


def test_large_answers_go_gzipped_to_clients_that_accept_it(api_settings: Settings, db: Database) -> None:
    """Tried: the dashboard and /api/v1/status asked with and without ``Accept-Encoding: gzip``.
    Asserted: gzip bytes (Content-Encoding, Vary) that decode to exactly the plain body; each
    representation has its own ETag and 304s on it; ``gzip;q=0`` gets the plain body. Seen failing
    with ``accepts_gzip`` always false."""
    seed(db)
    with TestClient(create_app(api_settings, refresh_s=60)) as client:
        for path in ("/", "/api/v1/status"):
            plain = client.get(path, headers={"Accept-Encoding": "identity"})
            packed = client.get(path, headers={"Accept-Encoding": "br, gzip"})
            assert "content-encoding" not in plain.headers
            assert packed.headers["content-encoding"] == "gzip"
            assert packed.headers["vary"] == plain.headers["vary"] == "Accept-Encoding"
            assert packed.content == plain.content  # httpx decoded it
            assert int(packed.headers["content-length"]) < len(plain.content)
            assert packed.headers["etag"] != plain.headers["etag"]
            for response, accept in ((plain, "identity"), (packed, "gzip")):
                again = client.get(
                    path, headers={"Accept-Encoding": accept, "If-None-Match": response.headers["etag"]}
                )
                assert again.status_code == 304
            refused = client.get(path, headers={"Accept-Encoding": "gzip;q=0"})
            assert "content-encoding" not in refused.headers and refused.content == plain.content


def test_a_repeated_request_line_is_answered_before_routing(api_settings: Settings, db: Database) -> None:
    """Tried: /api/v1/slots?limit=5 and the dashboard read once, then the endpoints' dependency
    broken (``get_state`` overridden to fail), then the same lines, another spelling of the query,
    and the same line after a write. Asserted: the same lines still get their ready answers (the
    fast path needs no routing), with the same ETag; a line never validated (``limit=05``) and the
    line after the write reach the endpoint (which now fails). Seen failing with the fast path left
    out of the app."""
    from api.state import get_state

    seed(db)
    with TestClient(create_app(api_settings, refresh_s=60), raise_server_exceptions=False) as client:
        first = {path: client.get(path) for path in ("/api/v1/slots?limit=5", "/")}

        def broken() -> None:
            raise RuntimeError("routing reached")

        client.app.dependency_overrides[get_state] = broken  # type: ignore[attr-defined]
        for path, response in first.items():
            again = client.get(path)
            assert again.status_code == 200 and again.content == response.content
            assert again.headers["etag"] == response.headers["etag"]
        assert client.get("/api/v1/slots?limit=05").status_code == 500
        client.app.dependency_overrides.clear()  # type: ignore[attr-defined]
        purged = client.post("/api/v1/admin/retention/purge", headers=ADMIN)  # a write forgets answers
        assert purged.status_code == 200
        client.app.dependency_overrides[get_state] = broken  # type: ignore[attr-defined]
        assert client.get("/api/v1/slots?limit=5").status_code == 500


def test_the_fast_path_starts_an_expired_answers_rebuild() -> None:
    """Tried: an answer for a remembered request line, asked for by the fast path after its interval
    (before two intervals). Asserted: the previous answer is handed out at once, one rebuild starts
    (more asks during it start no other), and the next ask after it gets the new answer. Seen
    failing with ``ready_for`` only serving answers whose rebuild an endpoint had started."""

    async def main() -> None:
        cache = AnswerCache()
        version = 0

        async def build(read_at_s: float) -> ReadyAnswer:
            nonlocal version
            version += 1
            await asyncio.sleep(0.05)
            return answer(str(version).encode(), "text/plain", read_at_s=read_at_s)

        await cache.get("slots:5", build, max_age_s=0.3)
        cache.remember("/api/v1/slots?limit=5", "slots:5")
        assert cache.builds == 1
        await asyncio.sleep(0.35)
        handed = [cache.ready_for("/api/v1/slots?limit=5", 0.3) for _ in range(50)]
        assert {a.body for a in handed if a is not None} == {b"1"} and None not in handed
        assert cache.builds == 2
        await asyncio.sleep(0.1)
        fresh = cache.ready_for("/api/v1/slots?limit=5", 0.3)
        assert fresh is not None and fresh.body == b"2" and cache.builds == 2
        assert cache.ready_for("/api/v1/slots?limit=05", 0.3) is None  # never validated

    asyncio.run(main())


def test_a_rebuild_slower_than_two_intervals_keeps_serving_the_previous_answer() -> None:
    """Tried: a key in demand whose rebuild (started when the answer had just expired) is held past
    two intervals, asked for through ``get`` and the fast path meanwhile; then released. Asserted:
    every ask meanwhile gets the previous answer at once (``get`` returns without waiting, the fast
    path does not fall through to the endpoint) and no second build starts; after the rebuild the
    new answer. A key asked for again only after two intervals still waits (see above). Seen failing
    with the old rule (the previous answer only up to two intervals after its build)."""

    async def main() -> None:
        cache = AnswerCache()
        release = asyncio.Event()
        release.set()
        version = 0

        async def build(read_at_s: float) -> ReadyAnswer:
            nonlocal version
            await release.wait()
            version += 1
            return answer(str(version).encode(), "text/plain", read_at_s=read_at_s)

        await cache.get("k", build, max_age_s=0.2)
        cache.remember("/k?", "k")
        await asyncio.sleep(0.25)  # expired, younger than two intervals: the rebuild starts now
        release.clear()
        assert (await cache.get("k", build, max_age_s=0.2)).body == b"1"
        await asyncio.sleep(0.3)  # the rebuild still runs, the answer is older than two intervals
        asking = asyncio.create_task(cache.get("k", build, max_age_s=0.2))
        await asyncio.sleep(0)
        assert asking.done() and asking.result().body == b"1"
        handed = cache.ready_for("/k?", 0.2)
        assert handed is not None and handed.body == b"1"
        assert cache.builds == 2
        release.set()
        fresh = await cache.get("k", build, max_age_s=0.2)
        while fresh.body == b"1":  # the rebuild finishes on the loop
            await asyncio.sleep(0.01)
            fresh = await cache.get("k", build, max_age_s=0.2)
        assert fresh.body == b"2" and cache.builds == 2

    asyncio.run(main())


def test_server_processes_share_one_build_per_refresh(tmp_path: Path) -> None:
    """Tried: two answer stores on one ``AnswerFolder`` (as two server processes of one ``mta
    api``): one builds a key, the other asks for it; after the interval the data changes and both
    ask at once while the build is held. Asserted: the second store takes the first one's bytes
    (same ETag, no build of its own); after the change exactly one build runs for both, and both
    then send the new answer under the same new ETag. Seen failing with the stores not given the
    folder (each built its own) and with the lock not taken (two builds after the change)."""

    async def main() -> None:
        folder = AnswerFolder(tmp_path)
        first, second = AnswerCache(shared=folder), AnswerCache(shared=folder)
        release = asyncio.Event()
        release.set()
        data = "old"
        calls = 0

        async def build(read_at_s: float) -> ReadyAnswer:
            nonlocal calls
            calls += 1
            await release.wait()
            return answer(f'{{"data": "{data}", "read": {read_at_s}}}'.encode(), JSON, read_at_s=read_at_s)

        one = await first.get("status", build, max_age_s=0.3)
        two = await second.get("status", build, max_age_s=0.3)
        assert calls == 1 and second.adopted == 1
        assert two.body == one.body and two.etag == one.etag

        await asyncio.sleep(0.35)
        data = "new"
        release.clear()
        asking = [asyncio.create_task(c.get("status", build, max_age_s=0.3)) for c in (first, second)]
        await asyncio.sleep(0.1)  # both rebuilds started; one holds the lock, the other waits for it
        assert calls == 2
        release.set()
        await asyncio.gather(*asking)
        newer = []
        for cache in (first, second):
            ready = await cache.get("status", build, max_age_s=0.3)
            while b"new" not in ready.body:  # the rebuild (or the wait for it) finishes on the loop
                await asyncio.sleep(0.01)
                ready = await cache.get("status", build, max_age_s=0.3)
            newer.append(ready)
        assert calls == 2
        assert newer[0].body == newer[1].body and newer[0].etag == newer[1].etag != one.etag

    asyncio.run(main())


def test_a_write_here_is_not_hidden_by_another_processes_older_answer(tmp_path: Path) -> None:
    """Tried: a key built by one store on a shared folder, then a write through the other store's
    process (``clear``), then that store asks for the key. Asserted: it builds anew rather than
    taking the other process's answer read before the write. Seen failing with ``_adoptable``
    ignoring when the answer was read."""

    async def main() -> None:
        folder = AnswerFolder(tmp_path)
        first, second = AnswerCache(shared=folder), AnswerCache(shared=folder)
        data = "before"

        async def build(read_at_s: float) -> ReadyAnswer:
            return answer(data.encode(), "text/plain", read_at_s=read_at_s)

        assert (await first.get("k", build, max_age_s=60)).body == b"before"
        data = "after"
        second.clear()
        assert (await second.get("k", build, max_age_s=60)).body == b"after"
        assert second.adopted == 0

    asyncio.run(main())


def test_healthz_is_answered_before_routing(api_settings: Settings, db: Database) -> None:
    """Tried: /healthz asked after the app's routes were all removed. Asserted: 200 with
    ``{"status":"ok"}`` as JSON (the fast path answers it, no routing), while another path now
    gets 404. Seen failing with the fast path's /healthz branch removed."""
    with TestClient(create_app(api_settings, refresh_s=60)) as client:
        client.app.router.routes.clear()  # type: ignore[attr-defined]
        answered = client.get("/healthz")
        assert answered.status_code == 200 and answered.json() == {"status": "ok"}
        assert answered.headers["content-type"] == "application/json"
        assert client.get("/api/v1/status").status_code == 404


def test_a_folder_that_cannot_be_used_costs_the_sharing_not_the_answer(tmp_path: Path) -> None:
    """Tried: an answer store on a shared folder that does not exist (removed under it). Asserted:
    it builds and answers by itself, twice after expiry. Seen failing with ``lock`` and ``store``
    letting the folder's OSError through (the build task failed, the request with it)."""

    async def main() -> None:
        cache = AnswerCache(shared=AnswerFolder(tmp_path / "gone"))

        async def build(read_at_s: float) -> ReadyAnswer:
            return answer(b"ok", "text/plain", read_at_s=read_at_s)

        assert (await cache.get("k", build, max_age_s=60)).body == b"ok"
        assert (await cache.get("other", build, max_age_s=60)).body == b"ok"

    asyncio.run(main())
