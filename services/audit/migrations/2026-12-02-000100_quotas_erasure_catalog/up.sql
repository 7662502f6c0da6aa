-- quotas removes a user's overrides when accounts erases their personal data.
INSERT INTO action_types (product, action, title) VALUES
    ('quotas', 'quotas.user.overrides_erased', 'User quota overrides removed with the personal data')
ON CONFLICT DO NOTHING;
