-- Bookings (SPEC §5): no double booking by construction, status machine and
-- history kept by the database, idempotent creation, and the session-credit ledger.

CREATE TABLE bookings (
    id                        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id                   uuid NOT NULL REFERENCES users (id),
    specialist_id             uuid NOT NULL REFERENCES specialists (id),
    company_id                uuid REFERENCES companies (id),
    pillar                    text NOT NULL CHECK (pillar IN ('saude_mental', 'bem_estar_fisico',
                                  'assistencia_financeira', 'assistencia_juridica')),
    session_type_id           uuid REFERENCES session_types (id),
    starts_at                 timestamptz NOT NULL,
    ends_at                   timestamptz NOT NULL,
    -- ends_at plus the specialist's buffer when booked: the time the booking keeps busy.
    blocked_until             timestamptz NOT NULL,
    buffer_minutes            integer NOT NULL DEFAULT 0 CHECK (buffer_minutes BETWEEN 0 AND 120),
    mode                      text NOT NULL DEFAULT 'virtual'
                                  CHECK (mode IN ('virtual', 'phone', 'in_person')),
    meeting_url               text CHECK (length(meeting_url) <= 500),
    status                    text NOT NULL DEFAULT 'pending'
                                  CHECK (status IN ('pending', 'confirmed', 'completed',
                                                    'no_show', 'cancelled')),
    price                     numeric(12, 2) NOT NULL CHECK (price >= 0),
    currency                  char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    funding                   text NOT NULL
                                  CHECK (funding IN ('company_quota', 'package', 'self_pay')),
    package_purchase_id       uuid,
    recurring_series_id       uuid,
    occurrence_date           date,
    cancellation_notice_hours integer NOT NULL DEFAULT 24 CHECK (cancellation_notice_hours >= 0),
    reschedule_count          integer NOT NULL DEFAULT 0,
    created_by                uuid REFERENCES users (id),
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT bookings_time_order CHECK (ends_at > starts_at AND blocked_until >= ends_at),
    CONSTRAINT bookings_company_funding CHECK (funding <> 'company_quota' OR company_id IS NOT NULL),
    -- No two active bookings of a specialist overlap, buffers included; adjacent is fine.
    CONSTRAINT booking_no_overlap EXCLUDE USING gist (
        uuid_range(specialist_id, specialist_id, '[]') WITH &&,
        tstzrange(starts_at, blocked_until, '[)') WITH &&
    ) WHERE (status IN ('pending', 'confirmed'))
);
CREATE INDEX bookings_user ON bookings (user_id, starts_at DESC);
CREATE INDEX bookings_specialist ON bookings (specialist_id, starts_at DESC);
CREATE INDEX bookings_company ON bookings (company_id, starts_at) WHERE company_id IS NOT NULL;

CREATE TABLE booking_status_history (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    booking_id  uuid NOT NULL REFERENCES bookings (id),
    old_status  text,
    new_status  text NOT NULL,
    old_starts_at timestamptz,
    new_starts_at timestamptz,
    changed_by  uuid,
    reason      text,
    changed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX booking_status_history_booking ON booking_status_history (booking_id, id);
CREATE TRIGGER booking_status_history_immutable
    BEFORE UPDATE OR DELETE OR TRUNCATE ON booking_status_history
    FOR EACH STATEMENT EXECUTE FUNCTION forbid_change();

-- Who may move a booking where. Runs for every writer, the API roles included.
CREATE FUNCTION bookings_guard() RETURNS trigger
    LANGUAGE plpgsql
AS $$
DECLARE
    acting_service boolean := auth.role() = 'service_role';
    acting_admin boolean := auth.is_admin();
    acting_specialist boolean := auth.uid() IS NOT DISTINCT FROM NEW.specialist_id;
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status <> 'pending' AND NOT (acting_service OR acting_admin) THEN
            RAISE EXCEPTION 'a booking starts as pending'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'booking_invalid_transition';
        END IF;
    ELSE
        IF NEW.user_id <> OLD.user_id OR NEW.specialist_id <> OLD.specialist_id
           OR NEW.price <> OLD.price OR NEW.funding <> OLD.funding THEN
            RAISE EXCEPTION 'booking identity and price are fixed'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF NEW.status <> OLD.status THEN
            IF NOT (
                (OLD.status = 'pending' AND NEW.status IN ('confirmed', 'cancelled'))
                OR (OLD.status = 'confirmed' AND NEW.status IN ('completed', 'no_show', 'cancelled'))
            ) THEN
                RAISE EXCEPTION 'cannot go from % to %', OLD.status, NEW.status
                    USING ERRCODE = 'check_violation', CONSTRAINT = 'booking_invalid_transition';
            END IF;
            -- Only the specialist (or an admin, or the server's own jobs) confirms,
            -- completes or marks a no-show; a user never completes their own session.
            IF NEW.status IN ('confirmed', 'completed', 'no_show')
               AND NOT (acting_service OR acting_admin OR acting_specialist) THEN
                RAISE EXCEPTION 'only the specialist may mark a booking %', NEW.status
                    USING ERRCODE = 'insufficient_privilege',
                          CONSTRAINT = 'booking_specialist_only';
            END IF;
        END IF;
        IF (NEW.starts_at <> OLD.starts_at OR NEW.ends_at <> OLD.ends_at)
           AND OLD.status NOT IN ('pending', 'confirmed') THEN
            RAISE EXCEPTION 'only an active booking can be moved'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'booking_invalid_transition';
        END IF;
        NEW.updated_at := now();
    END IF;
    NEW.blocked_until := NEW.ends_at + make_interval(mins => NEW.buffer_minutes);
    RETURN NEW;
END
$$;
CREATE TRIGGER bookings_guard BEFORE INSERT OR UPDATE ON bookings
    FOR EACH ROW EXECUTE FUNCTION bookings_guard();

-- History is written by the database itself; the reason comes from the
-- transaction-local setting `app.status_reason` when the service sets one.
CREATE FUNCTION bookings_history() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO booking_status_history (booking_id, old_status, new_status, new_starts_at,
                                            changed_by, reason)
        VALUES (NEW.id, NULL, NEW.status, NEW.starts_at, auth.uid(),
                nullif(current_setting('app.status_reason', true), ''));
    ELSIF NEW.status <> OLD.status OR NEW.starts_at <> OLD.starts_at THEN
        INSERT INTO booking_status_history (booking_id, old_status, new_status, old_starts_at,
                                            new_starts_at, changed_by, reason)
        VALUES (NEW.id, OLD.status, NEW.status, OLD.starts_at, NEW.starts_at, auth.uid(),
                nullif(current_setting('app.status_reason', true), ''));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER bookings_history AFTER INSERT OR UPDATE ON bookings
    FOR EACH ROW EXECUTE FUNCTION bookings_history();

CREATE TABLE idempotency_keys (
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key          text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    request_hash text NOT NULL,
    status_code  integer,
    response     jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);

-- Session credits: an append-only ledger; balances are derived from it.
CREATE TABLE session_credit_ledger (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id             uuid NOT NULL REFERENCES users (id),
    company_id          uuid REFERENCES companies (id),
    package_purchase_id uuid,
    booking_id          uuid NOT NULL REFERENCES bookings (id),
    entry               text NOT NULL CHECK (entry IN ('reserve', 'release', 'consume', 'forfeit')),
    sessions            integer NOT NULL DEFAULT 1 CHECK (sessions > 0),
    created_by          uuid,
    created_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT session_credit_ledger_source CHECK (
        company_id IS NOT NULL OR package_purchase_id IS NOT NULL)
);
-- One reservation per booking, and one settlement of it: a credit is never
-- released (or refunded) twice.
CREATE UNIQUE INDEX session_credit_ledger_one_reserve ON session_credit_ledger (booking_id)
    WHERE entry = 'reserve';
CREATE UNIQUE INDEX session_credit_ledger_one_settlement ON session_credit_ledger (booking_id)
    WHERE entry <> 'reserve';
CREATE INDEX session_credit_ledger_member ON session_credit_ledger (company_id, user_id);
CREATE TRIGGER session_credit_ledger_immutable
    BEFORE UPDATE OR DELETE OR TRUNCATE ON session_credit_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION forbid_change();

-- Reserve one company-funded session for a booking, under a per-company lock,
-- refusing when the employee's allocation or the company's pool would go negative.
CREATE FUNCTION reserve_session_credit(p_booking uuid) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    b record;
    allocation integer;
    pool integer;
    member_held integer;
    company_held integer;
BEGIN
    SELECT id, user_id, company_id, funding INTO b FROM bookings WHERE id = p_booking;
    IF NOT FOUND OR NOT (b.user_id = auth.uid() OR auth.is_admin()
                         OR auth.role() = 'service_role') THEN
        RAISE EXCEPTION 'booking not found' USING ERRCODE = 'no_data_found';
    END IF;
    IF b.funding <> 'company_quota' THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('credits:' || b.company_id::text, 0));
    SELECT m.session_allocation, c.session_pool INTO allocation, pool
    FROM company_members m JOIN companies c ON c.id = m.company_id
    WHERE m.user_id = b.user_id AND m.company_id = b.company_id AND m.removed_at IS NULL
      AND c.is_active;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'not an active member of an active company'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'session_credit_membership';
    END IF;
    SELECT coalesce(sum(CASE entry WHEN 'reserve' THEN sessions
                                   WHEN 'release' THEN -sessions ELSE 0 END)
                        FILTER (WHERE user_id = b.user_id), 0),
           coalesce(sum(CASE entry WHEN 'reserve' THEN sessions
                                   WHEN 'release' THEN -sessions ELSE 0 END), 0)
      INTO member_held, company_held
    FROM session_credit_ledger WHERE company_id = b.company_id;
    IF member_held + 1 > allocation THEN
        RAISE EXCEPTION 'no sessions left in the allocation'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'session_credits_available';
    END IF;
    IF company_held + 1 > pool THEN
        RAISE EXCEPTION 'no sessions left in the company pool'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'company_session_pool_available';
    END IF;
    INSERT INTO session_credit_ledger (user_id, company_id, booking_id, entry, created_by)
    VALUES (b.user_id, b.company_id, b.id, 'reserve', auth.uid());
END
$$;

-- Settle a booking's reservation once: release (credit back), consume or forfeit
-- (spent). Returns false when there is nothing to settle (no reservation, or
-- already settled), so callers can be retried safely.
CREATE FUNCTION settle_session_credit(p_booking uuid, p_entry text) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    r record;
    b record;
BEGIN
    IF p_entry NOT IN ('release', 'consume', 'forfeit') THEN
        RAISE EXCEPTION 'unknown settlement %', p_entry USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT user_id, specialist_id INTO b FROM bookings WHERE id = p_booking;
    IF NOT FOUND OR NOT (b.user_id = auth.uid() OR b.specialist_id = auth.uid()
                         OR auth.is_admin() OR auth.role() = 'service_role') THEN
        RAISE EXCEPTION 'booking not found' USING ERRCODE = 'no_data_found';
    END IF;
    SELECT * INTO r FROM session_credit_ledger WHERE booking_id = p_booking AND entry = 'reserve';
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO session_credit_ledger (user_id, company_id, package_purchase_id, booking_id,
                                       entry, sessions, created_by)
    VALUES (r.user_id, r.company_id, r.package_purchase_id, r.booking_id, p_entry, r.sessions,
            auth.uid())
    ON CONFLICT (booking_id) WHERE entry <> 'reserve' DO NOTHING;
    RETURN FOUND;
END
$$;

-- Completion and no-show spend the reserved session, whoever makes the change.
CREATE FUNCTION bookings_consume_credit() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    PERFORM settle_session_credit(NEW.id, 'consume');
    RETURN NULL;
END
$$;
CREATE TRIGGER bookings_consume_credit AFTER UPDATE OF status ON bookings
    FOR EACH ROW WHEN (NEW.status IN ('completed', 'no_show') AND OLD.status <> NEW.status)
    EXECUTE FUNCTION bookings_consume_credit();

-- The caller's credits with their company: allocation, held (reserved, not yet
-- settled), used (consumed or forfeited) and available.
CREATE FUNCTION my_session_credits()
    RETURNS TABLE (company_id uuid, allocation integer, held integer, used integer, available integer)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT m.company_id, m.session_allocation,
           (coalesce(sum(l.sessions) FILTER (WHERE l.entry = 'reserve'), 0)
            - coalesce(sum(l.sessions) FILTER (WHERE l.entry <> 'reserve'), 0))::integer,
           coalesce(sum(l.sessions) FILTER (WHERE l.entry IN ('consume', 'forfeit')), 0)::integer,
           (m.session_allocation
            - coalesce(sum(l.sessions) FILTER (WHERE l.entry = 'reserve'), 0)
            + coalesce(sum(l.sessions) FILTER (WHERE l.entry = 'release'), 0))::integer
    FROM company_members m
    LEFT JOIN session_credit_ledger l ON l.company_id = m.company_id AND l.user_id = m.user_id
    WHERE m.user_id = auth.uid() AND m.removed_at IS NULL
    GROUP BY m.company_id, m.session_allocation
$$;

-- Busy time of a specialist without revealing whose: slots need it for any caller.
CREATE FUNCTION specialist_busy_ranges(p_specialist uuid, p_from timestamptz, p_to timestamptz)
    RETURNS TABLE (starts_at timestamptz, blocked_until timestamptz, booking_id uuid)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT b.starts_at, b.blocked_until,
           CASE WHEN b.user_id = auth.uid() OR b.specialist_id = auth.uid() OR auth.is_admin()
                THEN b.id END
    FROM public.bookings b
    WHERE uuid_range(b.specialist_id, b.specialist_id, '[]')
              && uuid_range(p_specialist, p_specialist, '[]')
      AND tstzrange(b.starts_at, b.blocked_until, '[)') && tstzrange(p_from, p_to, '[)')
      AND b.status IN ('pending', 'confirmed')
$$;

ALTER TABLE bookings ENABLE ROW LEVEL SECURITY;
ALTER TABLE bookings FORCE ROW LEVEL SECURITY;
ALTER TABLE booking_status_history ENABLE ROW LEVEL SECURITY;
ALTER TABLE booking_status_history FORCE ROW LEVEL SECURITY;
ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE idempotency_keys FORCE ROW LEVEL SECURITY;
ALTER TABLE session_credit_ledger ENABLE ROW LEVEL SECURITY;
ALTER TABLE session_credit_ledger FORCE ROW LEVEL SECURITY;

-- The booking's user, its specialist, admins. Never HR: they get aggregates only.
CREATE POLICY bookings_select ON bookings FOR SELECT TO authenticated
    USING (user_id = auth.uid() OR specialist_id = auth.uid() OR (SELECT auth.is_admin()));
CREATE POLICY bookings_insert ON bookings FOR INSERT TO authenticated
    WITH CHECK (user_id = auth.uid() OR (SELECT auth.is_admin()));
CREATE POLICY bookings_update ON bookings FOR UPDATE TO authenticated
    USING (user_id = auth.uid() OR specialist_id = auth.uid() OR (SELECT auth.is_admin()))
    WITH CHECK (user_id = auth.uid() OR specialist_id = auth.uid() OR (SELECT auth.is_admin()));
GRANT SELECT ON bookings TO authenticated;
GRANT INSERT (id, user_id, specialist_id, company_id, pillar, session_type_id, starts_at, ends_at,
              blocked_until, buffer_minutes, mode, meeting_url, status, price, currency, funding,
              package_purchase_id, recurring_series_id, occurrence_date,
              cancellation_notice_hours, created_by)
    ON bookings TO authenticated;
GRANT UPDATE (status, starts_at, ends_at, blocked_until, meeting_url, reschedule_count, updated_at)
    ON bookings TO authenticated;

CREATE POLICY booking_status_history_select ON booking_status_history FOR SELECT TO authenticated
    USING (EXISTS (SELECT 1 FROM bookings b WHERE b.id = booking_id));
GRANT SELECT ON booking_status_history TO authenticated;

CREATE POLICY idempotency_keys_own ON idempotency_keys FOR ALL TO authenticated
    USING (user_id = auth.uid()) WITH CHECK (user_id = auth.uid());
GRANT SELECT, INSERT, UPDATE ON idempotency_keys TO authenticated;

CREATE POLICY session_credit_ledger_select ON session_credit_ledger FOR SELECT TO authenticated
    USING (user_id = auth.uid() OR (SELECT auth.is_admin()));
GRANT SELECT ON session_credit_ledger TO authenticated;

REVOKE ALL ON FUNCTION reserve_session_credit(uuid), settle_session_credit(uuid, text),
    my_session_credits(), specialist_busy_ranges(uuid, timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION reserve_session_credit(uuid), settle_session_credit(uuid, text),
    my_session_credits(), specialist_busy_ranges(uuid, timestamptz, timestamptz)
    TO authenticated, service_role;

GRANT SELECT, INSERT, UPDATE ON bookings, idempotency_keys TO service_role;
GRANT SELECT, INSERT ON booking_status_history, session_credit_ledger TO service_role;
