-- The notifications service's actions: mail sent, failed, suppressed,
-- resent; template and suppression changes; refusals.
INSERT INTO products (product, title, built_in) VALUES ('notifications', 'Notifications', true)
ON CONFLICT DO NOTHING;
INSERT INTO action_types (product, action, title) VALUES
    ('notifications', 'notifications.mail.sent', 'Mail sent'),
    ('notifications', 'notifications.mail.failed', 'Mail delivery failed'),
    ('notifications', 'notifications.mail.suppressed', 'Mail suppressed (address bounced)'),
    ('notifications', 'notifications.mail.resent', 'Mail resent'),
    ('notifications', 'notifications.notification.rejected', 'Notification request refused'),
    ('notifications', 'notifications.template.created', 'Mail template created'),
    ('notifications', 'notifications.template.updated', 'Mail template updated'),
    ('notifications', 'notifications.suppression.deleted', 'Address suppression removed'),
    ('notifications', 'notifications.request.refused', 'Request refused by the notifications service')
ON CONFLICT DO NOTHING;
