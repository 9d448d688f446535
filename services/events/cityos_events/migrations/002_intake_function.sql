-- Intake's write in one round trip: the report into the case the merger chose (or a new case),
-- its contact, and the case events, in the statement's own transaction.
--
-- The merger chose among candidates read without locks. Here, holding the advisory locks of
-- the report's cells, the candidates are read again as (case id, version): if any changed
-- since (a report of the same incident committed in between, a case was closed), nothing is
-- written and `stale` comes back, and the caller decides again under the locks. The locks are
-- so held for one statement, not for the whole intake. With p_cells NULL the caller already
-- holds them (or the report is not mergeable) and nothing is checked.
--
-- Case events come as JSON templates (cityos.case_event.v1 without case id, seq, report id
-- and statuses), completed here as the case's row decides.
CREATE FUNCTION intake_report(
    p_cells bigint[], p_seen_ids bigint[], p_seen_versions integer[], p_window interval,
    p_closed_window interval, p_final text[],
    p_target bigint,
    -- the report
    p_channel text, p_text text, p_reported_at timestamptz, p_location jsonb,
    p_classification jsonb, p_media jsonb, p_category_hint text, p_source_ref text,
    p_idempotency_key text, p_payload_hash text, p_bigrams text[],
    p_has_contact boolean, p_name text, p_phone text, p_email text, p_account text,
    -- a confident, known category (NULL: none) and what it sets on the case
    p_category text, p_confidence real, p_classified_by text, p_department text,
    p_priority text, p_accept_min integer, p_dispose_h integer,
    -- a new case's own columns
    p_title text, p_needs_operator boolean, p_handling_unit text, p_district text,
    p_street text, p_lon float8, p_lat float8, p_cell bigint,
    -- event templates
    p_received jsonb, p_added jsonb, p_classified jsonb
) RETURNS TABLE (stale boolean, case_id bigint, report_id bigint, status text,
                 version integer, classified boolean, prev_status text, prev_version integer)
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_ids bigint[];
    v_versions integer[];
    v_case bigint;
    v_report bigint;
    v_status text;
    v_version integer;
    v_events jsonb[];
BEGIN
    IF p_cells IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(c) FROM unnest(p_cells) AS c ORDER BY c;
        SELECT coalesce(array_agg(k.case_id ORDER BY k.case_id), '{}'),
               coalesce(array_agg(k.version ORDER BY k.case_id), '{}')
          INTO v_ids, v_versions
          FROM cases k
         WHERE k.cell = ANY(p_cells) AND k.last_reported_at >= p_reported_at - p_window
           AND k.first_reported_at <= p_reported_at + p_window
           AND k.status <> ALL(p_final)
           AND (k.closed_at IS NULL OR k.closed_at >= p_reported_at - p_closed_window);
        IF v_ids IS DISTINCT FROM p_seen_ids OR v_versions IS DISTINCT FROM p_seen_versions THEN
            RETURN QUERY SELECT true, NULL::bigint, NULL::bigint, NULL::text, NULL::integer,
                                NULL::boolean, NULL::text, NULL::integer;
            RETURN;
        END IF;
    END IF;

    IF p_target IS NULL THEN
        INSERT INTO cases AS k (status, version, title, category, confidence, classified_by,
            needs_operator, department, handling_unit, priority, location, district, street,
            geom, cell, first_reported_at, last_reported_at, report_count, channels,
            accept_due, dispose_due)
        VALUES (CASE WHEN p_category IS NULL THEN 'received' ELSE 'classified' END,
            CASE WHEN p_category IS NULL THEN 1 ELSE 2 END, p_title, p_category,
            p_confidence, p_classified_by, p_needs_operator, p_department, p_handling_unit,
            p_priority, p_location, p_district, p_street,
            CASE WHEN p_lon IS NULL THEN NULL
                 ELSE ST_SetSRID(ST_MakePoint(p_lon, p_lat), 4326) END,
            p_cell, p_reported_at, p_reported_at, 1, ARRAY[p_channel],
            p_reported_at + make_interval(mins => p_accept_min),
            p_reported_at + make_interval(hours => p_dispose_h))
        RETURNING k.case_id, k.status, k.version INTO v_case, v_status, v_version;
    ELSE
        SELECT k.status, k.version INTO v_status, v_version
          FROM cases k WHERE k.case_id = p_target FOR UPDATE;
        v_case := p_target;
        -- Only a case still waiting for its category takes the report's.
        IF v_status <> 'received' THEN
            p_category := NULL;
        END IF;
        UPDATE cases k SET version = k.version + CASE WHEN p_category IS NULL THEN 1 ELSE 2 END,
            report_count = k.report_count + 1,
            first_reported_at = least(k.first_reported_at, p_reported_at),
            last_reported_at = greatest(k.last_reported_at, p_reported_at),
            channels = CASE WHEN p_channel = ANY(k.channels) THEN k.channels
                            ELSE k.channels || p_channel END,
            updated_at = now()
         WHERE k.case_id = p_target;
        IF p_category IS NOT NULL THEN
            UPDATE cases k SET status = 'classified', category = p_category,
                confidence = p_confidence, classified_by = p_classified_by,
                department = p_department, priority = p_priority,
                accept_due = k.first_reported_at + make_interval(mins => p_accept_min),
                dispose_due = k.first_reported_at + make_interval(hours => p_dispose_h),
                needs_operator = k.street IS NULL
             WHERE k.case_id = p_target;
        END IF;
    END IF;

    INSERT INTO reports AS r (case_id, channel, text, reported_at, location, classification,
        media, category_hint, source_ref, idempotency_key, payload_hash, bigrams)
    VALUES (v_case, p_channel, p_text, p_reported_at, p_location, p_classification, p_media,
        p_category_hint, p_source_ref, p_idempotency_key, p_payload_hash, p_bigrams)
    RETURNING r.report_id INTO v_report;
    IF p_has_contact THEN
        INSERT INTO reporter_contacts (report_id, name, phone, email, account)
        VALUES (v_report, p_name, p_phone, p_email, p_account);
    END IF;

    IF p_target IS NULL THEN
        v_events := ARRAY[p_received || jsonb_build_object('case_id', v_case, 'seq', 1,
            'report_id', v_report, 'from_status', NULL, 'to_status', 'received')];
        IF p_category IS NOT NULL THEN
            v_events := v_events || (p_classified || jsonb_build_object('case_id', v_case,
                'seq', 2, 'from_status', 'received', 'to_status', 'classified'));
        END IF;
    ELSE
        v_events := ARRAY[p_added || jsonb_build_object('case_id', v_case,
            'seq', v_version + 1, 'report_id', v_report, 'from_status', v_status,
            'to_status', v_status)];
        IF p_category IS NOT NULL THEN
            v_events := v_events || (p_classified || jsonb_build_object('case_id', v_case,
                'seq', v_version + 2, 'from_status', v_status, 'to_status', 'classified'));
        END IF;
    END IF;
    INSERT INTO case_events (case_id, seq, kind, at, event)
    SELECT v_case, (e ->> 'seq')::integer, e ->> 'kind', (e ->> 'at')::timestamptz, e
      FROM unnest(v_events) AS e;

    RETURN QUERY SELECT false, v_case, v_report,
        CASE WHEN p_category IS NOT NULL THEN 'classified' ELSE v_status END,
        v_version + CASE WHEN p_target IS NULL THEN 0
                         WHEN p_category IS NULL THEN 1 ELSE 2 END,
        p_category IS NOT NULL, v_status, v_version;
END;
$$;
