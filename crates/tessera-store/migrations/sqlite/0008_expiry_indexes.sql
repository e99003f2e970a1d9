-- Forgetting expired rows must not read the whole table: each SAML login deletes expired
-- replay records (kept a day or more, so the table holds a day of logins), each login
-- start expired pending logins, and the prune task idle and old sessions. Deleting a
-- user deletes their sessions (ON DELETE CASCADE), found by user.
CREATE INDEX saml_replay_expiry ON saml_replay (expires_at);
CREATE INDEX saml_pending_expiry ON saml_pending (expires_at);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_last_seen ON sessions (last_seen_at);
CREATE INDEX sessions_created ON sessions (created_at);
