-- Companies and their members. Changes are the functions of migration 0015.

-- create_company --
SELECT * FROM create_company(%(name)s, %(nuit)s, %(contact_email)s, %(contact_phone)s,
                             %(plan)s, %(employee_seats)s, %(session_pool)s);

-- list_companies --
SELECT * FROM companies ORDER BY name, id LIMIT %(limit)s OFFSET %(offset)s;

-- get_company --
SELECT * FROM companies WHERE id = %(id)s;

-- update_company --
SELECT * FROM update_company(%(id)s, %(changes)s);

-- deactivate_company --
SELECT * FROM deactivate_company(%(id)s);

-- list_members --
-- RLS shows HR their own companies' members only; admins all.
SELECT m.user_id, u.email, u.full_name, m.session_allocation, m.joined_at
FROM company_members m JOIN users u ON u.id = m.user_id
WHERE m.company_id = %(company_id)s AND m.removed_at IS NULL
ORDER BY u.full_name, m.user_id
LIMIT %(limit)s OFFSET %(offset)s;

-- set_allocation --
SELECT set_member_allocation(%(company_id)s, %(user_id)s, %(session_allocation)s);

-- remove_member --
SELECT remove_member(%(company_id)s, %(user_id)s);
