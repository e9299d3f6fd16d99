-- Central store, version 8: instrument export files uploaded by file-drop agents
-- (agent/src/filedrop.hpp), reassembled from their chunk records (class blob, channel
-- "blob:<i>/<n>", run id "file:<sha256>") and stored once per content, whoever sent it and how
-- often. Written by central/src/blobs.cpp in its own transaction right after the records' commit
-- and before the ack (a failure there is a retryable rejection: the agent resends, absorbing is
-- idempotent). The chunk records keep their key in `records`, their text is cleared once the
-- chunk is here (stored once).

-- One row per content: the file exactly as the instrument PC wrote it.
CREATE TABLE blobs(
  sha256     TEXT    PRIMARY KEY,    -- lowercase hex SHA-256 of data (checked on assembly)
  size       INTEGER NOT NULL,
  chunks     INTEGER NOT NULL,
  data       BLOB    NOT NULL,
  stored_ns  INTEGER NOT NULL
);

-- Chunks of contents not complete yet, deduplicated across agents; deleted on assembly.
CREATE TABLE blob_chunks(
  sha256       TEXT    NOT NULL,
  chunk        INTEGER NOT NULL,     -- 0-based
  chunks       INTEGER NOT NULL,     -- of the whole content
  data         TEXT    NOT NULL,     -- base64, as the record carried it
  received_ns  INTEGER NOT NULL,
  PRIMARY KEY (sha256, chunk)
) WITHOUT ROWID;

-- One row per file as an agent recorded it (its `filedrop.file` run_result record): the same
-- content from two agents, or twice from one, is two rows here and one blob.
CREATE TABLE blob_files(
  agent_id        TEXT    NOT NULL,
  store_epoch     INTEGER NOT NULL,
  record_seq      INTEGER NOT NULL,
  sha256          TEXT    NOT NULL,
  ts_ns           INTEGER NOT NULL,  -- when the agent took the file
  instrument      TEXT    NOT NULL,  -- the [[filedrop]] id
  name            TEXT    NOT NULL,
  folder          TEXT    NOT NULL,
  size            INTEGER NOT NULL,
  format          TEXT    NOT NULL,  -- "" when unknown
  parse_error     TEXT,              -- NULL when the file parsed
  analysis_error  TEXT,
  info            TEXT    NOT NULL,  -- the record's JSON, metadata included
  PRIMARY KEY (agent_id, store_epoch, record_seq)
) WITHOUT ROWID;
CREATE INDEX blob_files_sha ON blob_files(sha256);
CREATE INDEX blob_files_ts ON blob_files(ts_ns);
