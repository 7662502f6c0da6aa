-- Quota definitions: the catalog of keys, their type and default.
-- A value is text in its canonical form plus an `unlimited` flag
-- (unlimited is a value of its own; the text is empty then).
CREATE TABLE definitions (
    key text PRIMARY KEY,
    value_type text NOT NULL CHECK (value_type IN ('FLAG', 'COUNT', 'MONEY', 'DAYS', 'GIGABYTES', 'MEGABITS', 'ENUM')),
    unit text NOT NULL DEFAULT '',
    description text NOT NULL DEFAULT '',
    product text NOT NULL,
    default_value text NOT NULL DEFAULT '',
    default_unlimited boolean NOT NULL DEFAULT false,
    allowed_values text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- A group's value for a definition; a group without one inherits the default.
CREATE TABLE group_values (
    group_name text NOT NULL,
    key text NOT NULL REFERENCES definitions (key),
    value text NOT NULL DEFAULT '',
    unlimited boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_name, key)
);

-- quotas' own copy of each user's group, fed by accounts' events (or asked
-- from accounts once). `last_event_id` is the newest event applied (UUIDv7:
-- ordered by time); an older one changes nothing.
CREATE TABLE memberships (
    user_id uuid PRIMARY KEY,
    group_name text NOT NULL,
    erased boolean NOT NULL DEFAULT false,
    last_event_id uuid,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Per-user overrides.
CREATE TABLE overrides (
    user_id uuid NOT NULL,
    key text NOT NULL REFERENCES definitions (key),
    value text NOT NULL DEFAULT '',
    unlimited boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);

-- Membership events already applied (receivers deduplicate by event id).
CREATE TABLE applied_events (
    event_id uuid PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- Cache coherence across replicas: every change takes a number from
-- cache_seq and NOTIFYs it; each replica records the highest number it has
-- applied, and a writer acknowledges only when every live replica has.
CREATE SEQUENCE cache_seq;
CREATE TABLE cache_replicas (
    replica_id uuid PRIMARY KEY,
    acked_seq bigint NOT NULL DEFAULT 0,
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO definitions (key, value_type, unit, description, product, default_value, allowed_values) VALUES
    ('environment.maxcount', 'COUNT', 'environments', 'Environments the account may have', 'platform', '10', '{}'),
    ('environment.maxnodescount', 'COUNT', 'nodes', 'Nodes in one environment', 'platform', '16', '{}'),
    ('environment.maxsamenodescount', 'COUNT', 'nodes', 'Nodes of the same type in one layer', 'platform', '8', '{}'),
    ('environment.maxcloudletsperrec', 'COUNT', 'cloudlets', 'Cloudlets one container may scale to', 'platform', '16', '{}'),
    ('environment.externalip.enabled', 'FLAG', '', 'Public IPv4 addresses may be attached', 'platform', '0', '{}'),
    ('environment.externalip.maxcount', 'COUNT', 'addresses', 'Public IPv4 addresses in one environment', 'platform', '1', '{}'),
    ('environment.externalip.maxcount.per.node', 'COUNT', 'addresses', 'Public IPv4 addresses on one node', 'platform', '1', '{}'),
    ('environment.externalipv6.enabled', 'FLAG', '', 'Public IPv6 addresses may be attached', 'platform', '0', '{}'),
    ('environment.externalipv6.maxcount', 'COUNT', 'addresses', 'Public IPv6 addresses in one environment', 'platform', '1', '{}'),
    ('environment.jelasticssl.enabled', 'FLAG', '', 'The platform''s shared SSL certificate may be used', 'platform', '1', '{}'),
    ('environment.endpoint.enabled', 'FLAG', '', 'Endpoints (TCP/UDP port mapping) may be created', 'platform', '1', '{}'),
    ('environment.vds.enabled', 'FLAG', '', 'Elastic VPS may be created', 'platform', '0', '{}'),
    ('disk.limitation', 'GIGABYTES', 'GB', 'Disk space of one container', 'platform', '10', '{}'),
    ('disk.iopslimit', 'COUNT', 'IOPS', 'Disk operations per second of one container', 'platform', '1000', '{}'),
    ('storage.node.disk.limitation', 'GIGABYTES', 'GB', 'Disk space of one storage node', 'platform', '100', '{}'),
    ('network.bandwidth.limitation', 'MEGABITS', 'Mbit/s', 'Network bandwidth of one container', 'platform', '100', '{}'),
    ('firewall.enabled', 'FLAG', '', 'The container firewall may be managed', 'platform', '1', '{}'),
    ('account.minbalance', 'MONEY', 'USD', 'Lowest balance before resources are stopped', 'billing', '0', '{}'),
    ('account.personal.min.threshold', 'MONEY', 'USD', 'Balance below which the user is warned', 'billing', '5', '{}'),
    ('account.charge.balance.first', 'ENUM', '', 'Which balance is charged first', 'billing', 'bonus', '{bonus,main}'),
    ('account.destroy.period', 'DAYS', 'days', 'Days a deactivated account is kept before it is destroyed', 'accounts', '30', '{}'),
    ('account.personal.data.removal.delay', 'DAYS', 'days', 'Days after destruction before personal data is erased (0: at once)', 'accounts', '0', '{}');

-- Trial accounts are limited more than paying ones.
INSERT INTO group_values (group_name, key, value) VALUES
    ('trial', 'environment.maxcount', '2'),
    ('trial', 'environment.maxnodescount', '4'),
    ('trial', 'environment.maxcloudletsperrec', '8'),
    ('trial', 'disk.limitation', '5'),
    ('billing', 'environment.maxcount', '50'),
    ('billing', 'environment.externalip.enabled', '1'),
    ('billing', 'environment.vds.enabled', '1');
