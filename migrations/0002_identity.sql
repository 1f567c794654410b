-- Identity (SPEC §3): email tokens, refresh-token families, login failures,
-- invites, terms acceptance. Secrets are stored only as SHA-256 digests.

CREATE TABLE email_tokens (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    text NOT NULL CHECK (purpose IN ('verify_email', 'password_reset')),
    token_hash text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    CONSTRAINT email_tokens_hash_key UNIQUE (token_hash),
    CONSTRAINT email_tokens_expiry CHECK (expires_at > created_at)
);
CREATE INDEX email_tokens_user ON email_tokens (user_id, purpose);

-- Refresh tokens rotate within a family; presenting a used one revokes the family.
CREATE TABLE refresh_tokens (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id  uuid NOT NULL,
    parent_id  uuid REFERENCES refresh_tokens (id),
    token_hash text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    revoked_at timestamptz,
    CONSTRAINT refresh_tokens_hash_key UNIQUE (token_hash)
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id) WHERE revoked_at IS NULL;
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id) WHERE revoked_at IS NULL;

CREATE TABLE login_failures (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    ip          inet
);
CREATE INDEX login_failures_user ON login_failures (user_id, occurred_at DESC);

CREATE TABLE invites (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    code_hash          text NOT NULL,
    role               text NOT NULL CHECK (role IN ('user', 'hr', 'specialist')),
    company_id         uuid REFERENCES companies (id),
    email              text CHECK (email = lower(email)),
    session_allocation integer NOT NULL DEFAULT 0 CHECK (session_allocation >= 0),
    created_by         uuid REFERENCES users (id),
    created_at         timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz NOT NULL,
    accepted_at        timestamptz,
    accepted_by        uuid REFERENCES users (id),
    revoked_at         timestamptz,
    CONSTRAINT invites_code_key UNIQUE (code_hash),
    CONSTRAINT invites_company_role CHECK (role = 'specialist' OR company_id IS NOT NULL),
    CONSTRAINT invites_single_outcome CHECK (accepted_at IS NULL OR revoked_at IS NULL)
);
CREATE INDEX invites_pending ON invites (company_id)
    WHERE accepted_at IS NULL AND revoked_at IS NULL;

CREATE TABLE terms_acceptances (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    document    text NOT NULL CHECK (document IN ('terms', 'privacy')),
    version     text NOT NULL CHECK (length(version) BETWEEN 1 AND 40),
    accepted_at timestamptz NOT NULL DEFAULT now(),
    ip          inet,
    user_agent  text,
    CONSTRAINT terms_acceptances_once UNIQUE (user_id, document, version)
);

ALTER TABLE email_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE email_tokens FORCE ROW LEVEL SECURITY;
ALTER TABLE refresh_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE refresh_tokens FORCE ROW LEVEL SECURITY;
ALTER TABLE login_failures ENABLE ROW LEVEL SECURITY;
ALTER TABLE login_failures FORCE ROW LEVEL SECURITY;
ALTER TABLE invites ENABLE ROW LEVEL SECURITY;
ALTER TABLE invites FORCE ROW LEVEL SECURITY;
ALTER TABLE terms_acceptances ENABLE ROW LEVEL SECURITY;
ALTER TABLE terms_acceptances FORCE ROW LEVEL SECURITY;

-- Tokens and login failures: the service role only (sign-in paths). No policy
-- for authenticated means no row is ever visible to a user, not even their own.
GRANT SELECT, INSERT, UPDATE, DELETE ON email_tokens, refresh_tokens, login_failures
    TO service_role;

-- Invites: admins see all; HR sees and manages their companies' `user` invites.
CREATE POLICY invites_select ON invites FOR SELECT TO authenticated
    USING (
        (SELECT auth.is_admin())
        OR (role = 'user' AND company_id = ANY ((SELECT auth.hr_company_ids())::uuid[]))
    );
CREATE POLICY invites_insert ON invites FOR INSERT TO authenticated
    WITH CHECK (
        created_by = auth.uid()
        AND (
            (SELECT auth.is_admin())
            OR (role = 'user' AND company_id = ANY ((SELECT auth.hr_company_ids())::uuid[]))
        )
    );
CREATE POLICY invites_revoke ON invites FOR UPDATE TO authenticated
    USING (
        (SELECT auth.is_admin())
        OR (role = 'user' AND company_id = ANY ((SELECT auth.hr_company_ids())::uuid[]))
    )
    WITH CHECK (
        (SELECT auth.is_admin())
        OR (role = 'user' AND company_id = ANY ((SELECT auth.hr_company_ids())::uuid[]))
    );
GRANT SELECT (id, role, company_id, email, session_allocation, created_by, created_at,
              expires_at, accepted_at, accepted_by, revoked_at),
      INSERT ON invites TO authenticated;
GRANT UPDATE (revoked_at) ON invites TO authenticated;
GRANT SELECT, INSERT, UPDATE ON invites TO service_role;

CREATE POLICY terms_select ON terms_acceptances FOR SELECT TO authenticated
    USING (user_id = auth.uid() OR (SELECT auth.is_admin()));
CREATE POLICY terms_insert ON terms_acceptances FOR INSERT TO authenticated
    WITH CHECK (user_id = auth.uid());
GRANT SELECT, INSERT ON terms_acceptances TO authenticated;
GRANT SELECT, INSERT ON terms_acceptances TO service_role;
