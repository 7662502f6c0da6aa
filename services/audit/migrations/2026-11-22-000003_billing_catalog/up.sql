-- The billing service's actions.
INSERT INTO products (product, title, built_in) VALUES ('billing', 'Billing', true);
INSERT INTO action_types (product, action, title) VALUES
    ('billing', 'billing.balance.refilled', 'Balance refilled'),
    ('billing', 'billing.balance.withdrawn', 'Funds withdrawn'),
    ('billing', 'billing.registration_bonus.granted', 'Registration bonus granted'),
    ('billing', 'billing.usage.charged', 'Resource usage charged');
INSERT INTO action_types (product, action, title) VALUES
    ('billing', 'billing.plan.created', 'Service plan created'),
    ('billing', 'billing.subscription.created', 'Subscription created'),
    ('billing', 'billing.subscription.cancelled', 'Subscription cancelled'),
    ('billing', 'billing.subscription.renewed', 'Subscription renewed'),
    ('billing', 'billing.subscription.expired', 'Subscription expired');
