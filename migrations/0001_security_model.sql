-- The security model (SPEC §2): the roles every connection switches to, the
-- auth.* functions policies read, and the append-only audit log.
-- Roles are cluster-wide, so they are created only when missing.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        CREATE ROLE anon NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        CREATE ROLE authenticated NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
        CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
    END IF;
    -- The login role of the API and workers: no privileges of its own (NOINHERIT,
    -- no BYPASSRLS); it can only act after switching to one of the roles above.
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ms_app') THEN
        CREATE ROLE ms_app LOGIN NOINHERIT NOBYPASSRLS;
    END IF;
END
$$;

GRANT anon, authenticated, service_role TO ms_app;

-- The job queue belongs to the service: its tables hold only ids, never user data.
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ms_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO ms_app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO ms_app;
REVOKE ALL ON schema_migrations FROM ms_app;

CREATE SCHEMA auth;
GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;

-- Claims of the current transaction, as PostgREST publishes them.
CREATE FUNCTION auth.jwt() RETURNS jsonb
    LANGUAGE sql STABLE
AS $$
    SELECT coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}')::jsonb
$$;

CREATE FUNCTION auth.uid() RETURNS uuid
    LANGUAGE sql STABLE
AS $$
    SELECT nullif(auth.jwt() ->> 'sub', '')::uuid
$$;

CREATE FUNCTION auth.role() RETURNS text
    LANGUAGE sql STABLE
AS $$
    SELECT coalesce(auth.jwt() ->> 'role', 'anon')
$$;

-- People: one id space for employees, specialists, HR and admins.
CREATE TABLE users (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email             text NOT NULL CHECK (email = lower(email) AND length(email) <= 254),
    password_hash     text,
    full_name         text NOT NULL CHECK (length(full_name) BETWEEN 1 AND 200),
    email_verified_at timestamptz,
    locked_until      timestamptz,
    is_active         boolean NOT NULL DEFAULT true,
    anonymized_at     timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_email_key UNIQUE (email)
);

CREATE TABLE companies (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name           text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    nuit           text CHECK (nuit ~ '^[0-9]{9}$'),
    contact_email  text,
    contact_phone  text,
    plan           text NOT NULL DEFAULT 'standard',
    employee_seats integer NOT NULL CHECK (employee_seats >= 0),
    session_pool   integer NOT NULL DEFAULT 0 CHECK (session_pool >= 0),
    is_active      boolean NOT NULL DEFAULT true,
    deactivated_at timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT companies_nuit_key UNIQUE (nuit)
);

-- Roles are granted only by the server: from an accepted invite or by an admin.
CREATE TABLE user_roles (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       text NOT NULL CHECK (role IN ('user', 'specialist', 'hr', 'admin')),
    company_id uuid REFERENCES companies (id),
    granted_by uuid REFERENCES users (id),
    granted_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    CONSTRAINT user_roles_hr_has_company CHECK (role <> 'hr' OR company_id IS NOT NULL)
);
CREATE UNIQUE INDEX user_roles_one_active
    ON user_roles (user_id, role, coalesce(company_id, '00000000-0000-0000-0000-000000000000'))
    WHERE revoked_at IS NULL;

CREATE TABLE company_members (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    company_id         uuid NOT NULL REFERENCES companies (id),
    user_id            uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_allocation integer NOT NULL DEFAULT 0 CHECK (session_allocation >= 0),
    joined_at          timestamptz NOT NULL DEFAULT now(),
    removed_at         timestamptz
);
CREATE UNIQUE INDEX company_members_one_active
    ON company_members (user_id) WHERE removed_at IS NULL;
CREATE INDEX company_members_company ON company_members (company_id) WHERE removed_at IS NULL;

-- Role checks read the table, not the token, so a revoked role stops at once.
-- SECURITY DEFINER: policies on user_roles itself call these without recursion.
CREATE FUNCTION auth.has_role(wanted text) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT EXISTS (
        SELECT 1 FROM public.user_roles
        WHERE user_id = auth.uid() AND role = wanted AND revoked_at IS NULL
    )
$$;

CREATE FUNCTION auth.is_admin() RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT auth.has_role('admin')
$$;

-- The companies the caller administers as HR.
CREATE FUNCTION auth.hr_company_ids() RETURNS uuid[]
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT coalesce(array_agg(company_id), '{}')
    FROM public.user_roles
    WHERE user_id = auth.uid() AND role = 'hr' AND revoked_at IS NULL
$$;

REVOKE ALL ON FUNCTION auth.has_role(text), auth.is_admin(), auth.hr_company_ids() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth.jwt(), auth.uid(), auth.role() TO anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION auth.has_role(text), auth.is_admin(), auth.hr_company_ids()
    TO authenticated, service_role;

-- Append-only audit trail of every state change and privileged read (SPEC §11).
CREATE TABLE audit_logs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    actor_id    uuid,
    actor_role  text,
    action      text NOT NULL,
    entity_type text,
    entity_id   text,
    old_values  jsonb,
    new_values  jsonb,
    ip          inet,
    user_agent  text,
    outcome     text NOT NULL DEFAULT 'success'
        CHECK (outcome IN ('success', 'failure', 'denied')),
    details     jsonb
);
CREATE INDEX audit_logs_actor ON audit_logs (actor_id, occurred_at DESC);
CREATE INDEX audit_logs_entity ON audit_logs (entity_type, entity_id);
CREATE INDEX audit_logs_action ON audit_logs (action, occurred_at DESC);

CREATE FUNCTION forbid_change() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION '% rows are immutable', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege', CONSTRAINT = TG_TABLE_NAME || '_immutable';
END
$$;

CREATE TRIGGER audit_logs_immutable
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_logs
    FOR EACH STATEMENT EXECUTE FUNCTION forbid_change();

CREATE FUNCTION touch_updated_at() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER users_touch BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE TRIGGER companies_touch BEFORE UPDATE ON companies
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- Row-level security: enabled and forced everywhere user data lives.
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
ALTER TABLE companies ENABLE ROW LEVEL SECURITY;
ALTER TABLE companies FORCE ROW LEVEL SECURITY;
ALTER TABLE user_roles ENABLE ROW LEVEL SECURITY;
ALTER TABLE user_roles FORCE ROW LEVEL SECURITY;
ALTER TABLE company_members ENABLE ROW LEVEL SECURITY;
ALTER TABLE company_members FORCE ROW LEVEL SECURITY;
ALTER TABLE audit_logs ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_logs FORCE ROW LEVEL SECURITY;

-- users: yourself, the employees of a company you administer, or anyone for admins.
CREATE POLICY users_select ON users FOR SELECT TO authenticated
    USING (
        id = auth.uid()
        OR (SELECT auth.is_admin())
        OR EXISTS (
            SELECT 1 FROM company_members m
            WHERE m.user_id = users.id AND m.removed_at IS NULL
              AND m.company_id = ANY ((SELECT auth.hr_company_ids())::uuid[])
        )
    );
CREATE POLICY users_update_self ON users FOR UPDATE TO authenticated
    USING (id = auth.uid() OR (SELECT auth.is_admin()))
    WITH CHECK (id = auth.uid() OR (SELECT auth.is_admin()));
-- Password hashes and lockout state are never readable through the API roles.
GRANT SELECT (id, email, full_name, email_verified_at, is_active, created_at, updated_at)
    ON users TO authenticated;
GRANT UPDATE (full_name) ON users TO authenticated;

CREATE POLICY companies_select ON companies FOR SELECT TO authenticated
    USING (
        (SELECT auth.is_admin())
        OR id = ANY ((SELECT auth.hr_company_ids())::uuid[])
        OR EXISTS (
            SELECT 1 FROM company_members m
            WHERE m.company_id = companies.id AND m.user_id = auth.uid() AND m.removed_at IS NULL
        )
    );
CREATE POLICY companies_admin_write ON companies FOR ALL TO authenticated
    USING ((SELECT auth.is_admin())) WITH CHECK ((SELECT auth.is_admin()));
GRANT SELECT, INSERT, UPDATE ON companies TO authenticated;

CREATE POLICY user_roles_select ON user_roles FOR SELECT TO authenticated
    USING (user_id = auth.uid() OR (SELECT auth.is_admin()));
CREATE POLICY user_roles_admin_write ON user_roles FOR ALL TO authenticated
    USING ((SELECT auth.is_admin())) WITH CHECK ((SELECT auth.is_admin()));
GRANT SELECT, INSERT, UPDATE ON user_roles TO authenticated;

CREATE POLICY company_members_select ON company_members FOR SELECT TO authenticated
    USING (
        user_id = auth.uid()
        OR (SELECT auth.is_admin())
        OR company_id = ANY ((SELECT auth.hr_company_ids())::uuid[])
    );
CREATE POLICY company_members_manage ON company_members FOR ALL TO authenticated
    USING ((SELECT auth.is_admin()) OR company_id = ANY ((SELECT auth.hr_company_ids())::uuid[]))
    WITH CHECK ((SELECT auth.is_admin()) OR company_id = ANY ((SELECT auth.hr_company_ids())::uuid[]));
GRANT SELECT, INSERT, UPDATE ON company_members TO authenticated;

CREATE POLICY audit_logs_select ON audit_logs FOR SELECT TO authenticated
    USING (actor_id = auth.uid() OR (SELECT auth.is_admin()));
-- A caller may only record actions as themselves.
CREATE POLICY audit_logs_insert ON audit_logs FOR INSERT TO authenticated
    WITH CHECK (actor_id IS NOT DISTINCT FROM auth.uid());
GRANT SELECT, INSERT ON audit_logs TO authenticated;

GRANT SELECT, INSERT, UPDATE, DELETE ON users, companies, user_roles, company_members
    TO service_role;
GRANT SELECT, INSERT ON audit_logs TO service_role;
