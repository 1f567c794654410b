"""The dispatcher's bulk path against its one-by-one path (book_session() per occurrence,
the manual booking's own function): on the same occurrences, the same outcomes, the same
bookings, credit reservations, emails and notifications. And the batches the bulk path
hands to the one-by-one path: those whose occurrences clash, and those it fails on."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import httpx
import psycopg
from psycopg_pool import AsyncConnectionPool

from melhor_saude.context import SERVICE
from melhor_saude.db import DatabaseUrls, make_pool, transaction
from melhor_saude.recurring import dispatcher

from ..factories import Factory, Person
from ..helpers import book, insert_booking, slot

DATES = (1, 8, 15)
LISBON = "Europe/Lisbon"


def _day(days: int) -> date:
    return datetime.now(UTC).date() + timedelta(days=days)


def _lisbon(days: int, hour: int, minute: int) -> datetime:
    return datetime.combine(_day(days), time(hour, minute), ZoneInfo(LISBON))


def _series(
    admin: psycopg.Connection[Any],
    user: Person,
    specialist: Person,
    *,
    local_time: str = "10:00",
    timezone: str = "UTC",
    funding: str = "company_quota",
    purchase: str | None = None,
    paused: bool = False,
    minutes: int = 60,
) -> str:
    row = admin.execute(
        "INSERT INTO recurring_bookings (user_id, specialist_id, frequency, start_date,"
        " local_time, timezone, duration_minutes, pillar, mode, funding, package_purchase_id,"
        " next_booking_date, paused_at)"
        " VALUES (%s, %s, 'weekly', %s, %s, %s, %s, 'saude_mental', 'virtual', %s, %s, %s,"
        "         CASE WHEN %s THEN now() END) RETURNING id",
        (user.id, specialist.id, _day(1), local_time, timezone, minutes, funding, purchase,
         _day(1), paused),
    ).fetchone()  # fmt: skip
    assert row
    return str(row[0])


async def _describe(
    conn: Any, batch: list[tuple[str, date]], one_by_one: bool, seen: dict[str, Any]
) -> None:
    rows = await (
        await conn.execute(
            "SELECT series_id, occurrence_date, outcome, reason, booking_id"
            " FROM dispatch_recurring(%s, %s, '{}', '{}', '{}', 'MZN', %s)",
            ([s for s, _ in batch], [d for _, d in batch], one_by_one),
        )
    ).fetchall()
    seen["outcomes"] = [
        (str(r["series_id"]), r["occurrence_date"], r["outcome"], r["reason"]) for r in rows
    ]
    ids = [r["booking_id"] for r in rows if r["booking_id"]]
    # Bookings are named by their series and date: their ids differ between runs.
    for name, sql in WRITTEN.items():
        seen[name] = [
            tuple(r.values()) for r in await (await conn.execute(sql, {"ids": ids})).fetchall()
        ]


async def _dispatch(
    pool: AsyncConnectionPool, batch: list[tuple[str, date]], *, one_by_one: bool
) -> dict[str, Any]:
    """Dispatch `batch` one way and describe everything it wrote; then roll it all back."""

    class _Undo(Exception):
        pass

    seen: dict[str, Any] = {"notices": []}

    def heard(notice: psycopg.errors.Diagnostic) -> None:
        seen["notices"].append(notice.message_primary)

    try:
        async with transaction(pool, SERVICE) as conn:
            conn.add_notice_handler(heard)
            try:
                await _describe(conn, batch, one_by_one, seen)
            finally:
                conn.remove_notice_handler(heard)
            raise _Undo
    except _Undo:
        pass
    return seen


WRITTEN = {
    "bookings": "SELECT recurring_series_id, occurrence_date, user_id, specialist_id,"
    " company_id, pillar, session_type_id, starts_at, ends_at, blocked_until, buffer_minutes,"
    " mode, status, price, currency, funding, package_purchase_id, created_by,"
    " cancellation_notice_hours FROM bookings WHERE id = ANY(%(ids)s)"
    " ORDER BY recurring_series_id, occurrence_date",
    "history": "SELECT b.recurring_series_id, b.occurrence_date, h.old_status, h.new_status,"
    " h.new_starts_at, h.changed_by, h.reason FROM booking_status_history h"
    " JOIN bookings b ON b.id = h.booking_id WHERE h.booking_id = ANY(%(ids)s) ORDER BY 1, 2",
    "ledger": "SELECT b.recurring_series_id, b.occurrence_date, l.user_id, l.company_id,"
    " l.package_purchase_id, l.entry, l.sessions, l.created_by FROM session_credit_ledger l"
    " JOIN bookings b ON b.id = l.booking_id WHERE l.booking_id = ANY(%(ids)s) ORDER BY 1, 2",
    "usage": "SELECT company_id, user_id, held FROM session_credit_member_usage"
    " WHERE user_id IN (SELECT user_id FROM bookings WHERE id = ANY(%(ids)s)) ORDER BY 1, 2",
    "pools": "SELECT company_id, held FROM session_credit_company_usage"
    " WHERE company_id IN (SELECT company_id FROM bookings WHERE id = ANY(%(ids)s))"
    " ORDER BY 1",
    "purchases": "SELECT id, status FROM package_purchases"
    " WHERE id IN (SELECT package_purchase_id FROM bookings WHERE id = ANY(%(ids)s))"
    " ORDER BY 1",
    "emails": "SELECT user_id, to_address, template, params FROM email_outbox"
    " WHERE created_at = now() ORDER BY user_id, template, params::text",
    "notifications": "SELECT user_id, event, title, body, data FROM notifications"
    " WHERE created_at = now() ORDER BY user_id, body",
    "occurrences": "SELECT series_id, occurrence_date, starts_at, outcome, reason,"
    " booking_id IS NOT NULL FROM recurring_occurrences WHERE created_at = now()"
    " ORDER BY 1, 2",
}


@contextmanager
def _admin(database: DatabaseUrls) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database.admin, autocommit=True) as conn:
        yield conn


async def _purchase(client: httpx.AsyncClient, user: Person, specialist: Person, days: int) -> str:
    body = {"name": "Pacote", "session_count": 4, "price": "400", "valid_for_days": days}
    r = await client.post("/v1/packages", json=body, headers=specialist.headers)
    assert r.status_code == 201, r.text
    r = await client.post(
        f"/v1/packages/{r.json()['id']}/purchases",
        json={"payment_reference": f"REF-{user.id}"},
        headers=user.headers,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_bulk_and_one_by_one_dispatch_write_the_same(
    client, factory: Factory, pool, database: DatabaseUrls
):
    company = await factory.company()
    small_pool = await factory.company(session_pool=2)
    closed = await factory.company()
    lisbon = await factory.specialist(
        timezone=LISBON, duration=50, buffer=10,
        hours=[(d, "09:00", "17:00") for d in range(1, 8)],
    )  # fmt: skip
    on_vacation = await factory.specialist()
    busy = await factory.specialist()
    leaving = await factory.specialist()
    packaged = await factory.specialist()
    plain = await factory.specialist()

    async def employee(allocation: int = 10, of: str = company) -> Person:
        return await factory.person("user", company_id=of, allocation=allocation)

    with _admin(database) as admin:
        self_payer = await factory.person("user")
        gone = await employee()
        buyer = await factory.person("user")
        purchase = await _purchase(client, buyer, packaged, days=10)
        # Of four sessions, two already booked; another purchase revoked.
        frugal, spender = await factory.person("user"), await factory.person("user")
        half_used = await _purchase(client, frugal, packaged, days=60)
        for day in (20, 21):
            r = await book(client, frugal, packaged, slot(day, 9), package_purchase_id=half_used)
            assert r.status_code == 201, r.text
        revoked = await _purchase(client, spender, packaged, days=60)
        quiet = await employee()
        admin.execute(
            "INSERT INTO notification_preferences (user_id, event, channel, enabled)"
            " VALUES (%s, 'recurring_occurrence_created', 'email', false)",
            (quiet.id,),
        )
        admin.execute("UPDATE package_purchases SET status = 'revoked' WHERE id = %s", (revoked,))
        series = [
            # 0: all booked; 1: the third has no credits left
            _series(admin, await employee(), plain),
            _series(admin, await employee(allocation=2), plain, local_time="12:00"),
            # 2: on the grid of 50 + 10 minutes from 09:00, day 8's buffer taken; 3: off it
            _series(admin, await employee(), lisbon, timezone=LISBON, minutes=50),
            _series(admin, await employee(), lisbon, timezone=LISBON, minutes=50,
                    local_time="12:30"),
            # 4: day 8 on vacation; 5: day 15 taken; 6: a company pool of 2
            _series(admin, await employee(), on_vacation),
            _series(admin, await employee(), busy),
            _series(admin, await employee(of=small_pool), busy, local_time="14:00"),
            # 7: company deactivated; 8: self-paid, at the rate in force
            _series(admin, await employee(of=closed), plain, local_time="16:00"),
            _series(admin, self_payer, plain, local_time="18:00", funding="self_pay"),
            # 9: specialist deactivated; 10: client deactivated
            _series(admin, await employee(), leaving),
            _series(admin, gone, busy, local_time="20:00"),
            # 11: a package that expires before day 15; 12: paused
            _series(admin, buyer, packaged, funding="package", purchase=purchase),
            _series(admin, await employee(), plain, local_time="20:00", paused=True),
            # 13: two package sessions left; 14: a revoked purchase
            _series(admin, frugal, packaged, local_time="12:00", funding="package",
                    purchase=half_used),
            _series(admin, spender, packaged, local_time="14:00", funding="package",
                    purchase=revoked),
            # 15: all booked, and no email: its client turned them off
            _series(admin, quiet, plain, local_time="08:00"),
        ]  # fmt: skip
        r = await client.post(
            f"/v1/specialists/{on_vacation.id}/exceptions",
            headers=on_vacation.headers,
            json={"start_date": _day(8).isoformat(), "reason": "vacation"},
        )
        assert r.status_code == 201, r.text
        other = await factory.person("user")
        assert (await book(client, other, busy, slot(15, 10))).status_code == 201
        async with transaction(pool, SERVICE) as conn:  # in the buffer after day 8's 10:00
            await insert_booking(conn, other.id, lisbon.id, _lisbon(8, 10, 55))
        admin.execute("UPDATE companies SET is_active = false WHERE id = %s", (closed,))
        admin.execute("UPDATE specialists SET is_active = false WHERE id = %s", (leaving.id,))
        admin.execute("UPDATE users SET is_active = false WHERE id = %s", (gone.id,))
        admin.execute(
            "INSERT INTO specialist_rates (specialist_id, amount, currency, effective_from)"
            " VALUES (%s, 1500, 'MZN', current_date - 1)",
            (plain.id,),
        )
    batch = [(s, _day(d)) for s in series for d in DATES]

    bulk = await _dispatch(pool, batch, one_by_one=False)
    single = await _dispatch(pool, batch, one_by_one=True)

    assert bulk.pop("notices") == []  # the bulk path did it all
    assert single.pop("notices") == []
    assert bulk == single
    reasons = {(s, d): (o, why) for s, d, o, why in bulk["outcomes"]}
    assert [reasons[(series[0], _day(d))] for d in DATES] == [("booked", None)] * 3
    assert reasons[(series[1], _day(15))] == ("skipped", "NO_CREDITS_LEFT")
    assert [reasons[(series[2], _day(d))] for d in DATES] == [
        ("booked", None), ("skipped", "SLOT_TAKEN"), ("booked", None)
    ]  # fmt: skip
    assert reasons[(series[3], _day(1))] == ("skipped", "OUTSIDE_AVAILABILITY")
    assert reasons[(series[4], _day(8))] == ("skipped", "OUTSIDE_AVAILABILITY")
    assert reasons[(series[5], _day(15))] == ("skipped", "SLOT_TAKEN")
    assert reasons[(series[6], _day(15))] == ("skipped", "NO_CREDITS_LEFT")
    assert reasons[(series[7], _day(1))] == ("skipped", "COMPANY_INACTIVE")
    assert reasons[(series[8], _day(1))] == ("booked", None)
    assert reasons[(series[9], _day(1))] == ("skipped", "SPECIALIST_INACTIVE")
    assert reasons[(series[10], _day(1))] == ("skipped", "USER_INACTIVE")
    assert [reasons[(series[11], _day(d))] for d in DATES] == [
        ("booked", None), ("booked", None), ("skipped", "PACKAGE_EXPIRED")
    ]  # fmt: skip
    assert reasons[(series[12], _day(1))] == ("skipped", "PAUSED")
    assert [reasons[(series[13], _day(d))] for d in DATES] == [
        ("booked", None), ("booked", None), ("skipped", "NO_CREDITS_LEFT")
    ]  # fmt: skip
    assert reasons[(series[14], _day(1))] == ("skipped", "PACKAGE_NOT_APPLICABLE")
    assert [reasons[(series[15], _day(d))] for d in DATES] == [("booked", None)] * 3
    booked = sum(1 for *_, o, _ in bulk["outcomes"] if o == "booked")
    assert len(bulk["bookings"]) == len(bulk["history"]) == booked == 23
    assert len(bulk["ledger"]) == booked - 3  # the self-paid sessions reserve nothing
    skipped = sum(1 for *_, o, why in bulk["outcomes"] if o == "skipped" and why != "PAUSED")
    assert len(bulk["notifications"]) == skipped
    assert len(bulk["emails"]) == booked - 3 + skipped  # none to the client who said no
    assert not [e for e in bulk["emails"] if str(e[0]) == quiet.id]


async def test_an_occurrence_that_clashes_with_an_earlier_one_waits_for_it(
    factory: Factory, pool, database: DatabaseUrls
):
    company = await factory.company()
    specialist = await factory.specialist()
    users = [await factory.person("user", company_id=company, allocation=5) for _ in range(3)]
    with _admin(database) as admin:
        # Two clients' series at the specialist's same hour; the first in the batch is
        # booked. The third client's series, elsewhere, is booked as well.
        series = [_series(admin, u, specialist) for u in users[:2]]
        series.append(_series(admin, users[2], await factory.specialist()))
    assert await _with_one_clash(pool, series) == [
        ("booked", None), ("skipped", "SLOT_TAKEN"), ("booked", None)
    ]  # fmt: skip


async def _with_one_clash(pool: AsyncConnectionPool, series: list[str]) -> list[Any]:
    """Dispatch the series' first occurrences in bulk and one by one: the bulk path
    defers one clashing occurrence, and both ways write the same. The outcomes."""
    batch = [(s, _day(1)) for s in series]
    bulk = await _dispatch(pool, batch, one_by_one=False)
    single = await _dispatch(pool, batch, one_by_one=True)
    assert bulk.pop("notices") == [
        "recurring dispatch: 1 of this batch clash with earlier ones; they go one by one"
    ]
    single.pop("notices")
    assert bulk == single
    return [(o, why) for *_, o, why in bulk["outcomes"]]


async def test_a_clashing_occurrence_is_booked_when_the_earlier_one_is_refused(
    factory: Factory, pool, database: DatabaseUrls
):
    """The later of two clashing occurrences is decided after the earlier one: booked
    when the earlier one is refused (here its client has no credits left), whatever the
    rest of the batch does in bulk meanwhile."""
    company = await factory.company()
    specialist = await factory.specialist()
    broke = await factory.person("user", company_id=company, allocation=0)
    others = [await factory.person("user", company_id=company, allocation=5) for _ in range(3)]
    with _admin(database) as admin:
        series = [
            _series(admin, broke, specialist),
            _series(admin, others[0], await factory.specialist()),
            _series(admin, others[1], specialist),  # at the same hour as the first
            _series(admin, others[2], specialist, local_time="12:00"),
        ]
    assert await _with_one_clash(pool, series) == [
        ("skipped", "NO_CREDITS_LEFT"), ("booked", None), ("booked", None), ("booked", None)
    ]  # fmt: skip


async def test_a_batch_the_bulk_path_fails_on_is_done_one_by_one(
    factory: Factory, pool, database: DatabaseUrls
):
    company = await factory.company()
    users = [await factory.person("user", company_id=company, allocation=5) for _ in range(3)]
    with _admin(database) as admin:
        series = [_series(admin, u, await factory.specialist()) for u in users]
        # Something no check foresees refuses the second client's bookings.
        admin.execute(
            "CREATE FUNCTION public.test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$"
            f" BEGIN IF NEW.user_id = '{users[1].id}' THEN"
            "   RAISE EXCEPTION 'disk on fire'; END IF; RETURN NEW; END $$"
        )
        admin.execute(
            "CREATE TRIGGER test_refuse BEFORE INSERT ON bookings"
            " FOR EACH ROW EXECUTE FUNCTION public.test_refuse()"
        )
        try:
            bulk = await _dispatch(pool, [(s, _day(1)) for s in series], one_by_one=False)
            single = await _dispatch(pool, [(s, _day(1)) for s in series], one_by_one=True)
        finally:
            admin.execute("DROP TRIGGER test_refuse ON bookings")
            admin.execute("DROP FUNCTION public.test_refuse()")
    assert [(o, why) for *_, o, why in bulk["outcomes"]] == [
        ("booked", None), ("failed", "P0001 disk on fire"), ("booked", None)
    ]  # fmt: skip
    assert len(bulk["bookings"]) == 2
    assert [n[:46] for n in bulk.pop("notices")] == [
        "recurring dispatch: bulk path failed (disk on "
    ]
    single.pop("notices")
    assert bulk == single


async def test_a_client_booking_the_hour_the_dispatcher_is_booking(
    client, factory: Factory, pool, settings, database: DatabaseUrls
):
    """The dispatcher's batch and a client's booking of the same hour at once, five times:
    one of the two has the hour, the other is told SLOT_TAKEN; never both, never a 500
    or a deadlock."""
    for _ in range(5):
        company = await factory.company()
        owner, rival = [await factory.person("user", company_id=company, allocation=5)
                        for _ in range(2)]  # fmt: skip
        specialist = await factory.specialist()
        with _admin(database) as admin:
            series = _series(admin, owner, specialist)
        _, r = await asyncio.gather(
            dispatcher.dispatch(pool, settings), book(client, rival, specialist, slot(1, 10))
        )
        async with transaction(pool, SERVICE) as conn:
            [occurrence] = await (
                await conn.execute(
                    "SELECT outcome, reason FROM recurring_occurrences WHERE series_id = %s",
                    (series,),
                )
            ).fetchall()
            [holders] = await (
                await conn.execute(
                    "SELECT count(*) AS n FROM bookings WHERE specialist_id = %s"
                    " AND status IN ('pending', 'confirmed')",
                    (specialist.id,),
                )
            ).fetchall()
        assert holders["n"] == 1
        if r.status_code == 201:
            assert (occurrence["outcome"], occurrence["reason"]) == ("skipped", "SLOT_TAKEN")
        else:
            assert (r.status_code, r.json()["code"]) == (409, "SLOT_TAKEN")
            assert occurrence["outcome"] == "booked"


async def test_credits_taken_while_a_batch_books_send_the_batch_one_by_one(
    factory: Factory, pool, database: DatabaseUrls
):
    """A batch reads the credit counters without locking them and locks them only at its
    end (migration 0033). A client's own booking takes their last credit in between: the
    batch, checking its decisions again under the lock, sees it and goes one by one, so
    the occurrence is skipped NO_CREDITS_LEFT, never booked beyond the allocation."""
    company = await factory.company()
    user = await factory.person("user", company_id=company, allocation=1)
    dispatched, chosen = await factory.specialist(), await factory.specialist()
    with _admin(database) as admin:
        series = _series(admin, user, dispatched)
    notices: list[str] = []

    async def batch() -> list[dict[str, Any]]:
        async with transaction(pool, SERVICE) as conn:
            conn.add_notice_handler(lambda n: notices.append(n.message_primary or ""))
            cur = await conn.execute(
                "SELECT outcome, reason FROM dispatch_recurring(%s, %s, '{}', '{}', '{}', 'MZN')",
                ([series], [_day(1)]),
            )
            return await cur.fetchall()

    async with transaction(pool, user.caller) as conn:
        # The client's booking reserves the last credit; not committed yet.
        await conn.execute(
            "SELECT create_booking(%s, %s, NULL, 'saude_mental', 'virtual', 'company_quota',"
            " NULL, 'MZN', NULL, NULL, NULL)",
            (chosen.id, slot(2, 10)),
        )
        running = asyncio.ensure_future(batch())
        with _admin(database) as admin:
            for _ in range(200):  # the batch has booked and waits for the counter
                waiting = admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE '%%dispatch_recurring%%'"
                ).fetchone()
                if waiting and waiting[0]:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the batch never waited for the credit counter")
    assert await running == [{"outcome": "skipped", "reason": "NO_CREDITS_LEFT"}]
    assert notices == [
        "recurring dispatch: bulk path failed (recurring dispatch: credits changed while the"
        " batch was checked); going one by one"
    ]
    async with transaction(pool, SERVICE) as conn:
        held = await (
            await conn.execute(
                "SELECT held FROM session_credit_member_usage WHERE user_id = %s", (user.id,)
            )
        ).fetchall()
        bookings = await (
            await conn.execute("SELECT specialist_id FROM bookings WHERE user_id = %s", (user.id,))
        ).fetchall()
    assert held == [{"held": 1}]
    assert [str(b["specialist_id"]) for b in bookings] == [chosen.id]


async def test_a_connections_next_batch_is_decided_on_its_own_rows(
    factory: Factory, database: DatabaseUrls
):
    """A batch's working table outlives its transaction (migration 0047): the next batch
    on the same connection writes over its rows, position by position. A shorter batch,
    whose occurrences take the positions of one booked and one refused in the last
    batch, is decided, booked and answered on its own rows alone: nothing of the last
    batch's decisions or booking ids, nor its third row."""
    company = await factory.company()
    specialist = await factory.specialist()
    broke = await factory.person("user", company_id=company, allocation=0)
    others = [await factory.person("user", company_id=company, allocation=5) for _ in range(4)]
    with _admin(database) as admin:
        first = [
            _series(admin, others[0], specialist, local_time="10:00"),
            _series(admin, broke, specialist, local_time="11:00"),
            _series(admin, others[1], specialist, local_time="12:00"),
        ]
        second = [
            _series(admin, others[2], specialist, local_time="14:00"),
            _series(admin, others[3], specialist, local_time="15:00"),
        ]
    one = make_pool(database.app, min_size=1, max_size=1, name="one-connection")
    await one.open(wait=True)
    answers = []
    notices: list[str] = []
    try:
        for batch in (first, second):
            async with transaction(one, SERVICE) as conn:
                conn.add_notice_handler(lambda n: notices.append(n.message_primary or ""))
                kept = await (
                    await conn.execute("SELECT to_regclass('pg_temp.recurring_dispatch') AS t")
                ).fetchone()
                cur = await conn.execute(
                    "SELECT series_id, outcome, reason"
                    " FROM dispatch_recurring(%s, %s, '{}', '{}', '{}', 'MZN')",
                    (batch, [_day(1)] * len(batch)),
                )
                assert kept
                answers.append((kept["t"] is not None, await cur.fetchall()))
    finally:
        await one.close()

    def booked(series: str) -> dict[str, Any]:
        return {"series_id": UUID(series), "outcome": "booked", "reason": None}

    assert answers == [
        (False, [
            booked(first[0]),
            {"series_id": UUID(first[1]), "outcome": "skipped", "reason": "NO_CREDITS_LEFT"},
            booked(first[2]),
        ]),
        (True, [booked(second[0]), booked(second[1])]),
    ]  # fmt: skip
    assert notices == []  # both in bulk: no batch failed over to one by one
    with _admin(database) as admin:
        bookings = admin.execute(
            "SELECT recurring_series_id FROM bookings WHERE recurring_series_id = ANY(%s)"
            " ORDER BY starts_at",
            ([*first, *second],),
        ).fetchall()
        skipped = admin.execute(
            "SELECT count(*) FROM notifications WHERE user_id = ANY(%s)"
            " AND event = 'recurring_occurrence_skipped'",
            ([broke.id, *(o.id for o in others)],),
        ).fetchone()
    assert [str(b[0]) for b in bookings] == [first[0], first[2], *second]
    assert skipped == (1,)
