-- Central store, version 7: what a stored batch needs to be re-verified years later, and the
-- audit trail (21 CFR Part 11 §11.10(e); central/include/semilab/central/audit.hpp).
--
-- batches.signature (version 1) holds the frame's signature field (algorithm, key id, signature);
-- signed_header the exact header bytes that signature covers (offset 0 through the SHA-256
-- checksum of header and body, schemas/WIRE.md "Signature"), key_id the signing key's id, so
-- `semilab-central audit verify-batches` needs nothing but this row and agent_keys.
ALTER TABLE batches ADD COLUMN signed_header BLOB;
ALTER TABLE batches ADD COLUMN key_id TEXT;

-- Hash-chained audit entries, one chain per writer so that ingest instances never serialise on
-- each other: "ingest:<instance>" (one entry per ingested batch, appended by that instance's
-- ingest thread from the batch ledger) and "admin" (user actions and configuration changes).
-- entry_hash = SHA-256(prev_hash || canonical entry); prev_hash of seq 1 is 64 zeros.
-- Rows are never updated or deleted by semilab: `semilab-central audit verify` finds an edited,
-- deleted or reordered entry.
CREATE TABLE audit_log(
  chain       TEXT    NOT NULL,
  seq         INTEGER NOT NULL,
  at_ns       INTEGER NOT NULL,          -- when (UTC ns)
  actor       TEXT    NOT NULL,          -- who
  action      TEXT    NOT NULL,          -- what, e.g. batch.store, agent_key.approve
  target      TEXT    NOT NULL,          -- on which object
  reason      TEXT    NOT NULL,          -- why ("" when none was given)
  old_value   TEXT,
  new_value   TEXT,
  ref_id      INTEGER,                   -- batch.store: the batches.id it covers
  prev_hash   TEXT    NOT NULL,
  entry_hash  TEXT    NOT NULL,
  PRIMARY KEY(chain, seq)
) WITHOUT ROWID;
CREATE INDEX audit_log_ref ON audit_log(chain, ref_id);

-- Named users of central (central/include/semilab/central/users.hpp): the password is kept as
-- an scrypt hash ("scrypt$N$r$p$salt$hash", hex), never in clear. Repeated failed logins lock
-- the user for a while (failed_count, locked_until_ns). Disabled, never deleted, so the audit
-- trail's actors stay resolvable.
CREATE TABLE users(
  name             TEXT    PRIMARY KEY,
  role             TEXT    NOT NULL CHECK (role IN ('viewer', 'engineer', 'admin')),
  password_hash    TEXT    NOT NULL,
  created_ns       INTEGER NOT NULL,
  disabled_ns      INTEGER,
  failed_count     INTEGER NOT NULL DEFAULT 0,
  locked_until_ns  INTEGER
) WITHOUT ROWID;
