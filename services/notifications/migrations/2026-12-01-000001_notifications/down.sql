DROP TABLE suppressions;
DROP TABLE mail_events;
DROP TABLE mails;
DROP TABLE requests;
DROP TABLE template_versions;
DROP TABLE templates;
