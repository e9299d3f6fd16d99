-- Central store, version 4 (PostgreSQL): Ed25519 public keys of agents, as
-- schemas/sql/central/0005_agent_keys.sql (SQLite). Shared by every instance on this database.
CREATE TABLE agent_keys(
  agent_id     text    NOT NULL,
  key_id       text    NOT NULL,
  public_key   text    NOT NULL,
  approved_ns  bigint  NOT NULL,
  revoked_ns   bigint,
  PRIMARY KEY(agent_id, key_id)
);
