-- Central store, version 6 (PostgreSQL): batch re-verification columns and the hash-chained
-- audit trail, as schemas/sql/central/0007_audit.sql (SQLite). One chain per ingest instance
-- ("ingest:<instance>") plus "admin": instances on one database never wait for each other.
ALTER TABLE batches ADD COLUMN signed_header bytea;
ALTER TABLE batches ADD COLUMN key_id text;

CREATE TABLE audit_log(
  chain       text    NOT NULL,
  seq         bigint  NOT NULL,
  at_ns       bigint  NOT NULL,
  actor       text    NOT NULL,
  action      text    NOT NULL,
  target      text    NOT NULL,
  reason      text    NOT NULL,
  old_value   text,
  new_value   text,
  ref_id      bigint,
  prev_hash   text    NOT NULL,
  entry_hash  text    NOT NULL,
  PRIMARY KEY(chain, seq)
);
CREATE INDEX audit_log_ref ON audit_log(chain, ref_id);

-- Named users (scrypt password hashes, lockout), as in the SQLite 0007_audit.sql.
CREATE TABLE users(
  name             text    PRIMARY KEY,
  role             text    NOT NULL CHECK (role IN ('viewer', 'engineer', 'admin')),
  password_hash    text    NOT NULL,
  created_ns       bigint  NOT NULL,
  disabled_ns      bigint,
  failed_count     bigint  NOT NULL DEFAULT 0,
  locked_until_ns  bigint
);
