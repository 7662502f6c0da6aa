DELETE FROM action_types WHERE product = 'billing' AND action = 'billing.personal_data.erased';
