DROP TABLE event_ids;
