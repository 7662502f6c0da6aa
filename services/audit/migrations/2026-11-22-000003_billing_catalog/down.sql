DELETE FROM action_types WHERE product = 'billing'; DELETE FROM products WHERE product = 'billing';
