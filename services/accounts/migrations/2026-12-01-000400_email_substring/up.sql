-- ListUsers by email substring. The trigram index answered `email LIKE
-- '%user4242%'` by intersecting the posting lists of trigrams every email
-- has ('use', 'ser', ...): ~650 pages per page of results at 1M users.
-- Instead every suffix of the email is a lexeme, so "contains needle" is
-- "some suffix starts with needle": a GIN prefix match (`'needle':*`) that
-- visits only the entries starting with the needle, whatever its letters.
-- The LIKE stays in the query as the definition; the order and the keyset
-- are unchanged.
CREATE FUNCTION email_suffixes(email TEXT) RETURNS tsvector
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN array_to_tsvector(ARRAY(SELECT substr(email, i) FROM generate_series(1, length(email)) AS i));

-- fastupdate off: a pending list is scanned whole by every search until a
-- vacuum merges it, and users are read far more often than created.
CREATE INDEX users_email_suffixes ON users USING gin (email_suffixes(email)) WITH (fastupdate = off);

DROP INDEX users_email_trgm;
