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
SELECT coalesce(json_agg(json_build_object(
           'id', o.id, 'specialist_id', o.specialist_id, 'name', o.name,
           'description', o.description, 'pillar', o.pillar,
           'session_type_id', o.session_type_id, 'session_count', o.session_count,
           'price', o.price::text, 'currency', o.currency,
           'discount_percentage', o.discount_percentage::text,
           'final_price', o.final_price::text, 'price_per_session', o.price_per_session::text,
           'saving', o.saving::text, 'valid_for_days', o.valid_for_days,
           'is_active', o.is_active, 'created_at', api_instant(o.created_at),
           'updated_at', api_instant(o.updated_at))
       ORDER BY o.price_per_session, o.name, o.id), '[]')::text AS body
FROM (
    SELECT * FROM package_offers
    WHERE is_active
      AND (%(specialist_id)s::uuid IS NULL OR specialist_id = %(specialist_id)s::uuid)
      AND (%(pillar)s::text IS NULL OR pillar = %(pillar)s::text)
    ORDER BY price_per_session, name, id
    LIMIT %(limit)s OFFSET %(offset)s
) o;

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
