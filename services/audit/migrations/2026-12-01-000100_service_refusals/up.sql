-- Access refusals the services decide themselves (a missing or invalid
-- token, a role the caller lacks, another user's resource), recorded by
-- kit's auth layer; floods arrive as one summary event per window.
INSERT INTO action_types (product, action, title) VALUES
    ('accounts', 'accounts.request.refused', 'Request refused by the accounts service'),
    ('billing', 'billing.request.refused', 'Request refused by the billing service')
ON CONFLICT DO NOTHING;
