-- Writes go through the database's functions (issue 9), part 2: identity.
-- Profiles, terms, invites, companies, members and roles change only through the
-- functions below. Each re-checks who may do it, locks what it counts, writes the
-- audit entry, and refuses with a named error the API turns into its code
-- (errors.register_constraint). The sign-in paths (sign-up, verification, login,
-- reset) run as the service and stay in Python.

-- Sign-up binds the password chosen (and the invite given) to the verification link
-- it emails, and applies them when that link is followed: an address does not hold a
-- password, or a role, before its owner has shown they read its mail. So an
-- unverified sign-up by someone else never blocks, or pre-sets, the real owner's.
ALTER TABLE email_tokens ADD COLUMN password_hash text, ADD COLUMN invite_code text;

-- users: a person changes their own name; nothing else about an account.
DROP POLICY users_update_self ON users;
REVOKE UPDATE ON users FROM authenticated;

CREATE FUNCTION update_my_profile(p_full_name text) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    me uuid := auth.uid();
BEGIN
    IF me IS NULL THEN
        RAISE EXCEPTION 'sign in first' USING ERRCODE = 'insufficient_privilege';
    END IF;
    UPDATE public.users SET full_name = p_full_name WHERE id = me;
    PERFORM public.audit_log('user.updated', 'user', me::text,
                             p_new => jsonb_build_object('full_name', p_full_name));
END
$$;

-- Terms and privacy: only published versions; time and address from the server.
DROP POLICY terms_insert ON terms_acceptances;
REVOKE INSERT ON terms_acceptances FROM authenticated;

CREATE FUNCTION accept_terms(p_document text, p_version text) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    me uuid := auth.uid();
    client jsonb := auth.client();
BEGIN
    IF me IS NULL THEN
        RAISE EXCEPTION 'sign in first' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM public.legal_documents
                   WHERE document = p_document AND version = p_version) THEN
        RAISE EXCEPTION 'no such version of the %', p_document
            USING ERRCODE = 'check_violation', CONSTRAINT = 'legal_document_unknown';
    END IF;
    INSERT INTO public.terms_acceptances (user_id, document, version, ip, user_agent)
    VALUES (me, p_document, p_version, (client ->> 'ip')::inet,
            left(client ->> 'user_agent', 500))
    ON CONFLICT ON CONSTRAINT terms_acceptances_once DO NOTHING;
    PERFORM public.audit_log('terms.accepted', 'terms', p_document || ':' || p_version);
END
$$;

-- Invites ------------------------------------------------------------------------------

DROP POLICY invites_insert ON invites;
DROP POLICY invites_revoke ON invites;
REVOKE INSERT, UPDATE ON invites FROM authenticated;

CREATE FUNCTION invite_code_hash(p_code text) RETURNS text
    LANGUAGE sql IMMUTABLE
AS $$
    SELECT encode(sha256(convert_to(p_code, 'UTF8')), 'hex')
$$;

-- A pending invite holds its seat; members hold theirs. Callers hold the company's
-- seat lock (`lock_company_seats`).
CREATE FUNCTION company_seats_in_use(p_company uuid) RETURNS bigint
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT (SELECT count(*) FROM public.company_members
             WHERE company_id = p_company AND removed_at IS NULL)
         + (SELECT count(*) FROM public.invites
             WHERE company_id = p_company AND role = 'user' AND accepted_at IS NULL
               AND revoked_at IS NULL AND expires_at > now())
$$;

CREATE FUNCTION lock_company_seats(p_company uuid) RETURNS void
    LANGUAGE sql VOLATILE
AS $$
    SELECT pg_advisory_xact_lock(hashtextextended('company-seats:' || p_company::text, 0))
$$;

-- Admins invite HR and specialists; HR invites employees of their own company within
-- its seats. The code is the caller's (at least 32 characters, from a CSPRNG in the
-- API); only its SHA-256 is stored.
CREATE FUNCTION create_invite(p_code text, p_role text, p_company uuid, p_email text,
                              p_allocation integer, p_ttl_days integer DEFAULT 30)
    RETURNS TABLE (id uuid, role text, company_id uuid, email text, session_allocation integer,
                   created_by uuid, created_at timestamptz, expires_at timestamptz,
                   accepted_at timestamptz, accepted_by uuid, revoked_at timestamptz)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
#variable_conflict use_column
DECLARE
    me uuid := auth.uid();
    admin boolean := auth.is_admin();
    company public.companies;
    invite public.invites;
BEGIN
    IF me IS NULL THEN
        RAISE EXCEPTION 'sign in first' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_role NOT IN ('user', 'hr', 'specialist') THEN
        RAISE EXCEPTION 'unknown role' USING ERRCODE = 'check_violation',
            CONSTRAINT = 'invalid_request';
    END IF;
    IF p_role IN ('hr', 'specialist') AND NOT admin THEN
        RAISE EXCEPTION 'only administrators invite HR and specialists'
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'invite_forbidden';
    END IF;
    IF p_role = 'user' AND NOT admin
       AND (p_company IS NULL OR NOT p_company = ANY (auth.hr_company_ids())) THEN
        RAISE EXCEPTION 'HR may invite employees of their own company only'
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'invite_forbidden';
    END IF;
    IF p_role IN ('user', 'hr') AND p_company IS NULL THEN
        RAISE EXCEPTION 'company_id is required for this role'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'invite_company_required';
    END IF;
    IF p_role = 'specialist' AND p_company IS NOT NULL THEN
        RAISE EXCEPTION 'specialists are not invited into a company'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'invite_company_required';
    END IF;
    IF p_code IS NULL OR length(p_code) < 32 OR length(p_code) > 200 THEN
        RAISE EXCEPTION 'an invite code has 32 to 200 characters'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'invalid_request';
    END IF;
    IF p_allocation IS NULL OR p_allocation NOT BETWEEN 0 AND 10000 THEN
        RAISE EXCEPTION 'allocation out of range'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'invalid_request';
    END IF;
    IF p_company IS NOT NULL THEN
        IF p_role = 'user' THEN
            PERFORM public.lock_company_seats(p_company);
        END IF;
        SELECT * INTO company FROM public.companies c WHERE c.id = p_company;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'company not found'
                USING ERRCODE = 'no_data_found', CONSTRAINT = 'company_not_found';
        END IF;
        IF NOT company.is_active THEN
            RAISE EXCEPTION 'the company is deactivated'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'company_inactive';
        END IF;
        IF p_role = 'user' AND public.company_seats_in_use(p_company) >= company.employee_seats
        THEN
            RAISE EXCEPTION 'every seat is taken'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'seats_exhausted';
        END IF;
    END IF;
    INSERT INTO public.invites (code_hash, role, company_id, email, session_allocation,
                                created_by, expires_at)
    VALUES (public.invite_code_hash(p_code), p_role, p_company, lower(p_email), p_allocation,
            me, now() + make_interval(days => least(greatest(coalesce(p_ttl_days, 30), 1), 30)))
    RETURNING * INTO invite;
    IF p_email IS NOT NULL THEN
        PERFORM public.queue_email(NULL, 'invite',
                                   jsonb_build_object('company',
                                                      coalesce(company.name, 'Melhor Saúde'),
                                                      'role', p_role, 'code', p_code),
                                   p_to => lower(p_email));
    END IF;
    PERFORM public.audit_log('invite.created', 'invite', invite.id::text,
                             p_new => jsonb_build_object('role', p_role, 'company_id', p_company));
    RETURN QUERY SELECT invite.id, invite.role, invite.company_id, invite.email,
                        invite.session_allocation, invite.created_by, invite.created_at,
                        invite.expires_at, invite.accepted_at, invite.accepted_by,
                        invite.revoked_at;
END
$$;

CREATE FUNCTION revoke_invite(p_id uuid)
    RETURNS TABLE (id uuid, role text, company_id uuid, email text, session_allocation integer,
                   created_by uuid, created_at timestamptz, expires_at timestamptz,
                   accepted_at timestamptz, accepted_by uuid, revoked_at timestamptz)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
#variable_conflict use_column
DECLARE
    invite public.invites;
BEGIN
    SELECT * INTO invite FROM public.invites i WHERE i.id = p_id FOR UPDATE;
    IF NOT FOUND OR NOT (auth.is_admin()
                         OR (invite.role = 'user'
                             AND invite.company_id = ANY (auth.hr_company_ids()))) THEN
        RAISE EXCEPTION 'invite not found'
            USING ERRCODE = 'no_data_found', CONSTRAINT = 'invite_not_found';
    END IF;
    IF invite.revoked_at IS NOT NULL OR invite.accepted_at IS NOT NULL THEN
        RAISE EXCEPTION 'only a pending invite can be revoked'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'invite_not_pending';
    END IF;
    UPDATE public.invites i SET revoked_at = now() WHERE i.id = p_id RETURNING * INTO invite;
    PERFORM public.audit_log('invite.revoked', 'invite', p_id::text);
    RETURN QUERY SELECT invite.id, invite.role, invite.company_id, invite.email,
                        invite.session_allocation, invite.created_by, invite.created_at,
                        invite.expires_at, invite.accepted_at, invite.accepted_by,
                        invite.revoked_at;
END
$$;

-- The profile every specialist has (one id space for people). Created inactive-free
-- with defaults the specialist edits later; re-granting the role re-activates it.
CREATE FUNCTION ensure_specialist_profile(p_user uuid, p_display_name text) RETURNS void
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    INSERT INTO public.specialists (id, display_name, pillars, timezone)
    VALUES (p_user, left(p_display_name, 200), ARRAY['saude_mental'], 'Africa/Maputo')
    ON CONFLICT (id) DO UPDATE SET is_active = true;
$$;

-- Accept an invite for `p_user` (the service, when a sign-up is verified; or the person
-- themselves through `accept_invite`).
CREATE FUNCTION accept_invite_for(p_user uuid, p_code text) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    invite record;
    person public.users;
BEGIN
    SELECT * INTO person FROM public.users WHERE id = p_user;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'user not found' USING ERRCODE = 'no_data_found',
            CONSTRAINT = 'user_not_found';
    END IF;
    SELECT i.*, c.is_active AS company_active INTO invite
    FROM public.invites i LEFT JOIN public.companies c ON c.id = i.company_id
    WHERE i.code_hash = public.invite_code_hash(p_code)
    FOR UPDATE OF i;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no invite has this code'
            USING ERRCODE = 'no_data_found', CONSTRAINT = 'invite_not_found';
    ELSIF invite.revoked_at IS NOT NULL THEN
        RAISE EXCEPTION 'revoked' USING ERRCODE = 'check_violation', CONSTRAINT = 'invite_revoked';
    ELSIF invite.accepted_at IS NOT NULL THEN
        RAISE EXCEPTION 'used' USING ERRCODE = 'check_violation', CONSTRAINT = 'invite_used';
    ELSIF invite.expires_at <= now() THEN
        RAISE EXCEPTION 'expired' USING ERRCODE = 'check_violation', CONSTRAINT = 'invite_expired';
    ELSIF invite.email IS NOT NULL AND invite.email <> person.email THEN
        RAISE EXCEPTION 'issued to another address'
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'invite_email_mismatch';
    ELSIF invite.company_id IS NOT NULL AND NOT invite.company_active THEN
        RAISE EXCEPTION 'the company is deactivated'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'company_inactive';
    END IF;
    -- A provider does not become an employee through an (open) invite: their own
    -- sessions would be company-funded by a client.
    IF invite.role = 'user' AND EXISTS (
        SELECT 1 FROM public.user_roles
        WHERE user_id = p_user AND role = 'specialist' AND revoked_at IS NULL) THEN
        RAISE EXCEPTION 'a specialist cannot join a company as an employee'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'invite_specialist_employee';
    END IF;
    UPDATE public.invites SET accepted_at = now(), accepted_by = p_user WHERE id = invite.id;
    INSERT INTO public.user_roles (user_id, role, company_id)
    SELECT p_user, invite.role, CASE WHEN invite.role = 'hr' THEN invite.company_id END
    WHERE NOT EXISTS (
        SELECT 1 FROM public.user_roles
        WHERE user_id = p_user AND role = invite.role AND revoked_at IS NULL
          AND company_id IS NOT DISTINCT FROM
              (CASE WHEN invite.role = 'hr' THEN invite.company_id END));
    IF invite.role = 'user' THEN
        INSERT INTO public.company_members (company_id, user_id, session_allocation)
        VALUES (invite.company_id, p_user, invite.session_allocation);
    ELSIF invite.role = 'specialist' THEN
        PERFORM public.ensure_specialist_profile(p_user, person.full_name);
    END IF;
    PERFORM public.audit_log('invite.accepted', 'invite', invite.id::text,
                             p_new => jsonb_build_object('role', invite.role,
                                                         'company_id', invite.company_id),
                             p_actor => p_user);
END
$$;

CREATE FUNCTION accept_invite(p_code text) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    IF auth.uid() IS NULL THEN
        RAISE EXCEPTION 'sign in first' USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM public.accept_invite_for(auth.uid(), p_code);
END
$$;

-- Companies (admins) -------------------------------------------------------------------

DROP POLICY companies_admin_write ON companies;
REVOKE INSERT, UPDATE ON companies FROM authenticated;

CREATE FUNCTION require_admin() RETURNS void
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    IF NOT auth.is_admin() THEN
        RAISE EXCEPTION 'only platform administrators may do this'
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'admin_only';
    END IF;
END
$$;

CREATE FUNCTION create_company(p_name text, p_nuit text, p_contact_email text,
                               p_contact_phone text, p_plan text, p_employee_seats integer,
                               p_session_pool integer)
    RETURNS SETOF companies
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    created public.companies;
BEGIN
    PERFORM public.require_admin();
    INSERT INTO public.companies (name, nuit, contact_email, contact_phone, plan,
                                  employee_seats, session_pool)
    VALUES (p_name, p_nuit, p_contact_email, p_contact_phone, coalesce(p_plan, 'standard'),
            p_employee_seats, coalesce(p_session_pool, 0))
    RETURNING * INTO created;
    PERFORM public.audit_log('company.created', 'company', created.id::text,
                             p_new => to_jsonb(created) - 'created_at' - 'updated_at');
    RETURN NEXT created;
END
$$;

-- Change some of a company's details: keys of `p_changes` among name, nuit,
-- contact_email, contact_phone, plan, employee_seats, session_pool.
CREATE FUNCTION update_company(p_id uuid, p_changes jsonb) RETURNS SETOF companies
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    old public.companies;
    new public.companies;
    unknown text;
BEGIN
    PERFORM public.require_admin();
    SELECT k INTO unknown FROM jsonb_object_keys(p_changes) k
    WHERE k NOT IN ('name', 'nuit', 'contact_email', 'contact_phone', 'plan',
                    'employee_seats', 'session_pool')
    LIMIT 1;
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION 'unknown field %', unknown
            USING ERRCODE = 'check_violation', CONSTRAINT = 'invalid_request';
    END IF;
    SELECT * INTO old FROM public.companies WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'company not found'
            USING ERRCODE = 'no_data_found', CONSTRAINT = 'company_not_found';
    END IF;
    UPDATE public.companies SET
        name = coalesce(p_changes ->> 'name', name),
        nuit = coalesce(p_changes ->> 'nuit', nuit),
        contact_email = coalesce(p_changes ->> 'contact_email', contact_email),
        contact_phone = coalesce(p_changes ->> 'contact_phone', contact_phone),
        plan = coalesce(p_changes ->> 'plan', plan),
        employee_seats = coalesce((p_changes ->> 'employee_seats')::integer, employee_seats),
        session_pool = coalesce((p_changes ->> 'session_pool')::integer, session_pool)
    WHERE id = p_id
    RETURNING * INTO new;
    PERFORM public.audit_log('company.updated', 'company', p_id::text,
                             p_old => (SELECT jsonb_object_agg(k, to_jsonb(old) -> k)
                                       FROM jsonb_object_keys(p_changes) k),
                             p_new => p_changes);
    RETURN NEXT new;
END
$$;

CREATE FUNCTION deactivate_company(p_id uuid) RETURNS SETOF companies
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    row public.companies;
BEGIN
    PERFORM public.require_admin();
    UPDATE public.companies
    SET is_active = false, deactivated_at = coalesce(deactivated_at, now())
    WHERE id = p_id
    RETURNING * INTO row;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'company not found'
            USING ERRCODE = 'no_data_found', CONSTRAINT = 'company_not_found';
    END IF;
    PERFORM public.audit_log('company.deactivated', 'company', p_id::text);
    RETURN NEXT row;
END
$$;

-- Members (the company's HR, admins) ---------------------------------------------------

DROP POLICY company_members_manage ON company_members;
REVOKE INSERT, UPDATE ON company_members FROM authenticated;
ALTER TABLE company_members
    ADD CONSTRAINT company_members_allocation_cap CHECK (session_allocation <= 10000);

CREATE FUNCTION require_company_admin(p_company uuid) RETURNS void
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    IF NOT (auth.is_admin() OR p_company = ANY (auth.hr_company_ids())) THEN
        RAISE EXCEPTION 'only the company''s HR or an administrator may do this'
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'company_admin_only';
    END IF;
END
$$;

CREATE FUNCTION set_member_allocation(p_company uuid, p_user uuid, p_allocation integer)
    RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    PERFORM public.require_company_admin(p_company);
    UPDATE public.company_members SET session_allocation = p_allocation
    WHERE company_id = p_company AND user_id = p_user AND removed_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'not an active member of the company'
            USING ERRCODE = 'no_data_found', CONSTRAINT = 'member_not_found';
    END IF;
    PERFORM public.audit_log('member.allocation_changed', 'company_member',
                             p_company::text || ':' || p_user::text,
                             p_new => jsonb_build_object('session_allocation', p_allocation));
END
$$;

CREATE FUNCTION remove_member(p_company uuid, p_user uuid) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    PERFORM public.require_company_admin(p_company);
    PERFORM public.lock_company_seats(p_company);
    UPDATE public.company_members SET removed_at = now()
    WHERE company_id = p_company AND user_id = p_user AND removed_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'not an active member of the company'
            USING ERRCODE = 'no_data_found', CONSTRAINT = 'member_not_found';
    END IF;
    PERFORM public.audit_log('member.removed', 'company_member',
                             p_company::text || ':' || p_user::text);
END
$$;

-- Roles (admins) -----------------------------------------------------------------------

DROP POLICY user_roles_admin_write ON user_roles;
REVOKE INSERT, UPDATE ON user_roles FROM authenticated;

CREATE FUNCTION grant_role(p_user uuid, p_role text, p_company uuid) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    person public.users;
    company uuid := CASE WHEN p_role = 'hr' THEN p_company END;
BEGIN
    PERFORM public.require_admin();
    SELECT * INTO person FROM public.users WHERE id = p_user;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'user not found' USING ERRCODE = 'no_data_found',
            CONSTRAINT = 'user_not_found';
    END IF;
    IF p_role NOT IN ('user', 'specialist', 'hr', 'admin') THEN
        RAISE EXCEPTION 'unknown role' USING ERRCODE = 'check_violation',
            CONSTRAINT = 'invalid_request';
    END IF;
    IF p_role = 'hr' AND company IS NULL THEN
        RAISE EXCEPTION 'company_id is required for the hr role'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'invite_company_required';
    END IF;
    IF company IS NOT NULL AND NOT EXISTS (SELECT 1 FROM public.companies WHERE id = company)
    THEN
        RAISE EXCEPTION 'company not found'
            USING ERRCODE = 'no_data_found', CONSTRAINT = 'company_not_found';
    END IF;
    -- A provider's sessions are never company-funded with themselves: no employee
    -- becomes a specialist while a member (remove the membership first).
    IF p_role = 'specialist' AND EXISTS (
        SELECT 1 FROM public.company_members WHERE user_id = p_user AND removed_at IS NULL) THEN
        RAISE EXCEPTION 'an employee cannot also be a specialist'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'invite_specialist_employee';
    END IF;
    INSERT INTO public.user_roles (user_id, role, company_id, granted_by)
    SELECT p_user, p_role, company, auth.uid()
    WHERE NOT EXISTS (
        SELECT 1 FROM public.user_roles
        WHERE user_id = p_user AND role = p_role AND revoked_at IS NULL
          AND company_id IS NOT DISTINCT FROM company);
    IF p_role = 'specialist' THEN
        PERFORM public.ensure_specialist_profile(p_user, person.full_name);
    END IF;
    PERFORM public.audit_log('role.granted', 'user', p_user::text,
                             p_new => jsonb_build_object('role', p_role, 'company_id', company));
END
$$;

-- Revoking takes effect at once everywhere: policies and functions read user_roles,
-- the person's access tokens end, and a revoked specialist's profile is deactivated
-- (not bookable, and only an admin re-activates it). The last admin stays.
CREATE FUNCTION revoke_role(p_user uuid, p_role text) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    PERFORM public.require_admin();
    IF p_role = 'admin' THEN
        -- Serialize admin revocations so two admins cannot demote each other at once.
        PERFORM pg_advisory_xact_lock(hashtextextended('platform-admins', 0));
        IF NOT EXISTS (SELECT 1 FROM public.user_roles
                       WHERE role = 'admin' AND revoked_at IS NULL AND user_id <> p_user) THEN
            RAISE EXCEPTION 'the platform needs at least one administrator'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'last_admin';
        END IF;
    END IF;
    UPDATE public.user_roles SET revoked_at = now()
    WHERE user_id = p_user AND role = p_role AND revoked_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'this person does not hold that role'
            USING ERRCODE = 'no_data_found', CONSTRAINT = 'role_not_held';
    END IF;
    IF p_role = 'specialist' THEN
        UPDATE public.specialists SET is_active = false WHERE id = p_user;
    END IF;
    PERFORM public.end_sessions(p_user);
    PERFORM public.audit_log('role.revoked', 'user', p_user::text,
                             p_old => jsonb_build_object('role', p_role));
END
$$;

GRANT EXECUTE ON FUNCTION
    update_my_profile(text), accept_terms(text, text),
    create_invite(text, text, uuid, text, integer, integer), revoke_invite(uuid),
    accept_invite(text),
    create_company(text, text, text, text, text, integer, integer),
    update_company(uuid, jsonb), deactivate_company(uuid),
    set_member_allocation(uuid, uuid, integer), remove_member(uuid, uuid),
    grant_role(uuid, text, uuid), revoke_role(uuid, text)
    TO authenticated;
GRANT EXECUTE ON FUNCTION accept_invite_for(uuid, text), ensure_specialist_profile(uuid, text),
    company_seats_in_use(uuid), invite_code_hash(text) TO service_role;

-- Emails queued for an address before anyone knew whether it has an account (a reset
-- request, a verification resend) are resolved by the worker when it sends: the
-- account is looked up and a fresh single-use link is made, or nothing is sent. Also
-- used to re-drive a link-bearing email whose link has expired. The service only.
CREATE FUNCTION resolve_account_email(p_template text, p_email text, p_ttl_minutes integer)
    RETURNS jsonb
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    person public.users;
    pending public.email_tokens;
    wanted text := CASE p_template WHEN 'password_reset' THEN 'password_reset'
                                    WHEN 'verify_email' THEN 'verify_email' END;
    token text := translate(encode(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()),
                                   'base64'), '+/=', '-_');
BEGIN
    IF wanted IS NULL THEN
        RAISE EXCEPTION 'no account email %', p_template USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO person FROM public.users
    WHERE email = lower(p_email) AND is_active AND anonymized_at IS NULL;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF wanted = 'verify_email' THEN
        IF person.email_verified_at IS NOT NULL THEN
            RETURN NULL;
        END IF;
        -- The newest sign-up's choices (password, invite) travel with the new link.
        SELECT * INTO pending FROM public.email_tokens
        WHERE user_id = person.id AND purpose = 'verify_email' AND password_hash IS NOT NULL
        ORDER BY created_at DESC LIMIT 1;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
    END IF;
    UPDATE public.email_tokens SET used_at = now()
    WHERE user_id = person.id AND purpose = wanted AND used_at IS NULL;
    INSERT INTO public.email_tokens (user_id, purpose, token_hash, expires_at, password_hash,
                                     invite_code)
    VALUES (person.id, wanted, encode(sha256(convert_to(token, 'UTF8')), 'hex'),
            now() + make_interval(mins => p_ttl_minutes), pending.password_hash,
            pending.invite_code);
    RETURN jsonb_build_object('user_id', person.id, 'name', person.full_name, 'token', token);
END
$$;
GRANT EXECUTE ON FUNCTION resolve_account_email(text, text, integer) TO service_role;
