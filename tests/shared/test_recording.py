"""Recording checks: slot episodes, alert fan-out by filter, idempotence, failures, targets."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from shared.db.engine import session_scope
from shared.db.models import (
    Check,
    Notification,
    NotificationKind,
    Slot,
    Subscription,
    SubscriptionState,
    Target,
    TargetState,
    User,
)
from shared.domain import (
    CaptchaRequired,
    CheckOutcome,
    CheckTimeout,
    LayoutChanged,
    Observation,
    RateLimited,
    SiteUnavailable,
    SlotSeen,
    office_key,
)
from shared.recording import (
    FailureResult,
    RecordResult,
    find_open_slot,
    record_failure,
    record_observation,
    sync_targets,
)

from .conftest import Database

BERLIN = ZoneInfo("Europe/Berlin")
SERVICE = 1063475  # Wohnsitzanmeldung
OTHER_SERVICE = 1064121
ALL_OFFICES = (10489, 10503, 54261, 102522, 102523, 102524, 102526)  # all offering SERVICE
ORLEANS, LEONROD = 102522, 102523
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)  # Tuesday


def berlin(day: int, hour: int, minute: int = 0, month: int = 12) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=BERLIN).astimezone(UTC)


WED_10 = berlin(2, 10)  # Wednesday 2 December, 10:00 in Munich (09:00 UTC)


def add_target(
    db: Database, offices: Iterable[int] = ALL_OFFICES, *, count: int = 1, site: str = "munich"
) -> int:
    with session_scope(db.sessions) as session:
        target = Target(site=site, service_id=SERVICE, service_count=count, office_key=office_key(offices))
        session.add(target)
        session.flush()
        return target.id


_next_user = iter(range(1000, 10**6))


def add_sub(db: Database, **fields: Any) -> int:
    fields.setdefault("service_id", SERVICE)
    with session_scope(db.sessions) as session:
        user = User(id=next(_next_user))
        sub = Subscription(**fields)
        user.subscriptions.append(sub)
        session.add(user)
        session.flush()
        return sub.id


def observation(
    db: Database,
    target_id: int,
    slots: Sequence[tuple[int, datetime]],
    at: datetime = T0,
    covered_days: frozenset[date] | None = None,
) -> Observation:
    with session_scope(db.sessions) as session:
        target = session.get(Target, target_id)
        assert target is not None
        return Observation(
            site=target.site,
            service_id=target.service_id,
            service_count=target.service_count,
            office_ids=target.office_ids,
            observed_at=at,
            slots=[SlotSeen(office, SERVICE, start) for office, start in slots],
            source="test",
            covered_days=covered_days,
        )


def record(db: Database, target_id: int, obs: Observation) -> RecordResult:
    with session_scope(db.sessions) as session:
        return record_observation(session, target_id, obs, worker_id="w1", duration_ms=7)


def observe(
    db: Database,
    target_id: int,
    slots: Sequence[tuple[int, datetime]],
    at: datetime = T0,
    covered_days: frozenset[date] | None = None,
) -> RecordResult:
    return record(db, target_id, observation(db, target_id, slots, at, covered_days))


def notifications(db: Database, kind: NotificationKind = NotificationKind.SLOT) -> list[Notification]:
    with session_scope(db.sessions) as session:
        return list(
            session.scalars(select(Notification).where(Notification.kind == kind).order_by(Notification.id))
        )


def alerted_subs(db: Database, kind: NotificationKind = NotificationKind.SLOT) -> set[int]:
    return {n.subscription_id for n in notifications(db, kind) if n.subscription_id is not None}


def count(db: Database, model: type) -> int:
    with session_scope(db.sessions) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


# --- filters ---------------------------------------------------------------------------------------


def test_new_slot_alerts_exactly_the_matching_subscriptions(db: Database) -> None:
    target = add_target(db)
    match = {
        "any office": add_sub(db),
        "its office": add_sub(db, office_ids=[ORLEANS]),
        "offices incl. it": add_sub(db, office_ids=[LEONROD, ORLEANS]),
        "date window incl.": add_sub(db, date_from=date(2026, 12, 1), date_to=date(2026, 12, 2)),
        "date_from that day": add_sub(db, date_from=date(2026, 12, 2)),
        "weekday Wednesday": add_sub(db, weekdays=[2]),
        "weekdays incl. Wed": add_sub(db, weekdays=[0, 2, 4]),
        "time window incl. end": add_sub(db, time_from=time(9, 0), time_to=time(10, 0)),
        "time_from that minute": add_sub(db, time_from=time(10, 0)),
        "all filters": add_sub(
            db,
            office_ids=[ORLEANS],
            date_from=date(2026, 12, 2),
            date_to=date(2026, 12, 31),
            weekdays=[2],
            time_from=time(8, 0),
            time_to=time(12, 0),
            autobook=True,
        ),
    }
    no_match = {
        "other office": add_sub(db, office_ids=[LEONROD]),
        "window starts later": add_sub(db, date_from=date(2026, 12, 3)),
        "window ended": add_sub(db, date_to=date(2026, 12, 1)),
        "Mon/Tue only": add_sub(db, weekdays=[0, 1]),
        "afternoon only": add_sub(db, time_from=time(10, 30), time_to=time(17, 0)),
        "ends 09:59 (UTC hour would match)": add_sub(db, time_from=time(8, 0), time_to=time(9, 59)),
        "two people": add_sub(db, service_count=2),
        "other service": add_sub(db, service_id=OTHER_SERVICE),
        "paused": add_sub(db, state=SubscriptionState.PAUSED),
        "done": add_sub(db, state=SubscriptionState.DONE),
        "other site": add_sub(db, site="elsewhere"),
    }

    result = observe(db, target, [(ORLEANS, WED_10)])

    assert len(result.new_slot_ids) == 1
    assert alerted_subs(db) == set(match.values()), {
        name for name, sub in {**match, **no_match}.items() if (sub in alerted_subs(db)) != (name in match)
    }
    assert result.notifications_inserted == len(match)
    rows = notifications(db)
    assert all(n.slot_id == result.new_slot_ids[0] and n.episode == 1 for n in rows)
    assert all(n.chat_id == n.user_id and n.status == "pending" for n in rows)
    payload = next(n.payload for n in rows if n.subscription_id == match["all filters"])
    assert payload["autobook"] is True
    assert payload["office_id"] == ORLEANS and payload["service_id"] == SERVICE
    assert datetime.fromisoformat(payload["start"]) == WED_10


def test_a_person_with_overlapping_subscriptions_is_alerted_once_per_slot(db: Database) -> None:
    """One person with three subscriptions that all fit the slot (any office; its office; the
    same, may book) and another person with one: two alerts, the first person's on the
    subscription that may book it."""
    target = add_target(db)
    with session_scope(db.sessions) as session:
        person = User(id=next(_next_user))
        subs = [
            Subscription(service_id=SERVICE),
            Subscription(service_id=SERVICE, office_ids=[ORLEANS]),
            Subscription(service_id=SERVICE, office_ids=[ORLEANS], autobook=True),
        ]
        person.subscriptions.extend(subs)
        session.add(person)
        session.flush()
        may_book = subs[2].id
    other = add_sub(db, office_ids=[ORLEANS])

    result = observe(db, target, [(ORLEANS, WED_10)])

    assert result.notifications_inserted == 2
    assert alerted_subs(db) == {may_book, other}
    assert next(n.payload for n in notifications(db) if n.subscription_id == may_book)["autobook"] is True


def test_a_slot_still_open_is_alerted_to_a_subscription_made_after_it_appeared(db: Database) -> None:
    """A slot seen by a check; then a new subscription that fits it, and one paused during the
    first check and resumed. Asserted: the next check that still sees the slot alerts both once
    (marked late, so detection latency leaves them out), the first subscriber not again; later
    checks add nothing; the slot stays one episode."""
    target = add_target(db)
    first = add_sub(db)
    paused = add_sub(db, state=SubscriptionState.PAUSED)
    observe(db, target, [(ORLEANS, WED_10)])
    assert alerted_subs(db) == {first}
    newcomer = add_sub(db, office_ids=[ORLEANS])
    with session_scope(db.sessions) as session:
        resumed = session.get(Subscription, paused)
        assert resumed is not None
        resumed.state = SubscriptionState.ACTIVE

    result = observe(db, target, [(ORLEANS, WED_10)], at=T0 + timedelta(minutes=1))
    assert result.new_slot_ids == [] and result.notifications_inserted == 2
    assert alerted_subs(db) == {first, newcomer, paused}
    late = {n.subscription_id: n.payload.get("late") for n in notifications(db)}
    assert late == {first: None, newcomer: True, paused: True}
    again = observe(db, target, [(ORLEANS, WED_10)], at=T0 + timedelta(minutes=2))
    assert again.notifications_inserted == 0 and count(db, Slot) == 1


def test_filters_use_munich_local_time(db: Database) -> None:
    target = add_target(db)
    just_after_midnight = datetime(2026, 12, 1, 23, 30, tzinfo=UTC)  # Wed 00:30 in Munich, Tue in UTC
    munich_view = add_sub(
        db, weekdays=[2], date_from=date(2026, 12, 2), date_to=date(2026, 12, 2), time_to=time(1)
    )
    utc_weekday = add_sub(db, weekdays=[1])
    utc_date = add_sub(db, date_to=date(2026, 12, 1))
    summer = add_sub(db, time_from=time(8, 0), time_to=time(8, 0))  # 06:00 UTC in July (CEST)

    observe(
        db, target, [(ORLEANS, just_after_midnight), (LEONROD, berlin(1, 8, month=7) + timedelta(days=365))]
    )

    assert alerted_subs(db) == {munich_view, summer}
    assert utc_weekday not in alerted_subs(db) and utc_date not in alerted_subs(db)


def test_slot_for_another_count_is_another_slot(db: Database) -> None:
    """A 2-person target seeing nothing must not end the 1-person slot episode (and vice versa)."""
    one, two = add_target(db, count=1), add_target(db, count=2)
    single, pair = add_sub(db), add_sub(db, service_count=2)
    observe(db, one, [(ORLEANS, WED_10)])
    gone = observe(db, two, [], at=T0 + timedelta(seconds=5))
    assert gone.gone_slot_ids == []
    assert alerted_subs(db) == {single}
    observe(db, two, [(ORLEANS, WED_10)], at=T0 + timedelta(seconds=10))
    assert alerted_subs(db) == {single, pair}


# --- episodes ----------------------------------------------------------------------------------------


def test_slot_lifecycle_new_still_gone_back(db: Database) -> None:
    target = add_target(db)
    early_bird = add_sub(db)
    a, b = (ORLEANS, WED_10), (LEONROD, berlin(3, 14, 15))

    first = observe(db, target, [a, b])
    assert len(first.new_slot_ids) == 2 and first.gone_slot_ids == [] and first.notifications_inserted == 2

    # the same slots again, later: nothing new, last_seen moves
    obs = observation(db, target, [b, a], at=T0 + timedelta(minutes=1))
    again = record(db, target, obs)
    assert (again.new_slot_ids, again.gone_slot_ids, again.notifications_inserted) == ([], [], 0)
    # the very same observation delivered twice: recorded once
    assert record(db, target, obs).duplicate is True
    assert count(db, Check) == 2
    assert count(db, Slot) == 2
    assert len(notifications(db)) == 2
    with session_scope(db.sessions) as session:
        slot_a = session.scalars(select(Slot).where(Slot.office_id == ORLEANS)).one()
        assert slot_a.first_seen_at == T0 and slot_a.last_seen_at == T0 + timedelta(minutes=1)
        slot_a_id = slot_a.id

    late_comer = add_sub(db)  # subscribes after the alert: gets no "gone" for that episode

    # a vanishes
    gone = observe(db, target, [b], at=T0 + timedelta(minutes=2))
    assert gone.gone_slot_ids == [slot_a_id] and gone.new_slot_ids == []
    gone_rows = notifications(db, NotificationKind.GONE)
    assert [(n.subscription_id, n.slot_id, n.episode) for n in gone_rows] == [(early_bird, slot_a_id, 1)]
    original = next(n for n in notifications(db) if n.slot_id == slot_a_id)
    assert gone_rows[0].payload["alert_notification_id"] == original.id
    assert gone_rows[0].chat_id == original.chat_id
    # still gone: nothing more
    quiet = observe(db, target, [b], at=T0 + timedelta(minutes=3))
    assert (quiet.new_slot_ids, quiet.gone_slot_ids, quiet.notifications_inserted) == ([], [], 0)

    # a is back: a new episode, alerted again (to everyone who matches now)
    back = observe(db, target, [a, b], at=T0 + timedelta(minutes=4))
    assert len(back.new_slot_ids) == 1 and back.new_slot_ids != [slot_a_id]
    with session_scope(db.sessions) as session:
        episodes = session.execute(
            select(Slot.episode, Slot.gone_at).where(Slot.office_id == ORLEANS).order_by(Slot.episode)
        ).all()
    assert episodes == [(1, T0 + timedelta(minutes=2)), (2, None)]
    with session_scope(db.sessions) as session:
        current = find_open_slot(
            session, site="munich", office_id=ORLEANS, service_id=SERVICE, start_at=WED_10
        )
        assert current is not None and current.episode == 2 and current.id == back.new_slot_ids[0]
    second_alerts = [n for n in notifications(db) if n.slot_id == back.new_slot_ids[0]]
    assert {(n.subscription_id, n.episode) for n in second_alerts} == {(early_bird, 2), (late_comer, 2)}
    assert back.notifications_inserted == 2


def test_only_covered_days_can_end_a_slot(db: Database) -> None:
    target = add_target(db)
    day2, day3 = (ORLEANS, WED_10), (ORLEANS, berlin(3, 9))
    observe(db, target, [day2, day3])
    # the site loaded slot times for 2 December only, which is now empty
    result = observe(
        db, target, [], at=T0 + timedelta(minutes=1), covered_days=frozenset({date(2026, 12, 2)})
    )
    with session_scope(db.sessions) as session:
        open_starts = session.scalars(select(Slot.start_at).where(Slot.gone_at.is_(None))).all()
    assert len(result.gone_slot_ids) == 1
    assert open_starts == [day3[1]]


def test_slots_in_the_past_are_gone(db: Database) -> None:
    target = add_target(db)
    soon = T0 + timedelta(minutes=30)
    observe(db, target, [(ORLEANS, soon)])
    later = observe(db, target, [], at=soon + timedelta(minutes=1), covered_days=frozenset())
    assert len(later.gone_slot_ids) == 1


def test_slots_outside_the_target_are_ignored(db: Database) -> None:
    target = add_target(db, offices=[ORLEANS])
    add_sub(db)
    result = observe(db, target, [(LEONROD, WED_10)])
    assert result.new_slot_ids == [] and count(db, Slot) == 0
    with session_scope(db.sessions) as session:
        assert session.scalars(select(Check.outcome)).one() == CheckOutcome.NO_SLOTS


def test_observation_of_another_target_is_refused(db: Database) -> None:
    target = add_target(db, offices=[ORLEANS])
    other = add_target(db, offices=[LEONROD])
    obs = observation(db, other, [(LEONROD, WED_10)])
    with pytest.raises(ValueError, match="does not belong"), session_scope(db.sessions) as session:
        record_observation(session, target, obs, worker_id="w", duration_ms=1)


def test_concurrent_recorders_open_one_episode_and_alert_once(db: Database) -> None:
    """Four workers see the same new slot through four overlapping targets at the same moment."""
    targets = [
        add_target(db, offices=offices)
        for offices in ([ORLEANS], [ORLEANS, LEONROD], ALL_OFFICES, [ORLEANS, 54261])
    ]
    subs = {add_sub(db), add_sub(db, office_ids=[ORLEANS])}
    observations = [observation(db, t, [(ORLEANS, WED_10)]) for t in targets]
    barrier = threading.Barrier(len(targets))
    results: list[RecordResult] = []
    errors: list[BaseException] = []

    def run(target_id: int, obs: Observation) -> None:
        try:
            barrier.wait(timeout=10)
            results.append(record(db, target_id, obs))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t, o)) for t, o in zip(targets, observations, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert count(db, Slot) == 1
    assert sum(len(r.new_slot_ids) for r in results) == 1
    assert sorted(n.subscription_id or 0 for n in notifications(db)) == sorted(subs)
    assert sum(r.notifications_inserted for r in results) == 2


# --- failures ----------------------------------------------------------------------------------------


def fail(
    db: Database,
    target_id: int,
    failure: Exception,
    at: datetime,
    *,
    alert_after: int = 3,
    chats: Sequence[int] = (-1001,),
) -> FailureResult:
    assert isinstance(failure, RateLimited | SiteUnavailable | CaptchaRequired | LayoutChanged | CheckTimeout)
    with session_scope(db.sessions) as session:
        return record_failure(
            session,
            target_id,
            failure,
            worker_id="w1",
            duration_ms=1200,
            layout_alert_after=alert_after,
            operator_chat_ids=list(chats),
            now=at,
        )


def get_target(db: Database, target_id: int) -> Target:
    with session_scope(db.sessions) as session:
        target = session.get(Target, target_id)
        assert target is not None
        return target


def test_rate_limit_backs_off_until_the_sites_reset(db: Database) -> None:
    target = add_target(db)
    result = fail(db, target, RateLimited("429", reset_at=T0 + timedelta(seconds=45)), T0)
    assert result.state == TargetState.BACKING_OFF
    assert result.backoff_until == T0 + timedelta(seconds=45)
    no_reset = fail(db, target, RateLimited(), T0 + timedelta(minutes=5))
    assert no_reset.backoff_until == T0 + timedelta(minutes=6)
    with session_scope(db.sessions) as session:
        check = session.scalars(select(Check).order_by(Check.id)).first()
        assert check is not None
        assert check.outcome == CheckOutcome.RATE_LIMITED and check.duration_ms == 1200
        assert check.started_at == T0 - timedelta(milliseconds=1200)
        assert check.error is not None and "RateLimited" in check.error


def test_site_errors_back_off_exponentially_and_success_resets(db: Database) -> None:
    target = add_target(db)
    waits = []
    for n in range(4):
        at = T0 + timedelta(hours=n)
        result = fail(db, target, SiteUnavailable("503 maintenance", status_code=503), at)
        assert result.backoff_until is not None
        waits.append(result.backoff_until - at)
    assert waits == [timedelta(seconds=s) for s in (30, 60, 120, 240)]
    timeout = fail(db, target, CheckTimeout("took too long"), T0 + timedelta(hours=5))
    assert timeout.backoff_until == T0 + timedelta(hours=5, seconds=480)
    assert get_target(db, target).consecutive_failures == 5

    observe(db, target, [], at=T0 + timedelta(hours=6))
    after = get_target(db, target)
    assert (after.state, after.consecutive_failures, after.backoff_until, after.last_error) == (
        TargetState.OK,
        0,
        None,
        None,
    )
    assert after.last_success_at == T0 + timedelta(hours=6)


def test_captcha_trouble_marks_the_target(db: Database) -> None:
    target = add_target(db)
    result = fail(db, target, CaptchaRequired("captchaInvalid"), T0)
    assert result.state == TargetState.CAPTCHA and result.backoff_until is None


def test_layout_changes_raise_exactly_one_operator_alert_per_site(db: Database) -> None:
    first, second = add_target(db), add_target(db, offices=[ORLEANS])
    at = iter(T0 + timedelta(minutes=i) for i in range(100))

    def operator_alerts() -> list[Notification]:
        return notifications(db, NotificationKind.OPERATOR)

    assert fail(db, first, LayoutChanged("no #calendar"), next(at)).operator_alerts_inserted == 0
    assert fail(db, first, LayoutChanged("no #calendar"), next(at)).operator_alerts_inserted == 0
    assert operator_alerts() == []
    third = fail(db, first, LayoutChanged("no #calendar"), next(at))
    assert third.state == TargetState.CHANGED and third.operator_alerts_inserted == 1
    for _ in range(5):  # trouble goes on, on this target and on another of the same site
        fail(db, first, LayoutChanged("no #calendar"), next(at))
        fail(db, second, LayoutChanged("no #calendar"), next(at))
    alerts = operator_alerts()
    assert len(alerts) == 1
    assert alerts[0].chat_id == -1001 and alerts[0].subscription_id is None
    assert alerts[0].text is not None and "munich" in alerts[0].text
    assert get_target(db, first).consecutive_layout_changes == 8

    # fixed, then broken again: a new episode, a new alert
    observe(db, first, [], at=next(at))
    assert get_target(db, first).consecutive_layout_changes == 0
    for _ in range(3):
        fail(db, first, LayoutChanged("new markup"), next(at))
    assert len(operator_alerts()) == 2


def test_layout_alert_without_operator_chats_goes_to_the_console(db: Database) -> None:
    target = add_target(db)
    results = [
        fail(db, target, LayoutChanged(), T0 + timedelta(minutes=i), alert_after=1, chats=())
        for i in range(3)
    ]
    assert [r.operator_alerts_inserted for r in results] == [1, 0, 0]
    assert [n.chat_id for n in notifications(db, NotificationKind.OPERATOR)] == [None]


# --- targets -----------------------------------------------------------------------------------------


def test_sync_targets_coalesces_subscriptions(db: Database) -> None:
    shapes: list[dict[str, Any]] = [
        {},  # any office ...
        {"office_ids": list(ALL_OFFICES)},  # ... is the same target as naming every office
        {"office_ids": [ORLEANS], "weekdays": [0]},  # filters don't split targets
        {"office_ids": [ORLEANS, 999_999]},  # an office not offering the service is dropped
        {"service_count": 2, "date_from": date(2026, 12, 1)},
    ]
    for i in range(100):
        add_sub(db, **shapes[i % len(shapes)])
    add_sub(db, service_id=OTHER_SERVICE, state=SubscriptionState.PAUSED)  # paused: no target

    with session_scope(db.sessions) as session:
        targets = sync_targets(session)
        keys = {(t.service_id, t.service_count, t.office_key) for t in targets}
    assert keys == {
        (SERVICE, 1, office_key(ALL_OFFICES)),
        (SERVICE, 1, str(ORLEANS)),
        (SERVICE, 2, office_key(ALL_OFFICES)),
    }
    pair_target = next(t.id for t in targets if t.service_count == 2)

    # nobody wants the 2-person target any more: kept, but inactive; and back when wanted again
    with session_scope(db.sessions) as session:
        for sub in session.scalars(select(Subscription).where(Subscription.service_count == 2)):
            sub.state = SubscriptionState.PAUSED
    with session_scope(db.sessions) as session:
        assert len(sync_targets(session)) == 2
        assert session.get(Target, pair_target).active is False  # type: ignore[union-attr]
    with session_scope(db.sessions) as session:
        assert len(sync_targets(session)) == 2  # idempotent
    add_sub(db, service_count=2)
    with session_scope(db.sessions) as session:
        again = sync_targets(session)
    assert pair_target in {t.id for t in again} and len(again) == 3
    assert count(db, Target) == 3
