-- Each action is listed once. The accounts service emits eleven actions
-- the reference's "common" list also names; they are listed under the
-- product that emits them (accounts). The common spelling stays accepted
-- at ingest (a producer following the reference is not refused), unlisted.
ALTER TABLE action_types ADD COLUMN listed BOOLEAN NOT NULL DEFAULT true;
UPDATE action_types c SET listed = false
WHERE c.product = 'common'
  AND EXISTS (SELECT 1 FROM action_types a WHERE a.product = 'accounts' AND a.action = c.action);
