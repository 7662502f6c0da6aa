DROP TABLE IF EXISTS cache_replicas;
DROP SEQUENCE IF EXISTS cache_seq;
DROP TABLE IF EXISTS applied_events;
DROP TABLE IF EXISTS overrides;
DROP TABLE IF EXISTS memberships;
DROP TABLE IF EXISTS group_values;
DROP TABLE IF EXISTS definitions;
