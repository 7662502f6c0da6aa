-- The quotas service's actions.
INSERT INTO products (product, title, built_in) VALUES ('quotas', 'Quotas', true)
ON CONFLICT DO NOTHING;
INSERT INTO action_types (product, action, title) VALUES
    ('quotas', 'quotas.definitions.registered', 'Quota definitions registered'),
    ('quotas', 'quotas.group.updated', 'Group quota changed'),
    ('quotas', 'quotas.group.reset', 'Group quota reset to the default'),
    ('quotas', 'quotas.group.copied', 'Group quotas copied from another group'),
    ('quotas', 'quotas.user.updated', 'User quota changed'),
    ('quotas', 'quotas.user.reset', 'User quota reset to the group value'),
    ('quotas', 'quotas.request.refused', 'Request refused by the quotas service')
ON CONFLICT DO NOTHING;
