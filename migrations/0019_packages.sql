-- Packages (SPEC §7, issue 11): the seed's `booking_packages`, which stopped at a
-- definition, made into a product a person can buy and book against.
--
-- A package is a specialist's offer (n sessions at a discount). Buying one creates a
-- `package_purchases` row that snapshots what was bought and at what price; editing
-- or deactivating the package never touches it. A booking funded by a purchase
-- reserves one of its sessions in the session-credit ledger, under the purchase's row
-- lock, so concurrent bookings cannot overdraw it; cancellation settles it by the same
-- policy as company credits (`cancel_booking_core`, 0018). What is used and what is
-- left come from the ledger, never from a counter a client could write.

-- The offer -------------------------------------------------------------------------------

CREATE TABLE booking_packages (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    specialist_id       uuid NOT NULL REFERENCES specialists (id),
    name                text NOT NULL
        CONSTRAINT booking_packages_name_check CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    description         text
        CONSTRAINT booking_packages_description_check CHECK (length(description) <= 4000),
    pillar              text
        CONSTRAINT booking_packages_pillar_check
        CHECK (pillar IN ('saude_mental', 'bem_estar_fisico', 'assistencia_financeira',
                          'assistencia_juridica')),
    session_type_id     uuid REFERENCES session_types (id),
    session_count       integer NOT NULL
        CONSTRAINT booking_packages_session_count_check CHECK (session_count BETWEEN 1 AND 500),
    price               numeric(12, 2) NOT NULL
        CONSTRAINT booking_packages_price_check CHECK (price >= 0),
    currency            char(3) NOT NULL
        CONSTRAINT booking_packages_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
    discount_percentage numeric(5, 2) NOT NULL DEFAULT 0
        CONSTRAINT booking_packages_discount_check CHECK (discount_percentage BETWEEN 0 AND 100),
    valid_for_days      integer
        CONSTRAINT booking_packages_valid_for_days_check
        CHECK (valid_for_days IS NULL OR valid_for_days BETWEEN 1 AND 3660),
    is_active           boolean NOT NULL DEFAULT true,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
-- The seed's three indexes.
CREATE INDEX booking_packages_specialist ON booking_packages (specialist_id);
CREATE INDEX booking_packages_active ON booking_packages (is_active);
CREATE INDEX booking_packages_created ON booking_packages (created_at DESC);

-- The final price, in one place: price × (1 − discount/100), half-up to cents. Both
-- factors have two decimals, so the product is exact before rounding, and numeric
-- `round()` rounds halves away from zero: half-up for these non-negative amounts.
CREATE FUNCTION package_final_price(p_price numeric, p_discount numeric) RETURNS numeric
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT round(p_price * (100 - p_discount) / 100, 2)
$$;

-- The saving of a package against the specialist's rate in force today (on the
-- specialist's calendar) × its sessions; NULL without a rate in the package's
-- currency. Rates are not public: this reveals the saving of a package the caller may
-- see, nothing else.
CREATE FUNCTION package_saving(p_package uuid) RETURNS numeric
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    p public.booking_packages;
    today date;
    rate record;
BEGIN
    SELECT * INTO p FROM public.booking_packages WHERE id = p_package;
    IF NOT FOUND OR NOT (p.is_active OR auth.is_admin() OR p.specialist_id = auth.uid()) THEN
        RETURN NULL;
    END IF;
    SELECT (now() AT TIME ZONE timezone)::date INTO today
    FROM public.specialists WHERE id = p.specialist_id;
    SELECT r.amount, r.currency INTO rate
    FROM public.specialist_rate_on(p.specialist_id, p.session_type_id, today) r;
    IF rate.currency IS DISTINCT FROM p.currency::text THEN
        RETURN NULL;
    END IF;
    RETURN rate.amount * p.session_count
           - public.package_final_price(p.price, p.discount_percentage);
END
$$;

-- An instant as the API's JSON writes it everywhere else (pydantic): UTC, `Z`,
-- microseconds only when there are some.
CREATE FUNCTION api_instant(p_at timestamptz) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
           || CASE WHEN extract(microseconds FROM p_at)::bigint % 1000000 <> 0
                   THEN to_char(p_at AT TIME ZONE 'UTC', '.US') ELSE '' END
           || 'Z'
$$;

-- What the API shows of an offer: the final price, the price per session and the
-- saving. A view with the caller's rights: the table's RLS applies.
CREATE VIEW package_offers WITH (security_invoker = true) AS
SELECT p.id, p.specialist_id, p.name, p.description, p.pillar, p.session_type_id,
       p.session_count, p.price, p.currency, p.discount_percentage, p.valid_for_days,
       p.is_active, p.created_at, p.updated_at,
       package_final_price(p.price, p.discount_percentage) AS final_price,
       round(package_final_price(p.price, p.discount_percentage) / p.session_count, 2)
           AS price_per_session,
       package_saving(p.id) AS saving
FROM booking_packages p;

ALTER TABLE booking_packages ENABLE ROW LEVEL SECURITY;
ALTER TABLE booking_packages FORCE ROW LEVEL SECURITY;
-- Anyone, signed in or not, reads active packages; the owning specialist and admins
-- read all of theirs (inactive ones included).
CREATE POLICY booking_packages_public ON booking_packages FOR SELECT TO anon, authenticated
    USING (is_active);
CREATE POLICY booking_packages_manage ON booking_packages FOR SELECT TO authenticated
    USING ((SELECT auth.is_admin()) OR specialist_id = (SELECT auth.uid()));
GRANT SELECT ON booking_packages, package_offers TO anon, authenticated, service_role;

-- Purchases ---------------------------------------------------------------------------------

CREATE TABLE package_purchases (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    package_id          uuid NOT NULL REFERENCES booking_packages (id),
    user_id             uuid NOT NULL REFERENCES users (id),
    specialist_id       uuid NOT NULL REFERENCES specialists (id),
    -- Snapshots of what was bought: the package may change later, this does not.
    name                text NOT NULL,
    pillar              text,
    session_type_id     uuid REFERENCES session_types (id),
    sessions_total      integer NOT NULL CHECK (sessions_total > 0),
    price               numeric(12, 2) NOT NULL CHECK (price >= 0),
    discount_percentage numeric(5, 2) NOT NULL CHECK (discount_percentage BETWEEN 0 AND 100),
    final_price         numeric(12, 2) NOT NULL CHECK (final_price >= 0),
    currency            char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- Payment happens outside the system; this is its reference, used once.
    payment_reference   text NOT NULL
        CONSTRAINT package_purchases_payment_reference_check
        CHECK (length(btrim(payment_reference)) BETWEEN 1 AND 200),
    purchased_at        timestamptz NOT NULL DEFAULT now(),
    expires_at          timestamptz,
    status              text NOT NULL DEFAULT 'active'
        CONSTRAINT package_purchases_status_check
        CHECK (status IN ('active', 'exhausted', 'expired', 'revoked')),
    expiry_warned_at    timestamptz,
    ended_at            timestamptz,
    created_by          uuid REFERENCES users (id),
    CONSTRAINT package_purchases_payment_reference_key UNIQUE (payment_reference),
    CONSTRAINT package_purchases_expiry_after_purchase
        CHECK (expires_at IS NULL OR expires_at > purchased_at)
);
CREATE INDEX package_purchases_user ON package_purchases (user_id, purchased_at DESC);
CREATE INDEX package_purchases_specialist ON package_purchases (specialist_id, purchased_at);
CREATE INDEX package_purchases_package ON package_purchases (package_id, purchased_at);
-- The daily expiry job's two questions: what expires soon, what has expired.
CREATE INDEX package_purchases_expiring ON package_purchases (expires_at)
    WHERE status IN ('active', 'exhausted') AND expires_at IS NOT NULL;

ALTER TABLE package_purchases ENABLE ROW LEVEL SECURITY;
ALTER TABLE package_purchases FORCE ROW LEVEL SECURITY;
-- The buyer, the package's specialist (holding the role) and admins; HR sees none.
CREATE POLICY package_purchases_select ON package_purchases FOR SELECT TO authenticated
    USING (user_id = (SELECT auth.uid()) OR (SELECT auth.is_admin())
           OR auth.is_specialist(specialist_id));
GRANT SELECT ON package_purchases TO authenticated, service_role;

-- The ledger and bookings now point at real purchases.
ALTER TABLE bookings ADD CONSTRAINT bookings_package_purchase_fkey
    FOREIGN KEY (package_purchase_id) REFERENCES package_purchases (id);
ALTER TABLE bookings ADD CONSTRAINT bookings_package_funding
    CHECK ((funding = 'package') = (package_purchase_id IS NOT NULL));
ALTER TABLE session_credit_ledger ADD CONSTRAINT session_credit_ledger_package_purchase_fkey
    FOREIGN KEY (package_purchase_id) REFERENCES package_purchases (id);
CREATE INDEX session_credit_ledger_purchase ON session_credit_ledger (package_purchase_id)
    WHERE package_purchase_id IS NOT NULL;
CREATE INDEX bookings_package_purchase ON bookings (package_purchase_id)
    WHERE package_purchase_id IS NOT NULL;

-- A purchase's sessions, from the ledger: held (reserved and not released: upcoming,
-- used or forfeited), used (consumed or forfeited), remaining (total − held; nothing
-- once expired or revoked) and expired_unused (what expiry left behind, reported,
-- never refunded).
CREATE FUNCTION package_purchase_balance(p_purchase package_purchases)
    RETURNS TABLE (sessions_held integer, sessions_used integer, sessions_remaining integer,
                   sessions_expired integer)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    WITH l AS (
        SELECT coalesce(sum(sessions) FILTER (WHERE entry = 'reserve'), 0)
               - coalesce(sum(sessions) FILTER (WHERE entry = 'release'), 0) AS held,
               coalesce(sum(sessions) FILTER (WHERE entry IN ('consume', 'forfeit')), 0) AS used
        FROM public.session_credit_ledger
        WHERE package_purchase_id = p_purchase.id
          -- Only the purchase's own parties learn its balance.
          AND (p_purchase.user_id = auth.uid() OR auth.is_admin()
               OR auth.is_specialist(p_purchase.specialist_id)
               OR auth.role() = 'service_role')
    )
    SELECT held::integer, used::integer,
           CASE WHEN p_purchase.status IN ('expired', 'revoked') THEN 0
                ELSE p_purchase.sessions_total - held END::integer,
           CASE WHEN p_purchase.status = 'expired'
                THEN p_purchase.sessions_total - held ELSE 0 END::integer
    FROM l
$$;
GRANT EXECUTE ON FUNCTION package_purchase_balance(package_purchases)
    TO authenticated, service_role;

-- Managing packages -------------------------------------------------------------------------

-- A package's pillar must be one the specialist offers, its session type active and
-- of that pillar.
CREATE FUNCTION package_offer_check(p_specialist uuid, p_pillar text, p_session_type uuid)
    RETURNS void
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    kind public.session_types;
BEGIN
    IF p_pillar IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM public.specialists WHERE id = p_specialist AND p_pillar = ANY (pillars))
    THEN
        RAISE EXCEPTION 'the specialist does not work in that pillar'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'pillar_not_offered';
    END IF;
    IF p_session_type IS NOT NULL THEN
        SELECT * INTO kind FROM public.session_types WHERE id = p_session_type AND is_active;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'session type not found'
                USING ERRCODE = 'no_data_found', CONSTRAINT = 'session_type_not_found';
        END IF;
        IF p_pillar IS NOT NULL AND kind.pillar <> p_pillar THEN
            RAISE EXCEPTION 'the session type belongs to another pillar'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'pillar_not_offered';
        END IF;
    END IF;
END
$$;
-- A specialist creates packages for themselves, an admin for any specialist.
CREATE FUNCTION create_package(p_specialist uuid, p_name text, p_description text,
                               p_session_count integer, p_price numeric, p_currency text,
                               p_discount numeric DEFAULT 0, p_valid_for_days integer DEFAULT NULL,
                               p_pillar text DEFAULT NULL, p_session_type uuid DEFAULT NULL)
    RETURNS SETOF package_offers
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    created public.booking_packages;
BEGIN
    IF NOT (auth.has_role('specialist') OR auth.is_admin()) THEN
        RAISE EXCEPTION 'packages are offered by specialists (and administrators)'
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'specialist_or_admin_only';
    END IF;
    PERFORM public.require_specialist_or_admin(p_specialist);
    IF p_price <> round(p_price, 2) OR coalesce(p_discount, 0) <> round(p_discount, 2) THEN
        RAISE EXCEPTION 'amounts and percentages have at most two decimals'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'invalid_request';
    END IF;
    PERFORM public.package_offer_check(p_specialist, p_pillar, p_session_type);
    INSERT INTO public.booking_packages (specialist_id, name, description, session_count, price,
                                         currency, discount_percentage, valid_for_days, pillar,
                                         session_type_id)
    VALUES (p_specialist, btrim(p_name), p_description, p_session_count, p_price, p_currency,
            coalesce(p_discount, 0), p_valid_for_days, p_pillar, p_session_type)
    RETURNING * INTO created;
    PERFORM public.audit_log('package.created', 'booking_package', created.id::text,
                             p_new => to_jsonb(created) - 'created_at' - 'updated_at');
    RETURN QUERY SELECT * FROM public.package_offers WHERE id = created.id;
END
$$;

-- The package the caller manages (its specialist or an admin), locked; 404 for anyone
-- who may not see it, 403 for those who see it but may not change it.
CREATE FUNCTION managed_package(p_id uuid) RETURNS booking_packages
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    p public.booking_packages;
BEGIN
    SELECT * INTO p FROM public.booking_packages WHERE id = p_id FOR UPDATE;
    IF NOT FOUND OR NOT (p.is_active OR auth.is_admin() OR p.specialist_id = auth.uid()) THEN
        RAISE EXCEPTION 'package not found'
            USING ERRCODE = 'no_data_found', CONSTRAINT = 'package_not_found';
    END IF;
    IF NOT (auth.is_specialist(p.specialist_id) OR auth.is_admin()) THEN
        RAISE EXCEPTION 'only the package''s specialist or an administrator may change it'
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'specialist_or_admin_only';
    END IF;
    RETURN p;
END
$$;

-- Change some fields (keys of `p_changes` among name, description, session_count,
-- price, currency, discount_percentage, valid_for_days, pillar, session_type_id,
-- is_active). Purchases keep what they bought.
CREATE FUNCTION update_package(p_id uuid, p_changes jsonb) RETURNS SETOF package_offers
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    old public.booking_packages := public.managed_package(p_id);
    new public.booking_packages;
    unknown text;
BEGIN
    SELECT k INTO unknown FROM jsonb_object_keys(p_changes) k
    WHERE k NOT IN ('name', 'description', 'session_count', 'price', 'currency',
                    'discount_percentage', 'valid_for_days', 'pillar', 'session_type_id',
                    'is_active')
    LIMIT 1;
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION 'unknown field %', unknown
            USING ERRCODE = 'check_violation', CONSTRAINT = 'invalid_request';
    END IF;
    new := jsonb_populate_record(old, p_changes);
    IF new.price <> round(new.price, 2)
       OR new.discount_percentage <> round(new.discount_percentage, 2) THEN
        RAISE EXCEPTION 'amounts and percentages have at most two decimals'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'invalid_request';
    END IF;
    PERFORM public.package_offer_check(old.specialist_id, new.pillar, new.session_type_id);
    UPDATE public.booking_packages
    SET name = btrim(new.name), description = new.description,
        session_count = new.session_count, price = new.price, currency = new.currency,
        discount_percentage = new.discount_percentage, valid_for_days = new.valid_for_days,
        pillar = new.pillar, session_type_id = new.session_type_id, is_active = new.is_active,
        updated_at = now()
    WHERE id = p_id
    RETURNING * INTO new;
    PERFORM public.audit_log('package.updated', 'booking_package', p_id::text,
                             p_old => to_jsonb(old) - 'created_at' - 'updated_at',
                             p_new => to_jsonb(new) - 'created_at' - 'updated_at');
    RETURN QUERY SELECT * FROM public.package_offers WHERE id = p_id;
END
$$;

CREATE FUNCTION deactivate_package(p_id uuid) RETURNS SETOF package_offers
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    PERFORM public.managed_package(p_id);
    UPDATE public.booking_packages SET is_active = false, updated_at = now()
    WHERE id = p_id AND is_active;
    IF FOUND THEN
        PERFORM public.audit_log('package.deactivated', 'booking_package', p_id::text);
    END IF;
    RETURN QUERY SELECT * FROM public.package_offers WHERE id = p_id;
END
$$;

-- Once bought, a package stays (deactivated, never deleted): purchases refer to it.
CREATE TRIGGER booking_packages_kept
    BEFORE DELETE OR TRUNCATE ON booking_packages
    FOR EACH STATEMENT EXECUTE FUNCTION forbid_change();

-- Buying ----------------------------------------------------------------------------------

-- Buy an active package for yourself (an admin: for anyone), with the reference of a
-- payment made outside the system. Snapshots the offer and its final price; the
-- expiry counts from now. The buyer is emailed a confirmation.
CREATE FUNCTION purchase_package(p_package uuid, p_payment_reference text,
                                 p_user uuid DEFAULT NULL)
    RETURNS SETOF package_purchases
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    me uuid := auth.uid();
    buyer uuid := coalesce(p_user, auth.uid());
    p public.booking_packages;
    created public.package_purchases;
BEGIN
    IF me IS NULL THEN
        RAISE EXCEPTION 'purchases are made by a signed-in person'
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'sign_in_required';
    END IF;
    IF buyer <> me AND NOT auth.is_admin() THEN
        RAISE EXCEPTION 'only an administrator buys for someone else'
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'purchase_for_others';
    END IF;
    SELECT * INTO p FROM public.booking_packages WHERE id = p_package FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'package not found'
            USING ERRCODE = 'no_data_found', CONSTRAINT = 'package_not_found';
    END IF;
    -- Someone holding the link of a package no longer sold learns just that.
    IF NOT p.is_active THEN
        RAISE EXCEPTION 'the package is no longer sold'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'package_inactive';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM public.users WHERE id = buyer AND is_active) THEN
        RAISE EXCEPTION 'user not found'
            USING ERRCODE = 'no_data_found', CONSTRAINT = 'user_not_found';
    END IF;
    IF buyer = p.specialist_id THEN
        RAISE EXCEPTION 'a specialist cannot buy their own package'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'package_not_applicable';
    END IF;
    INSERT INTO public.package_purchases
        (package_id, user_id, specialist_id, name, pillar, session_type_id, sessions_total,
         price, discount_percentage, final_price, currency, payment_reference, expires_at,
         created_by)
    VALUES (p.id, buyer, p.specialist_id, p.name, p.pillar, p.session_type_id, p.session_count,
            p.price, p.discount_percentage,
            public.package_final_price(p.price, p.discount_percentage), p.currency,
            btrim(p_payment_reference),
            now() + make_interval(days => p.valid_for_days), me)
    RETURNING * INTO created;
    PERFORM public.audit_log('package.purchased', 'package_purchase', created.id::text,
                             p_new => jsonb_build_object(
                                 'package_id', p.id, 'user_id', buyer,
                                 'final_price', created.final_price::text,
                                 'currency', created.currency,
                                 'sessions_total', created.sessions_total));
    PERFORM public.queue_email(buyer, 'package_purchased',
                               public.package_email_params(created), 'package_purchased');
    PERFORM public.notify_user(buyer, 'package_purchased', 'Pacote adquirido',
                               'O pacote «' || created.name || '» está ativo: '
                               || created.sessions_total || ' sessões.',
                               jsonb_build_object('purchase_id', created.id));
    RETURN NEXT created;
END
$$;

-- What the emails about a purchase say (templates in notification/templates.py).
CREATE FUNCTION package_email_params(p package_purchases) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT jsonb_build_object(
        'name', u.full_name, 'package', p.name, 'specialist', s.display_name,
        'sessions', p.sessions_total, 'amount', p.final_price::text, 'currency', p.currency,
        'expires_at', p.expires_at, 'timezone', s.timezone, 'purchase_id', p.id,
        'reference', p.payment_reference)
    FROM public.users u, public.specialists s
    WHERE u.id = p.user_id AND s.id = p.specialist_id
$$;

-- An admin ends a purchase (a payment that failed or was charged back): no new
-- bookings against it; sessions already booked stay until someone cancels them.
CREATE FUNCTION revoke_package_purchase(p_id uuid, p_reason text) RETURNS SETOF package_purchases
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    row public.package_purchases;
BEGIN
    PERFORM public.require_admin();
    IF p_reason IS NULL OR length(btrim(p_reason)) NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'a reason of 1 to 1000 characters is required'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'invalid_request';
    END IF;
    UPDATE public.package_purchases SET status = 'revoked', ended_at = now()
    WHERE id = p_id AND status IN ('active', 'exhausted')
    RETURNING * INTO row;
    IF NOT FOUND THEN
        SELECT * INTO row FROM public.package_purchases WHERE id = p_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'purchase not found'
                USING ERRCODE = 'no_data_found', CONSTRAINT = 'purchase_not_found';
        END IF;
        RAISE EXCEPTION 'the purchase is already %', row.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'purchase_ended';
    END IF;
    PERFORM public.audit_log('package.purchase_revoked', 'package_purchase', p_id::text,
                             p_details => jsonb_build_object('reason', btrim(p_reason)));
    RETURN NEXT row;
END
$$;

-- Booking against a purchase ---------------------------------------------------------------

-- Reserve one session of a booking's funding source: the company's quota (as before,
-- unchanged) or the booking's package purchase, under the purchase's row lock: the
-- buyer's own, active, not expired by the session's start, for this specialist (and
-- pillar or session type when the package names one), with a session left.
CREATE OR REPLACE FUNCTION reserve_session_credit(p_booking uuid) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    b public.bookings;
    allocation integer;
    pool integer;
    member_held integer;
    company_held integer;
    purchase public.package_purchases;
    purchase_held integer;
BEGIN
    SELECT * INTO b FROM public.bookings WHERE id = p_booking;
    IF NOT FOUND OR NOT (b.user_id = auth.uid() OR auth.is_admin()
                         OR auth.role() = 'service_role') THEN
        RAISE EXCEPTION 'booking not found' USING ERRCODE = 'no_data_found';
    END IF;
    IF b.funding = 'package' THEN
        SELECT * INTO purchase FROM public.package_purchases
        WHERE id = b.package_purchase_id FOR UPDATE;
        IF NOT FOUND OR purchase.user_id <> b.user_id THEN
            RAISE EXCEPTION 'purchase not found'
                USING ERRCODE = 'no_data_found', CONSTRAINT = 'purchase_not_found';
        END IF;
        IF purchase.status = 'expired'
           OR (purchase.expires_at IS NOT NULL AND b.starts_at >= purchase.expires_at) THEN
            RAISE EXCEPTION 'the package expires before the session'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'package_expired';
        END IF;
        IF purchase.status = 'revoked' THEN
            RAISE EXCEPTION 'the purchase was revoked'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'package_not_applicable';
        END IF;
        IF purchase.specialist_id <> b.specialist_id
           OR (purchase.pillar IS NOT NULL AND purchase.pillar <> b.pillar)
           OR (purchase.session_type_id IS NOT NULL
               AND purchase.session_type_id IS DISTINCT FROM b.session_type_id) THEN
            RAISE EXCEPTION 'the package is for another specialist or kind of session'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'package_not_applicable';
        END IF;
        SELECT coalesce(sum(CASE entry WHEN 'reserve' THEN sessions
                                       WHEN 'release' THEN -sessions ELSE 0 END), 0)
          INTO purchase_held
        FROM public.session_credit_ledger WHERE package_purchase_id = purchase.id;
        IF purchase_held + 1 > purchase.sessions_total THEN
            RAISE EXCEPTION 'no sessions left in the package'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'session_credits_available';
        END IF;
        INSERT INTO public.session_credit_ledger (user_id, package_purchase_id, booking_id,
                                                  entry, created_by)
        VALUES (b.user_id, purchase.id, b.id, 'reserve', auth.uid());
        RETURN;
    END IF;
    IF b.funding <> 'company_quota' THEN
        RETURN;
    END IF;
    INSERT INTO public.session_credit_company_usage (company_id) VALUES (b.company_id)
    ON CONFLICT (company_id) DO NOTHING;
    SELECT u.held INTO company_held FROM public.session_credit_company_usage u
    WHERE u.company_id = b.company_id FOR UPDATE;
    SELECT m.session_allocation, c.session_pool INTO allocation, pool
    FROM public.company_members m JOIN public.companies c ON c.id = m.company_id
    WHERE m.user_id = b.user_id AND m.company_id = b.company_id AND m.removed_at IS NULL
      AND c.is_active;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'not an active member of an active company'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'session_credit_membership';
    END IF;
    SELECT coalesce((SELECT u.held FROM public.session_credit_member_usage u
                     WHERE u.company_id = b.company_id AND u.user_id = b.user_id), 0)
      INTO member_held;
    IF member_held + 1 > allocation THEN
        RAISE EXCEPTION 'no sessions left in the allocation'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'session_credits_available';
    END IF;
    IF company_held + 1 > pool THEN
        RAISE EXCEPTION 'no sessions left in the company pool'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'company_session_pool_available';
    END IF;
    INSERT INTO public.session_credit_ledger (user_id, company_id, booking_id, entry, created_by)
    VALUES (b.user_id, b.company_id, b.id, 'reserve', auth.uid());
END
$$;

-- A purchase's status follows its ledger in the same transaction: exhausted when every
-- session is held, active again when a release gives one back.
CREATE FUNCTION session_credit_ledger_track_purchase() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    held integer;
BEGIN
    IF NEW.package_purchase_id IS NULL OR NEW.entry NOT IN ('reserve', 'release') THEN
        RETURN NULL;
    END IF;
    SELECT coalesce(sum(CASE entry WHEN 'reserve' THEN sessions
                                   WHEN 'release' THEN -sessions ELSE 0 END), 0)
      INTO held
    FROM public.session_credit_ledger WHERE package_purchase_id = NEW.package_purchase_id;
    UPDATE public.package_purchases
    SET status = CASE WHEN held >= sessions_total THEN 'exhausted' ELSE 'active' END
    WHERE id = NEW.package_purchase_id AND status IN ('active', 'exhausted')
      AND status <> CASE WHEN held >= sessions_total THEN 'exhausted' ELSE 'active' END;
    RETURN NULL;
END
$$;
CREATE TRIGGER session_credit_ledger_track_purchase AFTER INSERT ON session_credit_ledger
    FOR EACH ROW EXECUTE FUNCTION session_credit_ledger_track_purchase();

-- Bookings take a package purchase as their funding: create_booking gains
-- `p_package_purchase` (the body's `package_purchase_id`); the rest is 0017's.
DROP FUNCTION create_booking(uuid, timestamptz, uuid, text, text, text, uuid, text, text, text);
CREATE FUNCTION create_booking(p_specialist uuid, p_starts_at timestamptz,
                               p_session_type uuid DEFAULT NULL, p_pillar text DEFAULT NULL,
                               p_mode text DEFAULT NULL, p_funding text DEFAULT NULL,
                               p_user uuid DEFAULT NULL, p_default_currency text DEFAULT 'MZN',
                               p_idempotency_key text DEFAULT NULL,
                               p_request_hash text DEFAULT NULL,
                               p_package_purchase uuid DEFAULT NULL)
    RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    me uuid := auth.uid();
    admin boolean := auth.is_admin();
    target uuid := coalesce(p_user, auth.uid());
    s public.specialists;
    kind public.session_types;
    duration interval;
    chosen_pillar text;
    chosen_mode text;
    ends timestamptz;
    membership record;
    company uuid;
    chosen_funding text;
    purchase public.package_purchases;
    price numeric;
    currency text;
    rate record;
    created public.bookings;
    replay jsonb;
    result jsonb;
BEGIN
    IF me IS NULL THEN
        RAISE EXCEPTION 'bookings are made by a signed-in person'
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'sign_in_required';
    END IF;
    IF p_idempotency_key IS NOT NULL THEN
        replay := public.idempotency_claim(p_idempotency_key, p_request_hash);
        IF replay IS NOT NULL THEN
            RETURN replay;
        END IF;
    END IF;
    IF target <> me AND NOT admin THEN
        RAISE EXCEPTION 'you can only book sessions for yourself'
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'booking_for_others';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM public.users WHERE id = target AND is_active) THEN
        RAISE EXCEPTION 'user not found' USING ERRCODE = 'no_data_found',
            CONSTRAINT = 'user_not_found';
    END IF;
    IF (p_package_purchase IS NULL AND p_funding = 'package')
       OR (p_package_purchase IS NOT NULL AND coalesce(p_funding, 'package') <> 'package') THEN
        RAISE EXCEPTION 'package funding names a purchase, and only it does'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'invalid_request';
    END IF;
    IF p_package_purchase IS NOT NULL THEN
        -- Someone else's purchase is not even acknowledged.
        SELECT * INTO purchase FROM public.package_purchases
        WHERE id = p_package_purchase AND user_id = target;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'purchase not found'
                USING ERRCODE = 'no_data_found', CONSTRAINT = 'purchase_not_found';
        END IF;
    END IF;
    -- Writers of one calendar take turns (see 0013); the lock is taken first here.
    SELECT * INTO s FROM public.specialists WHERE id = p_specialist FOR NO KEY UPDATE;
    IF NOT FOUND OR NOT (s.is_active OR admin) THEN
        RAISE EXCEPTION 'specialist not found'
            USING ERRCODE = 'no_data_found', CONSTRAINT = 'specialist_not_found';
    END IF;
    IF NOT s.is_active OR NOT EXISTS (
        SELECT 1 FROM public.user_roles
        WHERE user_id = s.id AND role = 'specialist' AND revoked_at IS NULL) THEN
        RAISE EXCEPTION 'the specialist is not taking bookings'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'specialist_inactive';
    END IF;
    IF target = s.id THEN
        RAISE EXCEPTION 'a specialist cannot book a session with themselves'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'bookings_not_with_self';
    END IF;
    duration := make_interval(mins => s.default_duration_minutes);
    IF p_session_type IS NOT NULL THEN
        SELECT * INTO kind FROM public.session_types WHERE id = p_session_type AND is_active;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'session type not found'
                USING ERRCODE = 'no_data_found', CONSTRAINT = 'session_type_not_found';
        END IF;
        duration := make_interval(mins => kind.default_duration_minutes);
    END IF;
    chosen_pillar := coalesce(p_pillar, kind.pillar, purchase.pillar, s.pillars[1]);
    IF NOT chosen_pillar = ANY (s.pillars) THEN
        RAISE EXCEPTION 'the specialist does not work in that pillar'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'pillar_not_offered';
    END IF;
    chosen_mode := coalesce(p_mode, s.modes[1]);
    IF NOT chosen_mode = ANY (s.modes) THEN
        RAISE EXCEPTION 'the specialist does not offer that mode'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'mode_not_offered';
    END IF;
    ends := p_starts_at + duration;
    IF admin AND p_user IS NOT NULL THEN
        -- A manual booking by an admin may fall outside the slots, never in the past.
        IF p_starts_at <= now() THEN
            RAISE EXCEPTION 'the session would already have started'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'booking_in_past';
        END IF;
        IF p_starts_at > now() + interval '366 days' THEN
            RAISE EXCEPTION 'too far ahead'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'outside_availability';
        END IF;
    ELSIF NOT public.booking_time_allowed(s, p_starts_at, ends) THEN
        RAISE EXCEPTION 'that time is not one of the specialist''s bookable slots'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'outside_availability';
    END IF;
    IF p_package_purchase IS NOT NULL THEN
        chosen_funding := 'package';
        -- A package session is priced at the package's price per session.
        price := round(purchase.final_price / purchase.sessions_total, 2);
        currency := purchase.currency;
    ELSE
        SELECT m.company_id, c.is_active INTO membership
        FROM public.company_members m JOIN public.companies c ON c.id = m.company_id
        WHERE m.user_id = target AND m.removed_at IS NULL;
        IF p_funding = 'self_pay' THEN
            chosen_funding := 'self_pay';
        ELSIF p_funding IS NOT NULL AND p_funding <> 'company_quota' THEN
            RAISE EXCEPTION 'unknown funding %', p_funding
                USING ERRCODE = 'check_violation', CONSTRAINT = 'invalid_request';
        ELSIF membership.company_id IS NULL THEN
            IF p_funding = 'company_quota' THEN
                RAISE EXCEPTION 'company-funded sessions need an active membership'
                    USING ERRCODE = 'check_violation', CONSTRAINT = 'session_credit_membership';
            END IF;
            chosen_funding := 'self_pay';
        ELSIF NOT membership.is_active THEN
            RAISE EXCEPTION 'the company is deactivated'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'company_inactive';
        ELSE
            company := membership.company_id;
            chosen_funding := 'company_quota';
        END IF;
        SELECT r.amount, r.currency INTO rate
        FROM public.specialist_rate_on(s.id, p_session_type,
                                       (p_starts_at AT TIME ZONE s.timezone)::date) r;
        price := coalesce(rate.amount, 0);
        currency := coalesce(rate.currency, p_default_currency);
    END IF;
    PERFORM set_config('app.status_reason', '', true);
    INSERT INTO public.bookings (user_id, specialist_id, company_id, pillar, session_type_id,
                                 starts_at, ends_at, blocked_until, buffer_minutes, mode, price,
                                 currency, funding, package_purchase_id, created_by)
    VALUES (target, s.id, company, chosen_pillar, p_session_type, p_starts_at, ends, ends,
            s.buffer_minutes, chosen_mode, price, currency, chosen_funding,
            p_package_purchase, me)
    RETURNING * INTO created;
    IF chosen_funding IN ('company_quota', 'package') THEN
        PERFORM public.reserve_session_credit(created.id);
    END IF;
    PERFORM public.audit_log('booking.created', 'booking', created.id::text,
                             p_new => jsonb_build_object('starts_at', created.starts_at,
                                                         'funding', chosen_funding,
                                                         'specialist_id', s.id,
                                                         'user_id', target));
    PERFORM public.queue_email(target, 'booking_created', public.booking_email_params(created.id),
                               'booking_created');
    result := public.booking_json(created);
    IF p_idempotency_key IS NOT NULL THEN
        PERFORM public.idempotency_store(p_idempotency_key, result);
    END IF;
    RETURN result;
END
$$;

-- A package session cannot be moved past its purchase's expiry.
CREATE FUNCTION bookings_package_expiry() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM public.package_purchases
               WHERE id = NEW.package_purchase_id AND NEW.starts_at >= expires_at) THEN
        RAISE EXCEPTION 'the package expires before the session'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'package_expired';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER bookings_package_expiry
    BEFORE UPDATE OF starts_at ON bookings
    FOR EACH ROW WHEN (NEW.package_purchase_id IS NOT NULL AND NEW.starts_at <> OLD.starts_at)
    EXECUTE FUNCTION bookings_package_expiry();

-- Expiry (the daily job) --------------------------------------------------------------------

-- Warn, once per purchase, the buyers whose unused sessions expire within 7 days.
CREATE FUNCTION warn_expiring_packages() RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    p public.package_purchases;
    left_ integer;
    warned integer := 0;
BEGIN
    FOR p IN
        SELECT * FROM public.package_purchases
        WHERE status IN ('active', 'exhausted') AND expires_at IS NOT NULL
          AND expires_at > now() AND expires_at <= now() + interval '7 days'
          AND expiry_warned_at IS NULL
        ORDER BY expires_at
        FOR UPDATE SKIP LOCKED
    LOOP
        UPDATE public.package_purchases SET expiry_warned_at = now() WHERE id = p.id;
        SELECT sessions_remaining INTO left_ FROM public.package_purchase_balance(p);
        IF left_ > 0 THEN
            PERFORM public.queue_email(p.user_id, 'package_expiring',
                                       public.package_email_params(p)
                                       || jsonb_build_object('remaining', left_),
                                       'package_expiring');
            PERFORM public.notify_user(p.user_id, 'package_expiring', 'Pacote a expirar',
                                       'O pacote «' || p.name || '» expira em breve com '
                                       || left_ || ' sessões por usar.',
                                       jsonb_build_object('purchase_id', p.id));
            warned := warned + 1;
        END IF;
    END LOOP;
    RETURN warned;
END
$$;

-- Purchases past their expiry become `expired`; the sessions they leave unused are
-- reported (audit and the buyer's email), never refunded.
CREATE FUNCTION expire_packages() RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    p public.package_purchases;
    unused integer;
    expired integer := 0;
BEGIN
    FOR p IN
        SELECT * FROM public.package_purchases
        WHERE status IN ('active', 'exhausted') AND expires_at <= now()
        ORDER BY expires_at
        FOR UPDATE SKIP LOCKED
    LOOP
        UPDATE public.package_purchases SET status = 'expired', ended_at = now()
        WHERE id = p.id RETURNING * INTO p;
        SELECT sessions_expired INTO unused FROM public.package_purchase_balance(p);
        PERFORM public.audit_log('package.expired', 'package_purchase', p.id::text,
                                 p_details => jsonb_build_object('sessions_unused', unused));
        IF unused > 0 THEN
            PERFORM public.queue_email(p.user_id, 'package_expired',
                                       public.package_email_params(p)
                                       || jsonb_build_object('unused', unused),
                                       'package_expiring');
        END IF;
        expired := expired + 1;
    END LOOP;
    RETURN expired;
END
$$;

-- Sales report ------------------------------------------------------------------------------

-- Per package and month of purchase: purchases, revenue (per currency), sessions sold,
-- used (consumed or forfeited) and expired unused. Admins see all, a specialist their own.
CREATE FUNCTION package_sales_report(p_from date, p_to date)
    RETURNS TABLE (package_id uuid, package_name text, specialist_id uuid, month text,
                   currency text, purchases bigint, revenue numeric, sessions_sold bigint,
                   sessions_used bigint, sessions_expired bigint)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    admin boolean := auth.is_admin();
    specialist uuid := CASE WHEN auth.has_role('specialist') THEN auth.uid() END;
BEGIN
    IF NOT admin AND specialist IS NULL THEN
        RAISE EXCEPTION 'reports are for specialists and administrators'
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'report_forbidden';
    END IF;
    RETURN QUERY
    SELECT p.package_id, k.name, p.specialist_id,
           to_char(p.purchased_at AT TIME ZONE 'UTC', 'YYYY-MM'), p.currency::text,
           count(*), sum(p.final_price), sum(p.sessions_total)::bigint,
           sum(b.sessions_used)::bigint, sum(b.sessions_expired)::bigint
    FROM public.package_purchases p
    JOIN public.booking_packages k ON k.id = p.package_id
    CROSS JOIN LATERAL public.package_purchase_balance(p) b
    WHERE p.purchased_at >= p_from::timestamp AT TIME ZONE 'UTC'
      AND p.purchased_at < (p_to + 1)::timestamp AT TIME ZONE 'UTC'
      AND (admin OR p.specialist_id = specialist)
    GROUP BY 1, 2, 3, 4, 5
    ORDER BY 4, 2, 1, 5;
END
$$;

-- The public package list is cached in each API process (`cache.public_reads`); these
-- tell the processes, at commit, that what it is made of changed.
CREATE FUNCTION notify_public_catalog() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify('ms_public_catalog', TG_TABLE_NAME);
    RETURN NULL;
END
$$;
CREATE TRIGGER booking_packages_notify AFTER INSERT OR UPDATE OR DELETE ON booking_packages
    FOR EACH STATEMENT EXECUTE FUNCTION notify_public_catalog();
CREATE TRIGGER specialist_rates_notify AFTER INSERT OR UPDATE OR DELETE ON specialist_rates
    FOR EACH STATEMENT EXECUTE FUNCTION notify_public_catalog();
CREATE TRIGGER specialists_notify AFTER UPDATE ON specialists
    FOR EACH STATEMENT EXECUTE FUNCTION notify_public_catalog();

-- Grants ----------------------------------------------------------------------------------

REVOKE EXECUTE ON FUNCTION package_offer_check(uuid, text, uuid), managed_package(uuid),
    package_email_params(package_purchases), warn_expiring_packages(), expire_packages(),
    session_credit_ledger_track_purchase(), bookings_package_expiry()
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    create_package(uuid, text, text, integer, numeric, text, numeric, integer, text, uuid),
    update_package(uuid, jsonb), deactivate_package(uuid),
    purchase_package(uuid, text, uuid), revoke_package_purchase(uuid, text),
    package_sales_report(date, date),
    create_booking(uuid, timestamptz, uuid, text, text, text, uuid, text, text, text, uuid)
    TO authenticated;
GRANT EXECUTE ON FUNCTION package_final_price(numeric, numeric), package_saving(uuid),
    api_instant(timestamptz)
    TO anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION warn_expiring_packages(), expire_packages() TO service_role;
