DELETE FROM action_types WHERE product = 'notifications';
DELETE FROM products WHERE product = 'notifications';
