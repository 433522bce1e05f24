-- What the study's reader role may execute: SECURITY DEFINER functions that check the reader's
-- key (sha256(key) = the stored token digest), touch only that reader's items, and return only
-- neutral data (item ids, timing, the reader's own answers, blinded image names and sha256).
-- The domain rules (order, washout, valid answers) run in the client, in Python
-- (store/rules.py); these functions enforce the role's boundary and apply the event the client
-- made: its hash is computed here from the canonical body the client sent, and the trigger on
-- dcstore.events checks that it links to the chain head. Re-installed (CREATE OR REPLACE) when
-- this file changes.
--
-- Error codes: DCN01 reader not enrolled, DCT01 wrong key, DCT02 no token issued, DCO01 unknown
-- item, DCO02 another reader's item, DCS01 already submitted, DCS02 not yet submitted,
-- DCW01-DCW05 an event that does not match the call.

CREATE OR REPLACE FUNCTION dcstore.now_text(p_at text) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = dcstore, pg_temp AS $$
BEGIN
    -- a client clock (simulations, tests) only for the admin role; a reader gets the server's
    IF p_at IS NOT NULL AND pg_has_role(session_user, (SELECT value FROM meta WHERE key = 'admin_role'), 'USAGE') THEN
        RETURN p_at;
    END IF;
    RETURN to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') || '+00:00';
END $$;

CREATE OR REPLACE FUNCTION dcstore.check_reader(p_reader text, p_key bytea) RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = dcstore, pg_temp AS $$
DECLARE
    v_digest text;
BEGIN
    SELECT token_digest INTO v_digest FROM readers WHERE reader_id = p_reader;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'reader % is not enrolled', p_reader USING ERRCODE = 'DCN01';
    END IF;
    IF v_digest IS NULL THEN
        RAISE EXCEPTION 'reader % has no token', p_reader USING ERRCODE = 'DCT02';
    END IF;
    IF p_key IS NULL OR encode(sha256(p_key), 'hex') <> v_digest THEN
        RAISE EXCEPTION 'wrong token of reader %', p_reader USING ERRCODE = 'DCT01';
    END IF;
END $$;

CREATE OR REPLACE FUNCTION dcstore.reader_token_params(p_reader text) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = dcstore, pg_temp AS $$
DECLARE
    v_row record;
BEGIN
    SELECT token_salt, token_n, token_r, token_p INTO v_row FROM readers WHERE reader_id = p_reader;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'reader % is not enrolled', p_reader USING ERRCODE = 'DCN01';
    END IF;
    IF v_row.token_salt IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN json_build_object('salt', v_row.token_salt, 'n', v_row.token_n, 'r', v_row.token_r, 'p', v_row.token_p)::text;
END $$;

CREATE OR REPLACE FUNCTION dcstore.reader_verify(p_reader text, p_key bytea) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = dcstore, pg_temp AS $$
DECLARE
    v_digest text;
BEGIN
    SELECT token_digest INTO v_digest FROM readers WHERE reader_id = p_reader;
    RETURN v_digest IS NOT NULL AND p_key IS NOT NULL AND encode(sha256(p_key), 'hex') = v_digest;
END $$;

CREATE OR REPLACE FUNCTION dcstore.reader_study() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = dcstore, pg_temp AS $$
    SELECT reader_view_json FROM studies WHERE active = 1;
$$;

CREATE OR REPLACE FUNCTION dcstore.reader_state(p_reader text, p_key bytea, p_item text, p_lock boolean, p_at text)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = dcstore, pg_temp AS $$
DECLARE
    v_head_seq bigint;
    v_head_hash text;
    v_item items%ROWTYPE;
    v_next text;
    v_opens text;
    v_washout integer;
    v_last text;
    v_in_session bigint;
    v_answers jsonb;
    v_images jsonb;
    v_counts jsonb;
    v_sha text;
    v_neutral jsonb;
BEGIN
    IF p_lock THEN  -- first: every read below then sees what the writers before committed
        SELECT seq, hash INTO v_head_seq, v_head_hash FROM chain_head WHERE id = 1 FOR UPDATE;
    END IF;
    PERFORM check_reader(p_reader, p_key);
    SELECT item_id INTO v_next FROM items WHERE reader_id = p_reader AND submitted_at IS NULL
        ORDER BY order_index LIMIT 1;
    IF p_item IS NULL THEN
        SELECT * INTO v_item FROM items WHERE item_id = v_next;
    ELSE
        SELECT * INTO v_item FROM items WHERE item_id = p_item;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'no item %', p_item USING ERRCODE = 'DCO01';
        END IF;
        IF v_item.reader_id <> p_reader THEN
            RAISE EXCEPTION 'item % is another reader''s', p_item USING ERRCODE = 'DCO02';
        END IF;
    END IF;
    SELECT study_sha256 INTO v_sha FROM studies WHERE active = 1;
    SELECT jsonb_build_object(
        'items_total', count(*), 'items_done', count(submitted_at), 'training_total', coalesce(sum(training), 0),
        'training_done', coalesce(sum(CASE WHEN training = 1 AND submitted_at IS NOT NULL THEN 1 ELSE 0 END), 0),
        'last_submit_at', max(submitted_at),
        'sessions_total', (SELECT count(*) FROM sessions WHERE reader_id = p_reader))
        INTO v_counts FROM items WHERE reader_id = p_reader;
    IF v_item.item_id IS NOT NULL THEN
        SELECT opens_at, washout_after_wave INTO v_opens, v_washout FROM sessions
            WHERE reader_id = p_reader AND session_no = v_item.session_no;
        IF v_washout IS NOT NULL THEN
            SELECT max(submitted_at) INTO v_last FROM items WHERE reader_id = p_reader AND wave = v_washout;
        END IF;
        SELECT count(*) INTO v_in_session FROM items WHERE reader_id = p_reader AND session_no = v_item.session_no;
        SELECT coalesce(jsonb_object_agg(question_key, jsonb_build_array(value_json, revision)), '{}'::jsonb)
            INTO v_answers FROM responses WHERE item_id = v_item.item_id;
        SELECT coalesce(jsonb_agg(jsonb_build_object('ref', i.blind_name, 'sha256', i.sha256) ORDER BY s.pos), '[]'::jsonb)
            INTO v_images
            FROM (VALUES (1, v_item.source_a), (2, v_item.source_b)) AS s(pos, source)
            JOIN images i ON i.case_id = v_item.case_id AND i.source = s.source;
        v_neutral := jsonb_build_object(
            'item_id', v_item.item_id, 'reader_id', v_item.reader_id, 'session_no', v_item.session_no,
            'position_in_session', v_item.position_in_session, 'order_index', v_item.order_index,
            'task_id', v_item.task_id, 'training', v_item.training = 1, 'layout', v_item.layout, 'wave', v_item.wave,
            'shown_at', v_item.shown_at, 'last_shown_at', v_item.last_shown_at,
            'first_interaction_at', v_item.first_interaction_at, 'submitted_at', v_item.submitted_at,
            'active_seconds', v_item.active_seconds, 'visits', v_item.visits);
    END IF;
    RETURN jsonb_build_object(
        'now', now_text(p_at), 'study_sha256', v_sha, 'item', v_neutral, 'next_item_id', v_next,
        'session_opens_at', v_opens, 'washout_after_wave', v_washout,
        'washout_wave_last_submit', v_last, 'items_in_session', coalesce(v_in_session, 0), 'counts', v_counts,
        'answers', coalesce(v_answers, '{}'::jsonb), 'images', coalesce(v_images, '[]'::jsonb),
        'head', CASE WHEN p_lock THEN jsonb_build_array(v_head_seq, v_head_hash) END)::text;
END $$;

CREATE OR REPLACE FUNCTION dcstore.reader_write(p_reader text, p_key bytea, p_body text, p_payload text,
                                                p_values jsonb, p_at text)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = dcstore, pg_temp AS $$
DECLARE
    v_body jsonb := p_body::jsonb;
    v_payload jsonb := p_payload::jsonb;
    v_kind text := v_body->>'kind';
    v_at text := v_body->>'at';
    v_seq bigint := (v_body->>'seq')::bigint;
    v_sha text := v_payload->>'study_sha256';
    v_item items%ROWTYPE;
    v_hash text;
    v_demo integer;
    v_key text;
    v_value jsonb;
    v_response bigint;
    v_revision integer;
BEGIN
    PERFORM check_reader(p_reader, p_key);
    IF v_body->>'reader_id' IS DISTINCT FROM p_reader THEN
        RAISE EXCEPTION 'the event names reader %, not %', v_body->>'reader_id', p_reader USING ERRCODE = 'DCW01';
    END IF;
    IF v_body->'payload' IS DISTINCT FROM v_payload THEN
        RAISE EXCEPTION 'the event''s payload differs from the payload given' USING ERRCODE = 'DCW02';
    END IF;
    IF v_kind IS NULL OR v_kind NOT IN ('shown', 'first_interaction', 'submit', 'modify') THEN
        RAISE EXCEPTION 'a reader does not write % events', v_kind USING ERRCODE = 'DCW03';
    END IF;
    IF v_at IS DISTINCT FROM now_text(p_at) THEN
        RAISE EXCEPTION 'the event''s time % is not the server''s', v_at USING ERRCODE = 'DCW04';
    END IF;
    SELECT * INTO v_item FROM items WHERE item_id = v_body->>'item_id' FOR UPDATE;
    IF NOT FOUND OR v_item.reader_id <> p_reader THEN
        RAISE EXCEPTION 'item % is not reader %''s', v_body->>'item_id', p_reader USING ERRCODE = 'DCO02';
    END IF;
    v_hash := encode(sha256(convert_to(p_body, 'UTF8')), 'hex');
    INSERT INTO events(seq, at, kind, reader_id, item_id, payload_json, prev_hash, hash)
        VALUES (v_seq, v_at, v_kind, p_reader, v_item.item_id, p_payload, v_body->>'prev_hash', v_hash);
    SELECT demo INTO v_demo FROM studies WHERE active = 1;
    IF v_kind = 'shown' THEN
        UPDATE items SET shown_at = coalesce(shown_at, v_at), last_shown_at = v_at, visits = visits + 1
            WHERE item_id = v_item.item_id;
    ELSIF v_kind = 'first_interaction' THEN
        UPDATE items SET first_interaction_at = v_at
            WHERE item_id = v_item.item_id AND first_interaction_at IS NULL AND submitted_at IS NULL;
    ELSIF v_kind = 'submit' THEN
        IF v_item.submitted_at IS NOT NULL THEN
            RAISE EXCEPTION 'item % was submitted already', v_item.item_id USING ERRCODE = 'DCS01';
        END IF;
        FOR v_key, v_value IN SELECT key, value FROM jsonb_each(v_payload->'answers') LOOP
            IF (p_values->>v_key)::jsonb IS DISTINCT FROM v_value THEN
                RAISE EXCEPTION 'the value of % differs from the event''s', v_key USING ERRCODE = 'DCW05';
            END IF;
            INSERT INTO responses(item_id, reader_id, task_id, question_key, value_json, revision, study_sha256,
                                  answered_at, modified_at, simulated)
                VALUES (v_item.item_id, p_reader, v_item.task_id, v_key, p_values->>v_key, 1, v_sha, v_at, v_at, v_demo)
                RETURNING response_id INTO v_response;
            INSERT INTO revisions(response_id, revision, value_json, changed_at, changed_by, reason, study_sha256, event_seq)
                VALUES (v_response, 1, p_values->>v_key, v_at, 'reader', '', v_sha, v_seq);
        END LOOP;
        UPDATE items SET submitted_at = v_at, active_seconds = (v_payload->>'active_seconds')::double precision
            WHERE item_id = v_item.item_id;
    ELSE  -- modify
        IF v_item.submitted_at IS NULL THEN
            RAISE EXCEPTION 'item % was not submitted yet', v_item.item_id USING ERRCODE = 'DCS02';
        END IF;
        FOR v_key, v_value IN SELECT key, value FROM jsonb_each(v_payload->'changes') LOOP
            IF (p_values->>v_key)::jsonb IS DISTINCT FROM v_value->'to' THEN
                RAISE EXCEPTION 'the value of % differs from the event''s', v_key USING ERRCODE = 'DCW05';
            END IF;
            SELECT response_id, revision INTO v_response, v_revision FROM responses
                WHERE item_id = v_item.item_id AND question_key = v_key;
            IF NOT FOUND THEN
                v_revision := 1;
                INSERT INTO responses(item_id, reader_id, task_id, question_key, value_json, revision, study_sha256,
                                      answered_at, modified_at, simulated)
                    VALUES (v_item.item_id, p_reader, v_item.task_id, v_key, p_values->>v_key, 1, v_sha, v_at, v_at,
                            v_demo)
                    RETURNING response_id INTO v_response;
            ELSE
                v_revision := v_revision + 1;
                UPDATE responses SET value_json = p_values->>v_key, revision = v_revision, modified_at = v_at,
                                     study_sha256 = v_sha
                    WHERE response_id = v_response;
            END IF;
            INSERT INTO revisions(response_id, revision, value_json, changed_at, changed_by, reason, study_sha256, event_seq)
                VALUES (v_response, v_revision, p_values->>v_key, v_at, 'reader', '', v_sha, v_seq);
        END LOOP;
        IF v_payload->>'active_seconds' IS NOT NULL THEN
            UPDATE items SET active_seconds = coalesce(active_seconds, 0) + (v_payload->>'active_seconds')::double precision
                WHERE item_id = v_item.item_id;
        END IF;
    END IF;
    RETURN v_hash;
END $$;
