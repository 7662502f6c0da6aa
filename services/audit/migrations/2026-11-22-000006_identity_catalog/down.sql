DELETE FROM action_types WHERE product = 'gateway' OR action IN (
    'user.signed_in', 'user.signed_out', 'user.session.refreshed', 'user.session.refresh_token_reused',
    'user.account.locked_out', 'user.account.unblocked', 'user.two_factor.enrollment_started',
    'user.two_factor.enabled', 'user.two_factor.disabled', 'user.password.changed', 'api_token.created',
    'api_token.refreshed', 'api_token.deleted', 'api_token.used', 'impersonation.started',
    'impersonation.stopped') AND product = 'accounts';
DELETE FROM products WHERE product = 'gateway';
