-- Activity history by user id: a page walks this index from its cursor and
-- reads only its own users' days (an index-only scan), whatever the range.
CREATE INDEX activity_user_day ON activity_daily (subject_user_id, day) INCLUDE (count);
