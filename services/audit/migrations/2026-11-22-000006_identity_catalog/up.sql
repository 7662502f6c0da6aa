-- Identity actions of the accounts service and the gateway's refusals.
INSERT INTO products (product, title, built_in) VALUES
    ('gateway', 'Gateway', true);

INSERT INTO action_types (product, action, title) VALUES
    ('accounts', 'user.signed_in', 'User signed in'),
    ('accounts', 'user.signed_out', 'User signed out'),
    ('accounts', 'user.session.refreshed', 'Session refreshed'),
    ('accounts', 'user.session.refresh_token_reused', 'Session revoked, a used refresh token was presented again'),
    ('accounts', 'user.account.locked_out', 'Account is blocked, too many failed sign-in attempts'),
    ('accounts', 'user.account.unblocked', 'User account unblocked'),
    ('accounts', 'user.two_factor.enrollment_started', 'Two-factor enrollment started'),
    ('accounts', 'user.two_factor.enabled', 'Two-factor authentication enabled'),
    ('accounts', 'user.two_factor.disabled', 'Two-factor authentication disabled'),
    ('accounts', 'user.password.changed', 'User profile password changed'),
    ('accounts', 'api_token.created', 'Token created'),
    ('accounts', 'api_token.refreshed', 'Token refreshed'),
    ('accounts', 'api_token.deleted', 'Token deleted'),
    ('accounts', 'api_token.used', 'Token used to sign in'),
    ('accounts', 'impersonation.started', 'Administrator signed in as the user'),
    ('accounts', 'impersonation.stopped', 'Administrator stopped signing in as the user'),
    ('gateway', 'gateway.request.refused', 'Request refused at the gateway');
