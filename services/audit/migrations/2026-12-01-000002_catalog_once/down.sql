ALTER TABLE action_types DROP COLUMN listed;
