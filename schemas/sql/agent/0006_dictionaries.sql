-- zstd dictionaries the agent trained on its own telemetry (schemas/WIRE.md "Dictionaries").
-- Kept while a batch in flight may still use one (the engine names those it needs when it saves
-- a newer one), so central can always fetch the dictionary a frame names.
CREATE TABLE dictionaries(
  dict_id    INTEGER PRIMARY KEY,   -- the id zstd wrote into the dictionary (never 0)
  bytes      BLOB    NOT NULL,
  created_ns INTEGER NOT NULL
);
