-- The action catalog: the filter lists of the admin panel. Platform services
-- add their own products with RegisterActionTypes.
INSERT INTO products (product, title, built_in) VALUES
    ('common', 'Common events', true),
    ('accounts', 'Accounts', true),
    ('audit', 'Audit', true);

INSERT INTO action_types (product, action, title) VALUES
    -- Common events (user-actions-audit.txt).
    ('common', 'account.phone.confirmed', 'Phone number confirmed'),
    ('common', 'account.phone.confirmation_requested', 'Phone number confirmation code request'),
    ('common', 'role.custom.created', 'Custom role created'),
    ('common', 'role.custom.updated', 'Custom role updated'),
    ('common', 'role.custom.renamed', 'Custom role renamed'),
    ('common', 'role.custom.deleted', 'Custom role deleted'),
    ('common', 'user.account.blocked', 'User account blocked'),
    ('common', 'user.account.unblocked', 'User account unblocked'),
    ('common', 'user.account.locked_out', 'Account is blocked, too many failed sign-in attempts'),
    ('common', 'user.created', 'New user added'),
    ('common', 'user.roles.updated', 'User roles updated'),
    ('common', 'user.signed_in', 'User signed in'),
    ('common', 'user.signed_out', 'User signed out'),
    ('common', 'user.password.changed', 'User profile password changed'),
    ('common', 'user.profile.updated', 'User profile updated'),
    ('common', 'api_token.created', 'Token created'),
    ('common', 'api_token.refreshed', 'Token refreshed'),
    ('common', 'api_token.updated', 'Token updated'),
    ('common', 'api_token.deleted', 'Token deleted'),
    -- This platform's user administration (the accounts service).
    ('accounts', 'user.created', 'New user added'),
    ('accounts', 'user.profile.updated', 'User profile updated'),
    ('accounts', 'user.roles.updated', 'User roles updated'),
    ('accounts', 'user.status.changed', 'User status change requested'),
    ('accounts', 'user.status.activated', 'User activated'),
    ('accounts', 'user.status.suspended', 'User suspended'),
    ('accounts', 'user.status.deactivated', 'User deactivated'),
    ('accounts', 'user.status.destroyed', 'User destroyed'),
    ('accounts', 'user.group.changed', 'User group changed'),
    ('accounts', 'user.email.changed', 'User email changed'),
    ('accounts', 'user.notes.updated', 'User notes updated'),
    ('accounts', 'user.personal_data.deleted', 'User personal data deleted'),
    ('accounts', 'settings.updated', 'Account settings updated'),
    ('accounts', 'group.created', 'User group created'),
    ('accounts', 'collaboration.created', 'Account shared'),
    ('accounts', 'collaboration.accepted', 'Account sharing accepted'),
    ('accounts', 'collaboration.revoked', 'Account sharing revoked'),
    -- The audit service's own actions.
    ('audit', 'audit.events.exported', 'Audit events exported'),
    ('audit', 'audit.subject_data.erased', 'Personal data erased from the audit log'),
    ('audit', 'audit.retention.updated', 'Audit retention policy updated'),
    ('audit', 'audit.action_types.registered', 'Action types registered');
