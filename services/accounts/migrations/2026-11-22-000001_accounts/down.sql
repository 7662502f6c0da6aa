DROP TABLE collaborations;
DROP TABLE settings;
DROP TABLE users;
DROP TABLE groups;
