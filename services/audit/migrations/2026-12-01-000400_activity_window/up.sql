-- Activity history, most active first, over the trailing window (the 31
-- days ending today, UTC: start_date = end_date - 30): the per-user totals
-- kept ranked, so the first page is an index range scan instead of an
-- aggregation of every user's days. Maintained by each ingest batch in its
-- transaction (under the chain head lock), from the same counts as
-- activity_daily; the first batch of a new day shifts the window (or
-- rebuilds it). Any other range, a user filter or the by-user order still
-- aggregate activity_daily.
CREATE TABLE activity_window_span (
    id        BOOLEAN PRIMARY KEY DEFAULT true CHECK (id),
    first_day DATE NOT NULL,
    last_day  DATE NOT NULL
);

CREATE TABLE activity_window (
    subject_user_id TEXT   PRIMARY KEY,
    count           BIGINT NOT NULL CHECK (count > 0)
);
-- Negated so that a keyset position (-count, user) > (...) is a range.
CREATE INDEX activity_window_rank ON activity_window ((-count), subject_user_id);

-- The window as the 31 days ending on `last`, computed from activity_daily.
CREATE FUNCTION activity_window_rebuild(last DATE) RETURNS void
    LANGUAGE sql SET search_path FROM CURRENT AS $$
    DELETE FROM activity_window;
    INSERT INTO activity_window (subject_user_id, count)
        SELECT subject_user_id, sum(count) FROM activity_daily
        WHERE day BETWEEN last - 30 AND last
        GROUP BY subject_user_id;
    INSERT INTO activity_window_span (first_day, last_day) VALUES (last - 30, last)
        ON CONFLICT (id) DO UPDATE SET first_day = EXCLUDED.first_day, last_day = EXCLUDED.last_day;
$$;

-- The window one day later: the oldest day leaves, the next day enters.
CREATE FUNCTION activity_window_shift() RETURNS void
    LANGUAGE sql SET search_path FROM CURRENT AS $$
    -- Delete before subtracting: each statement sees the one before.
    DELETE FROM activity_window w
        USING (SELECT subject_user_id, sum(count) AS n FROM activity_daily
               WHERE day = (SELECT first_day FROM activity_window_span)
               GROUP BY subject_user_id) d
        WHERE w.subject_user_id = d.subject_user_id AND w.count <= d.n;
    UPDATE activity_window w SET count = w.count - d.n
        FROM (SELECT subject_user_id, sum(count) AS n FROM activity_daily
              WHERE day = (SELECT first_day FROM activity_window_span)
              GROUP BY subject_user_id) d
        WHERE w.subject_user_id = d.subject_user_id AND w.count > d.n;
    INSERT INTO activity_window (subject_user_id, count)
        SELECT subject_user_id, sum(count) FROM activity_daily
        WHERE day = (SELECT last_day + 1 FROM activity_window_span)
        GROUP BY subject_user_id
        ON CONFLICT (subject_user_id) DO UPDATE SET count = activity_window.count + EXCLUDED.count;
    UPDATE activity_window_span SET first_day = first_day + 1, last_day = last_day + 1;
$$;
