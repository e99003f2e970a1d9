-- A secret's last use is now written once per audit batch by the appender
-- (sqlite/audit.rs), in the batch's transaction, as on PostgreSQL: the trigger rewrote
-- the secret's row once per event, and under load most events of a batch name the
-- same secret.
DROP TRIGGER client_secrets_last_use;
