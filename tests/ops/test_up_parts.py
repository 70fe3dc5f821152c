"""Parts of `mta up` on their own: log rotation, restarts with back-off and a crash-loop limit,
and the demo's subscriptions ending with the demo. Real processes, a real SQLite database."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from sqlalchemy import select

from mta.demo import DEMO_USER_ID, end_demo, seed_demo_subscriptions
from mta.logs import LogRotation
from mta.supervisor import RestartPolicy, Supervisor
from replica.scenarios import resolve_scenario
from shared.db.database import open_database
from shared.db.models import (
    Notification,
    NotificationKind,
    NotificationStatus,
    Subscription,
    SubscriptionState,
    User,
)
from shared.events import FarmEvent
from shared.settings import load_settings
from tests.support.farm import wait_until

CHATTY = (
    "import time\nn = 0\nwhile True:\n    n += 1\n"
    "    print(f'line {n:08d} ' + 'x' * 90, flush=True)\n    time.sleep(0.0005)\n"
)


def test_role_logs_rotate_by_size_and_keep_n_copies(tmp_path: Path) -> None:
    """Injected: a role that writes ~100 bytes every half millisecond, under a supervisor with
    rotation at 20 kB and 2 copies. Asserted: after some rounds of care the log and its copies
    stay near the limit, ``.1`` and ``.2`` exist and ``.3`` does not, the role keeps writing into
    the live file (its newest line is newer than every copy's), and all are private (0600).
    (Tried: with ``rotation`` unset the log grows past 200 kB and this fails.)"""
    supervisor = Supervisor(
        tmp_path / "logs", rotation=LogRotation(max_bytes=20_000, backups=2), say=lambda _: None
    )
    child = supervisor.spawn("chatty", [sys.executable, "-c", CHATTY], dict(os.environ))
    log = child.log_path
    try:
        for _ in range(12):
            wait_until(
                lambda: log.exists() and log.stat().st_size > 20_000, 30, "the log to outgrow the limit"
            )
            supervisor.tend({})
        assert log.with_name("chatty.log.1").exists() and log.with_name("chatty.log.2").exists()
        assert not log.with_name("chatty.log.3").exists()
        wait_until(lambda: "line " in log.read_text(errors="replace"), 10, "the role to write again")
    finally:
        supervisor.stop_all()
    sizes = [p.stat().st_size for p in (log, log.with_name("chatty.log.1"), log.with_name("chatty.log.2"))]
    assert max(sizes[1:]) < 200_000 and sum(sizes) < 600_000, sizes

    def last_number(path: Path) -> int:
        numbers = [
            int(line[5:13])
            for line in path.read_text(errors="replace").splitlines()
            if line.startswith("line ")
        ]
        return max(numbers)

    assert (
        last_number(log)
        > last_number(log.with_name("chatty.log.1"))
        > last_number(log.with_name("chatty.log.2"))
    )
    for path in (log, log.with_name("chatty.log.1"), log.with_name("chatty.log.2")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_a_dying_role_is_restarted_with_backoff_and_given_up_in_a_crash_loop(tmp_path: Path) -> None:
    """Injected: a supervised role that exits 3 at once, every time. Asserted: it is started again
    after 0.1 s, 0.2 s (doubling), each said on the console; the third exit within the window
    gives it up ("given up"), recorded as a ``role_given_up`` event, and it is not started again.
    (Tried: without the crash-loop limit it restarts forever and the last assertion fails.)"""
    lines: list[str] = []
    events: list[FarmEvent] = []
    supervisor = Supervisor(
        tmp_path / "logs",
        policy=RestartPolicy(backoff_base_s=0.1, backoff_max_s=1.0, crash_window_s=60, crash_limit=3),
        say=lines.append,
        record=events.append,
    )
    child = supervisor.spawn("flaky", [sys.executable, "-c", "import sys; sys.exit(3)"], dict(os.environ))
    child.supervised = True
    try:

        def given_up() -> bool:
            supervisor.tend({})
            return child.given_up

        wait_until(given_up, 30, "the role to be given up", interval_s=0.05)
        for _ in range(3):  # a given-up role stays down: more rounds of care start nothing
            supervisor.tend({})
    finally:
        supervisor.stop_all()
    said = "\n".join(lines)
    assert "flaky      exited with code 3; restarting in 0 s" in said
    assert said.count("restarted (restart") == 2
    assert "given up" in lines[-1]
    kinds = [e.kind for e in events]
    assert kinds[-1] == "role_given_up" and kinds.count("role_given_up") == 1
    assert child.restarts == 2


def test_the_demo_users_subscriptions_end_with_the_demo(tmp_path: Path) -> None:
    """Arranged: the demo seeds its subscriptions (no operator chat: the placeholder user), one of
    them has an alert still pending, and an older demo left a subscription of the placeholder
    user that no demo file names. Injected: the demo ends (as `mta up` does when it stops, and
    at every start, also without --replica). Asserted: every one of those subscriptions is done,
    the pending alert is dead ("the demo ended") so no later run sends it, a real person's
    subscription is untouched, and a second end changes nothing. (Tried: without ``end_demo``
    the subscriptions stay active.)"""
    settings = load_settings(data_dir=tmp_path, env="test")
    db = open_database(settings, migrate=True)
    try:
        with db.transaction() as session:
            session.add_all([User(id=DEMO_USER_ID, language="de"), User(id=777, language="de")])
            session.flush()
            session.add(Subscription(user_id=DEMO_USER_ID, service_id=1063475, office_ids=[102522]))
            session.add(Subscription(user_id=777, service_id=1063475, office_ids=[102522]))
        added = seed_demo_subscriptions(settings, resolve_scenario("demo"))
        assert added > 0 and (tmp_path / "demo.json").exists()
        with db.transaction() as session:
            seeded = session.scalars(select(Subscription).order_by(Subscription.id.desc())).first()
            assert seeded is not None
            session.add(
                Notification(
                    subscription_id=seeded.id,
                    user_id=DEMO_USER_ID,
                    chat_id=DEMO_USER_ID,
                    kind=NotificationKind.SLOT,
                )
            )
        ended, dropped = end_demo(settings)
        assert (ended, dropped) == (added + 1, 1)
        assert not (tmp_path / "demo.json").exists()
        with db.transaction() as session:
            states: dict[int, set[SubscriptionState]] = {}
            for sub in session.scalars(select(Subscription)):
                states.setdefault(sub.user_id, set()).add(sub.state)
            note = session.scalars(select(Notification)).one()
            assert states == {DEMO_USER_ID: {SubscriptionState.DONE}, 777: {SubscriptionState.ACTIVE}}
            assert note.status == NotificationStatus.DEAD and note.last_error == "the demo ended"
        assert end_demo(settings) == (0, 0)
    finally:
        db.close()


def test_a_wedged_worker_is_replaced(tmp_path: Path, redis_url: str) -> None:
    """Injected: a "worker" process (a sleeping Python) whose heartbeat in Redis names its pid and
    a broker that holds a check, with a count of finished checks that never moves. Asserted: with a
    stall limit of 1 s, the supervisor's care replaces it ("wedged … holding a check"), the new
    process runs, and a second worker that beats without holding anything is left alone.
    (Tried: with the probe's progress test removed nothing is replaced and this times out.)"""
    import json
    import time

    import redis

    from mta.probes import WorkerStall

    client = redis.Redis.from_url(redis_url)
    lines: list[str] = []
    supervisor = Supervisor(tmp_path / "logs", say=lines.append, policy=RestartPolicy(backoff_base_s=0.1))
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
    wedged = supervisor.spawn("worker", sleeper, dict(os.environ))
    idle = supervisor.spawn("idle", sleeper, dict(os.environ))
    wedged.supervised = idle.supervised = True
    first_pid = wedged.process.pid

    def beat(child_pid: int, name: str, broker: str) -> None:
        body = {"at": time.time(), "pid": child_pid, "broker_id": broker, "checks_done": 7}
        client.set(f"mta:heartbeat:worker:{name}", json.dumps(body), ex=60)

    client.sadd("mta:__acks__.wedged-broker.checks", "a-message")
    stall = WorkerStall(redis_url, stall_s=1.0)
    probe = {"worker": stall, "idle": stall}
    try:

        def replaced() -> bool:
            beat(first_pid, "wedged", "wedged-broker")
            beat(idle.process.pid, "idle", "idle-broker")
            supervisor.tend({}, probe)
            return wedged.restarts == 1

        wait_until(replaced, 30, "the wedged worker to be replaced", interval_s=0.1)
        assert wedged.process.pid != first_pid and wedged.running
        assert idle.restarts == 0 and idle.running
        assert any("wedged (holding a check, none finished for" in line for line in lines), lines
    finally:
        supervisor.stop_all()
        client.delete(
            "mta:__acks__.wedged-broker.checks", "mta:heartbeat:worker:wedged", "mta:heartbeat:worker:idle"
        )
