-- A service blanking what it keeps of an erased user (PersonalDataService).
INSERT INTO action_types (product, action, title) VALUES
    ('billing', 'billing.personal_data.erased', 'Personal data erased from billing records')
ON CONFLICT DO NOTHING;
