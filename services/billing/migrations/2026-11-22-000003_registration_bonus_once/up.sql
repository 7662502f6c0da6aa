-- The trial-to-billing conversion bonus is granted once per user.
CREATE UNIQUE INDEX ledger_one_registration_bonus ON ledger (user_id)
    WHERE operation = 'REGISTRATION_BONUS';
