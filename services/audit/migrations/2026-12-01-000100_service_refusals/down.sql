DELETE FROM action_types
WHERE (product, action) IN (('accounts', 'accounts.request.refused'), ('billing', 'billing.request.refused'));
