-- Central store (PostgreSQL), version 8: zstd dictionaries agents trained on their telemetry
-- (schemas/WIRE.md "Dictionaries"); the same table as the SQLite store's 0009.
CREATE TABLE dictionaries(
  agent_id    TEXT    NOT NULL,
  dict_id     BIGINT  NOT NULL,
  bytes       TEXT    NOT NULL,
  received_ns BIGINT  NOT NULL,
  PRIMARY KEY(agent_id, dict_id)
);
