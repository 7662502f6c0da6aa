-- Templates: named, versioned, per locale. A version is never changed once
-- written; a mail names the version it was rendered from.
CREATE TABLE templates (
    template_id TEXT PRIMARY KEY,
    category TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    default_locale TEXT NOT NULL,
    variables TEXT[] NOT NULL DEFAULT '{}',
    current_version INT NOT NULL,
    built_in BOOLEAN NOT NULL DEFAULT false,
    create_time TIMESTAMPTZ NOT NULL DEFAULT now(),
    update_time TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX templates_by_category ON templates (category, template_id);

CREATE TABLE template_versions (
    template_id TEXT NOT NULL REFERENCES templates (template_id),
    version INT NOT NULL,
    locale TEXT NOT NULL,
    subject TEXT NOT NULL,
    text_body TEXT NOT NULL,
    html_body TEXT NOT NULL DEFAULT '',
    author_user_id TEXT NOT NULL DEFAULT '',
    create_time TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (template_id, version, locale)
);

-- Notification requests seen, by event id: a redelivery queues nothing.
CREATE TABLE requests (
    event_id UUID PRIMARY KEY,
    source TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One recipient's copy of a request, rendered at ingest.
CREATE TABLE mails (
    id UUID PRIMARY KEY,
    notification_id UUID NOT NULL,
    source TEXT NOT NULL,
    subject_user_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    template_id TEXT NOT NULL,
    template_version INT NOT NULL,
    locale TEXT NOT NULL,
    subject TEXT NOT NULL,
    text_body TEXT NOT NULL,
    html_body TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('QUEUED', 'SENDING', 'SENT', 'DEFERRED', 'FAILED', 'SUPPRESSED')),
    attempts INT NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    transport TEXT NOT NULL DEFAULT '',
    next_attempt_at TIMESTAMPTZ,
    resent_from UUID REFERENCES mails (id),
    -- When the change that caused it happened (the request's occurred_at).
    occurred_at TIMESTAMPTZ NOT NULL,
    create_time TIMESTAMPTZ NOT NULL DEFAULT now(),
    update_time TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_time TIMESTAMPTZ
);
-- The dispatcher's queue: only mail still to be tried.
CREATE INDEX mails_due ON mails (next_attempt_at) WHERE status IN ('QUEUED', 'DEFERRED');
-- Interrupted sends (a crash mid-SENDING) are found by their age.
CREATE INDEX mails_sending ON mails (update_time) WHERE status = 'SENDING';
-- ListNotifications per user, newest first (ids are UUIDv7).
CREATE INDEX mails_by_user ON mails (subject_user_id, id DESC);

-- Every status change, timestamped.
CREATE TABLE mail_events (
    id BIGSERIAL PRIMARY KEY,
    mail_id UUID NOT NULL REFERENCES mails (id),
    status TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX mail_events_by_mail ON mail_events (mail_id, id);

-- Addresses that hard-bounced.
CREATE TABLE suppressions (
    address TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    mail_id UUID,
    create_time TIMESTAMPTZ NOT NULL DEFAULT now()
);
