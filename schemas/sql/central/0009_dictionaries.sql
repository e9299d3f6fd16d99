-- Central store, version 9: zstd dictionaries agents trained on their telemetry (schemas/WIRE.md
-- "Dictionaries"), received on semilab/v1/{site}/{agent}/dict. A batch frame naming one is
-- decoded with the row of its agent; kept so that stored frames (quarantine, audits) and late
-- redeliveries stay readable after a restart.
CREATE TABLE dictionaries(
  agent_id    TEXT    NOT NULL,
  dict_id     INTEGER NOT NULL,          -- the id in the dictionary's header and in the frames
  bytes       TEXT    NOT NULL,          -- the dictionary, lowercase hex
  received_ns INTEGER NOT NULL,
  PRIMARY KEY(agent_id, dict_id)
) WITHOUT ROWID;
