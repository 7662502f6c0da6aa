DELETE FROM action_types; DELETE FROM products;
