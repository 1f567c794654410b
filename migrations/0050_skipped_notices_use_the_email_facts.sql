-- A skipped occurrence's email says what a booking's email says of it through the one
-- builder of those facts, `booking_email_facts()` (0048), plus why it was not booked.
-- 0044 wrote the same four facts out by hand; the emails do not change (the series'
-- timezone, as before; `tests/recurring/test_series.py` compares the parameters).
CREATE OR REPLACE FUNCTION notify_occurrences_skipped() RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
BEGIN
    PERFORM public.queue_emails(
        array_agg(r.user_id ORDER BY d.ord), 'recurring_occurrence_skipped',
        array_agg(public.booking_email_facts(u.full_name, s.display_name, d.starts_at,
                                             r.timezone)
                  || jsonb_build_object('why', public.occurrence_skip_text(d.reason))
                  ORDER BY d.ord),
        'recurring_occurrence_skipped')
    FROM pg_temp.recurring_dispatch d
    JOIN public.recurring_bookings r ON r.id = d.series_id
    JOIN public.users u ON u.id = r.user_id
    JOIN public.specialists s ON s.id = r.specialist_id
    WHERE d.outcome = 'skipped' AND d.reason <> 'PAUSED'
    HAVING count(*) > 0;
    INSERT INTO public.notifications (user_id, event, title, body, data)
    SELECT r.user_id, 'recurring_occurrence_skipped', 'Sessão recorrente não marcada',
           'A sessão de ' || public.local_time_text(d.starts_at, r.timezone)
           || ' não foi marcada: ' || public.occurrence_skip_text(d.reason) || '.',
           jsonb_build_object('series_id', r.id, 'reason', d.reason)
    FROM pg_temp.recurring_dispatch d
    JOIN public.recurring_bookings r ON r.id = d.series_id
    WHERE d.outcome = 'skipped' AND d.reason <> 'PAUSED'
      AND public.notification_enabled(r.user_id, 'recurring_occurrence_skipped', 'in_app')
    ORDER BY d.ord;
END
$$;
