-- Central store, version 5: Ed25519 public keys of agents (batch signatures, schemas/WIRE.md
-- "Signature"). Approved by an admin (`semilab-central agents approve`); revoked (revoked_ns set),
-- never deleted, so a batch stored years ago can still be re-verified with the key its signature
-- names (batches.signature holds algorithm, key id and signature).
CREATE TABLE agent_keys(
  agent_id     TEXT    NOT NULL,
  key_id       TEXT    NOT NULL,          -- first 8 bytes of SHA-256(public key), hex
  public_key   TEXT    NOT NULL,          -- raw 32-byte Ed25519 public key, hex
  approved_ns  INTEGER NOT NULL,
  revoked_ns   INTEGER,                   -- NULL while the key is approved
  PRIMARY KEY(agent_id, key_id)
) WITHOUT ROWID;
