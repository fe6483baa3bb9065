-- The admin session the browser held when it started a single sign-on, as the SHA-256 of its
-- cookie (the sessions table's own key; never the cookie itself). The session cookie is
-- SameSite=Strict, so it does not come back on the identity provider's redirect to the callback;
-- the callback ends this session instead, whether the sign-in succeeds or is refused. NULL when
-- the browser had no session.
ALTER TABLE admin_sso_requests ADD COLUMN previous_session_hash TEXT;
