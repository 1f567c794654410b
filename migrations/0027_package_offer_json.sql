-- One package offer as the public list sends it (money as decimal strings), defined
-- once for the list's page (`list_packages_json`) and for the fill of the API
-- processes' list cache (`package_first_pages_json`: every specialist's first page
-- in one read), so the two answer byte for byte the same. STABLE and not STRICT, over
-- a single expression: PostgreSQL inlines it into the calling query (see 0026).
CREATE FUNCTION package_offer_json(o package_offers) RETURNS json
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT json_build_object(
        'id', o.id, 'specialist_id', o.specialist_id, 'name', o.name,
        'description', o.description, 'pillar', o.pillar,
        'session_type_id', o.session_type_id, 'session_count', o.session_count,
        'price', o.price::text, 'currency', o.currency,
        'discount_percentage', o.discount_percentage::text,
        'final_price', o.final_price::text, 'price_per_session', o.price_per_session::text,
        'saving', o.saving::text, 'valid_for_days', o.valid_for_days,
        'is_active', o.is_active, 'created_at', api_instant(o.created_at),
        'updated_at', api_instant(o.updated_at))
$$;
GRANT EXECUTE ON FUNCTION package_offer_json(package_offers) TO anon, authenticated, service_role;
