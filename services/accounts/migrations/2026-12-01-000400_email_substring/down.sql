CREATE INDEX users_email_trgm ON users USING gin (email public.gin_trgm_ops);
DROP INDEX users_email_suffixes;
DROP FUNCTION email_suffixes(TEXT);
