DROP TABLE impersonation_sessions, api_tokens, refresh_tokens, credentials;
