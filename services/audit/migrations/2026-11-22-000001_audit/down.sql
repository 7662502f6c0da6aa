DROP TABLE retention_policies;
DROP TABLE action_types;
DROP TABLE products;
DROP TABLE activity_daily;
DROP TABLE chain_tombstones;
DROP TABLE chain_head;
DROP TABLE events;
