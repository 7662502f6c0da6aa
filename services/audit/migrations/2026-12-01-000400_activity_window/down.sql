DROP FUNCTION activity_window_shift();
DROP FUNCTION activity_window_rebuild(DATE);
DROP TABLE activity_window;
DROP TABLE activity_window_span;
