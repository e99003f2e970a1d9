-- The last use of a client secret (time in seconds, source address) follows from the
-- audit trail: a trigger records it in the same statement that appends the token event,
-- so an audit batch is one statement (one round trip, atomic without BEGIN/COMMIT).
CREATE TRIGGER client_secrets_last_use AFTER INSERT ON audit_events
WHEN NEW.kind = 'token' AND NEW.secret_id IS NOT NULL
BEGIN
    UPDATE client_secrets
       SET last_used_at = NEW.time_ms / 1000, last_used_from = NEW.source_ip
     WHERE id = NEW.secret_id;
END;
