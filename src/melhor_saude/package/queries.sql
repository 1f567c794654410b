-- Packages and purchases. Changes are the functions of migration 0019; prices are the
-- database's (`package_final_price`, the `package_offers` view).

-- create_package --
SELECT * FROM create_package(%(specialist_id)s, %(name)s, %(description)s,
                             %(session_count)s, %(price)s, %(currency)s, %(discount)s,
                             %(valid_for_days)s, %(pillar)s, %(session_type_id)s);

-- update_package --
SELECT * FROM update_package(%(id)s, %(changes)s);

-- deactivate_package --
SELECT * FROM deactivate_package(%(id)s);

-- get_package --
SELECT * FROM package_offers WHERE id = %(id)s;

-- list_packages_json --
-- Active packages (RLS lets anyone read those), cheapest per session first, as the JSON
-- body `list[PackageOut]` documents (money as decimal strings): the list is a public,
-- hot read, answered in one round trip without building a model per row.
SELECT coalesce(json_agg(package_offer_json(o) ORDER BY o.price_per_session, o.name, o.id),
                '[]')::text AS body
FROM (
    SELECT * FROM package_offers
    WHERE is_active
      AND (%(specialist_id)s::uuid IS NULL OR specialist_id = %(specialist_id)s::uuid)
      AND (%(pillar)s::text IS NULL OR pillar = %(pillar)s::text)
    ORDER BY price_per_session, name, id
    LIMIT %(limit)s OFFSET %(offset)s
) o;

-- package_first_pages_json --
-- `list_packages_json`'s answer (its first page of `limit`) for no specialist
-- (specialist_id NULL) and for every specialist with active packages, at most `lists`
-- of them: what fills the API processes' list cache in one read. Each page is the page
-- query above (per specialist, through the index on specialist_id).
SELECT NULL::text AS specialist_id, page.body
FROM (
    SELECT coalesce(json_agg(package_offer_json(o)
                             ORDER BY o.price_per_session, o.name, o.id), '[]')::text AS body
    FROM (
        SELECT * FROM package_offers WHERE is_active
        ORDER BY price_per_session, name, id
        LIMIT %(limit)s
    ) o
) page
UNION ALL
SELECT s.specialist_id::text, page.body
FROM (SELECT DISTINCT specialist_id FROM booking_packages WHERE is_active LIMIT %(lists)s) s
CROSS JOIN LATERAL (
    SELECT coalesce(json_agg(package_offer_json(o)
                             ORDER BY o.price_per_session, o.name, o.id), '[]')::text AS body
    FROM (
        SELECT * FROM package_offers
        WHERE is_active AND specialist_id = s.specialist_id
        ORDER BY price_per_session, name, id
        LIMIT %(limit)s
    ) o
) page;

-- purchase_package --
SELECT p.*, b.* FROM purchase_package(%(package_id)s, %(payment_reference)s, %(user_id)s) p
CROSS JOIN LATERAL package_purchase_balance(p) b;

-- revoke_purchase --
SELECT p.*, b.* FROM revoke_package_purchase(%(id)s, %(reason)s) p
CROSS JOIN LATERAL package_purchase_balance(p) b;

-- get_purchase --
SELECT p.*, b.* FROM package_purchases p CROSS JOIN LATERAL package_purchase_balance(p) b
WHERE p.id = %(id)s;

-- my_purchases --
SELECT p.*, b.* FROM package_purchases p CROSS JOIN LATERAL package_purchase_balance(p) b
WHERE p.user_id = auth.uid()
  AND (%(status)s::text IS NULL OR p.status = %(status)s::text)
ORDER BY p.purchased_at DESC, p.id
LIMIT %(limit)s OFFSET %(offset)s;

-- purchase_bookings --
SELECT * FROM bookings WHERE package_purchase_id = %(id)s ORDER BY starts_at, id;

-- sales_report --
SELECT * FROM package_sales_report(%(from)s, %(to)s);

-- warn_expiring --
SELECT warn_expiring_packages() AS warned;

-- expire --
SELECT expire_packages() AS expired;
