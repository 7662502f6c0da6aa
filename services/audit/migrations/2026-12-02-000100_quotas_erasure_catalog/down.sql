DELETE FROM action_types WHERE action = 'quotas.user.overrides_erased';
