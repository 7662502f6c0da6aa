DELETE FROM action_types WHERE product = 'quotas';
DELETE FROM products WHERE product = 'quotas';
