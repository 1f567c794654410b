"""Benchmark data: specialists, employees, a million bookings, exceptions — generated
server-side with set-based SQL, as the owner, through the real triggers and constraints.

Run alone: python bench/generate.py <owner-url> [--scale 1.0]
"""

from __future__ import annotations

import argparse
import time

import psycopg

# At scale 1.0: 10,000 specialists, 50,000 employees in 100 companies,
# 1,000,000 bookings (100 per specialist), 100,000 exceptions (10 per specialist),
# 1,000,000 cancellations (150,000 of those bookings plus 850,000 cancelled ones),
# 30,000 packages (3 per specialist) and 200,000 purchases of them, 1,000,000
# session notes (addenda on a tenth), 160,000 of them on 3,200 client-specialist
# pairs' 50 past sessions each (the continuity-of-care timeline).
SPECIALISTS = 10_000
EMPLOYEES = 50_000
COMPANIES = 100
BOOKINGS_PER_SPECIALIST = 100
EXCEPTIONS_PER_SPECIALIST = 10
# Cancelled sessions in the past, besides the bookings above, so that with the
# cancelled ones among those there are 1,000,000 cancellations (the seed's scale).
CANCELLATIONS = 1_000_000
PACKAGES_PER_SPECIALIST = 3
PURCHASES = 200_000
NOTES = 1_000_000
TIMELINE_PAIRS = 3_200
TIMELINE_SESSIONS = 50

STEPS = [
    (
        "companies",
        """
        INSERT INTO companies (name, nuit, employee_seats, session_pool)
        SELECT 'Bench ' || g, (700000000 + g)::text, 100000, 100000000
        FROM generate_series(1, %(companies)s) g""",
    ),
    (
        "users",
        """
        INSERT INTO users (email, full_name, email_verified_at)
        SELECT 'spec' || g || '@bench.example', 'Especialista ' || g, now()
        FROM generate_series(1, %(specialists)s) g
        UNION ALL
        SELECT 'emp' || g || '@bench.example', 'Colaborador ' || g, now()
        FROM generate_series(1, %(employees)s) g""",
    ),
    (
        "user_roles",
        """
        INSERT INTO user_roles (user_id, role)
        SELECT id, CASE WHEN email LIKE 'spec%%' THEN 'specialist' ELSE 'user' END
        FROM users WHERE email LIKE '%%@bench.example'""",
    ),
    (
        "company_members",
        """
        INSERT INTO company_members (company_id, user_id, session_allocation)
        SELECT c.id, u.id, 10000
        FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM users
              WHERE email LIKE 'emp%%@bench.example') u
        JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM companies
              WHERE name LIKE 'Bench %%') c ON c.n = u.n %% %(companies)s""",
    ),
    (
        "specialists",
        """
        INSERT INTO specialists (id, display_name, pillars, timezone, min_notice_minutes,
                                 horizon_days, modes)
        SELECT u.id, u.full_name,
               ARRAY[(ARRAY['saude_mental', 'bem_estar_fisico', 'assistencia_financeira',
                            'assistencia_juridica'])[1 + n %% 4]],
               (ARRAY['Africa/Maputo', 'Europe/Lisbon', 'UTC'])[1 + n %% 3], 120, 60,
               ARRAY['virtual']
        FROM (SELECT id, full_name, row_number() OVER (ORDER BY id) AS n FROM users
              WHERE email LIKE 'spec%%@bench.example') u""",
    ),
    (
        "weekly_hours",
        """
        INSERT INTO specialist_weekly_hours (specialist_id, weekday, start_time, end_time)
        SELECT s.id, d, h.s, h.e
        FROM specialists s, generate_series(1, 5) d,
             (VALUES (time '08:00', time '12:00'), (time '13:00', time '17:00')) h (s, e)""",
    ),
    (
        "rates",
        """
        INSERT INTO specialist_rates (specialist_id, amount, currency, effective_from)
        SELECT id, 1500, 'MZN', current_date - 365 FROM specialists""",
    ),
    (
        "bookings",
        """
        INSERT INTO bookings (user_id, specialist_id, pillar, starts_at, ends_at, blocked_until,
                              status, price, currency, funding)
        SELECT e.id, s.id, s.pillars[1], t, t + interval '1 hour', t + interval '1 hour',
               CASE WHEN t > now() THEN (ARRAY['pending', 'confirmed'])[1 + k %% 2]
                    ELSE (ARRAY['completed', 'completed', 'completed', 'cancelled',
                                'no_show'])[1 + k %% 5] END,
               1500, 'MZN', 'self_pay'
        FROM (SELECT id, pillars, row_number() OVER (ORDER BY id) AS n FROM specialists) s
        CROSS JOIN generate_series(0, %(per_specialist)s - 1) k
        CROSS JOIN LATERAL (SELECT date_trunc('day', now()) - interval '150 days'
                                   + k * interval '2 days' + interval '9 hours' AS t) ts
        JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM users
              WHERE email LIKE 'emp%%@bench.example') e
          ON e.n = (s.n * 7919 + k * 104729) %% %(employees)s""",
    ),
    (
        "cancelled_bookings",
        # Past sessions cancelled at various times, on the hour between 06:00 and 20:00
        # UTC of the last 400 days; cancelled rows are outside the overlap constraint.
        """
        INSERT INTO bookings (user_id, specialist_id, pillar, starts_at, ends_at, blocked_until,
                              status, price, currency, funding)
        SELECT e.id, s.id, s.pillars[1], t, t + interval '1 hour', t + interval '1 hour',
               'cancelled', 1500, 'MZN', 'self_pay'
        FROM (SELECT id, pillars, row_number() OVER (ORDER BY id) AS n FROM specialists) s
        CROSS JOIN generate_series(1, greatest(0, %(cancellations)s / %(specialists)s
               - (%(per_specialist)s * 3 / 4) / 5)) k
        CROSS JOIN LATERAL (SELECT date_trunc('hour', now()) - interval '1 day'
                                   - ((s.n * 31 + k * 97) %% 400) * interval '1 day'
                                   - ((s.n + k) %% 14) * interval '1 hour' AS t) ts
        JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM users
              WHERE email LIKE 'emp%%@bench.example') e
          ON e.n = (s.n * 3 + k * 7) %% %(employees)s""",
    ),
    (
        "cancellations",
        # One record per cancelled booking, as cancel_booking_core() writes them.
        """
        INSERT INTO booking_cancellations (booking_id, cancelled_by, reason, reason_code,
                                           cancellation_policy_applied, credit_outcome,
                                           notice_hours, hours_before_start, created_at)
        SELECT b.id, CASE WHEN x.p IN ('on_time', 'late') THEN b.user_id ELSE b.specialist_id END,
               'Motivo ' || x.c, x.c, x.p, 'none', 24, x.h,
               b.starts_at - make_interval(hours => x.h::integer)
        FROM bookings b
        CROSS JOIN LATERAL (
            SELECT (ARRAY['schedule_conflict', 'illness', 'specialist_unavailable', 'emergency',
                          'other'])[1 + abs(hashtext(b.id::text)) %% 5] AS c,
                   (ARRAY['on_time', 'on_time', 'late', 'by_specialist', 'by_admin'])
                       [1 + abs(hashtext(b.id::text) / 7) %% 5] AS p,
                   (1 + abs(hashtext(b.id::text) / 11) %% 96)::numeric AS h
        ) x
        WHERE b.status = 'cancelled'""",
    ),
    (
        "packages",
        # Three offers per specialist: 4, 8 and 12 sessions at 0-20 % off; most valid
        # for 90-365 days, some without expiry; one in ten no longer sold.
        """
        INSERT INTO booking_packages (specialist_id, name, description, session_count, price,
                                      currency, discount_percentage, valid_for_days,
                                      is_active, pillar, created_at)
        SELECT s.id, 'Pacote ' || (4 * k) || ' sessões', 'Acompanhamento de ' || (4 * k)
               || ' sessões', 4 * k, 1500 * 4 * k, 'MZN', (5 * k + s.n %% 6)::numeric,
               CASE WHEN (s.n + k) %% 7 = 0 THEN NULL ELSE 90 * k + 5 * (s.n %% 10) END,
               (s.n * 3 + k) %% 10 <> 0, s.pillars[1], now() - (s.n %% 400) * interval '1 day'
        FROM (SELECT id, pillars, row_number() OVER (ORDER BY id) AS n FROM specialists) s
        CROSS JOIN generate_series(1, %(packages)s) k""",
    ),
    (
        "purchases",
        # Bought by employees over the last 400 days, at the package's price then.
        """
        INSERT INTO package_purchases (package_id, user_id, specialist_id, name, pillar,
                                       sessions_total, price, discount_percentage,
                                       final_price, currency, payment_reference,
                                       purchased_at, expires_at, status)
        SELECT p.id, e.id, p.specialist_id, p.name, p.pillar, p.session_count, p.price,
               p.discount_percentage, package_final_price(p.price, p.discount_percentage),
               p.currency, 'BENCH-' || g, t, t + make_interval(days => p.valid_for_days),
               CASE WHEN t + make_interval(days => p.valid_for_days) <= now() THEN 'expired'
                    ELSE 'active' END
        FROM generate_series(1, %(purchases)s) g
        CROSS JOIN LATERAL (SELECT now() - ((g * 7) %% 400) * interval '1 day'
                                   - (g %% 86400) * interval '1 second' AS t) ts
        JOIN (SELECT id, specialist_id, name, pillar, session_count, price, currency,
                     discount_percentage, valid_for_days,
                     row_number() OVER (ORDER BY id) - 1 AS n FROM booking_packages) p
          ON p.n = (g * 7907) %% (SELECT count(*) FROM booking_packages)
        JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM users
              WHERE email LIKE 'emp%%@bench.example') e
          ON e.n = (g * 13) %% %(employees)s""",
    ),
    (
        "timeline_sessions",
        # Each of the first pairs: one specialist, one client, 50 weekly past sessions.
        """
        INSERT INTO bookings (user_id, specialist_id, pillar, starts_at, ends_at, blocked_until,
                              status, price, currency, funding)
        SELECT e.id, s.id, s.pillars[1], t, t + interval '1 hour', t + interval '1 hour',
               'completed', 1500, 'MZN', 'self_pay'
        FROM (SELECT id, pillars, row_number() OVER (ORDER BY id) - 1 AS n FROM specialists) s
        JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM users
              WHERE email LIKE 'emp%%@bench.example') e ON e.n = s.n
        CROSS JOIN generate_series(1, %(timeline_sessions)s) k
        CROSS JOIN LATERAL (SELECT date_trunc('day', now()) - k * interval '7 days'
                                   + interval '6 hours' AS t) ts
        WHERE s.n < %(timeline_pairs)s""",
    ),
    (
        "notes",
        # On sessions that were not cancelled, the timeline's first; a fifth private,
        # four in five signed.
        """
        INSERT INTO session_notes (booking_id, provider_id, notes, follow_up_actions,
                                   next_session_recommendation, metadata, is_private,
                                   signed_at, signed_by, created_at, updated_at)
        SELECT b.id, b.specialist_id,
               'Sessão de acompanhamento: o cliente descreve a semana, objetivos revistos.'
               || ' Registo ' || n,
               'Exercícios de respiração diários', 'Próxima sessão em 2 semanas',
               jsonb_build_object('scale', n %% 27), n %% 5 = 0,
               CASE WHEN n %% 5 <> 1 THEN b.ends_at END,
               CASE WHEN n %% 5 <> 1 THEN b.specialist_id END, b.ends_at, b.ends_at
        FROM (SELECT id, specialist_id, ends_at,
                     row_number() OVER (ORDER BY (status = 'completed'
                                                 AND extract(hour FROM starts_at) = 6) DESC,
                                        id) AS n
              FROM bookings WHERE status <> 'cancelled') b
        WHERE b.n <= %(notes)s""",
    ),
    (
        "addenda",
        """
        INSERT INTO session_note_addenda (note_id, author_id, text, created_at)
        SELECT id, provider_id, 'Correção: duração real de 50 minutos.', updated_at
        FROM session_notes WHERE abs(hashtext(id::text)) %% 10 = 0""",
    ),
    (
        "exceptions",
        """
        INSERT INTO specialist_availability_exceptions (specialist_id, exception_date,
                    is_available, reason, all_day, start_time, end_time)
        SELECT s.id, current_date - 180 + ((s.n * 37 + k * 41) %% 360)::int, false,
               (ARRAY['vacation', 'sick_leave', 'personal', 'training', 'conference',
                      'other'])[1 + k %% 6],
               k %% 5 <> 0,
               CASE WHEN k %% 5 = 0 THEN time '15:00' END,
               CASE WHEN k %% 5 = 0 THEN time '16:00' END
        FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM specialists) s
        CROSS JOIN generate_series(0, %(exceptions)s - 1) k""",
    ),
]


def generate(owner_url: str, scale: float = 1.0) -> dict[str, float]:
    """Fill an empty, migrated database; return seconds per step."""
    params = {
        "companies": max(2, int(COMPANIES * scale)),
        "specialists": max(4, int(SPECIALISTS * scale)),
        "employees": max(10, int(EMPLOYEES * scale)),
        "per_specialist": BOOKINGS_PER_SPECIALIST,
        "exceptions": EXCEPTIONS_PER_SPECIALIST,
        "cancellations": max(10, int(CANCELLATIONS * scale)),
        "packages": PACKAGES_PER_SPECIALIST,
        "purchases": max(10, int(PURCHASES * scale)),
        "notes": max(10, int(NOTES * scale)),
        "timeline_pairs": max(2, int(TIMELINE_PAIRS * scale)),
        "timeline_sessions": TIMELINE_SESSIONS,
    }
    timings: dict[str, float] = {}
    with psycopg.connect(owner_url, autocommit=True) as conn:
        # The triggers read the caller: the generator acts as the service.
        conn.execute(
            "SELECT set_config('request.jwt.claims', '{\"role\": \"service_role\"}', false)"
        )
        for name, sql in STEPS:
            started = time.perf_counter()
            conn.execute(sql, params)
            timings[name] = time.perf_counter() - started
            print(f"  generated {name:<16} {timings[name]:7.1f} s", flush=True)
        started = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        timings["vacuum_analyze"] = time.perf_counter() - started
    return timings


def table_counts(owner_url: str) -> dict[str, int]:
    tables = [
        "specialists",
        "users",
        "bookings",
        "booking_status_history",
        "specialist_availability_exceptions",
        "specialist_weekly_hours",
        "booking_cancellations",
        "booking_packages",
        "package_purchases",
        "session_notes",
        "session_note_addenda",
    ]
    with psycopg.connect(owner_url) as conn:
        return {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
            for t in tables
        }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    generate(args.url, args.scale)
    print(table_counts(args.url))
