-- Central store, version 7 (PostgreSQL): instrument export files, as schemas/sql/central
-- 0008_blobs.sql (SQLite) describes: contents stored once by SHA-256, chunks staged until
-- complete, one row per file an agent recorded.
CREATE TABLE blobs(
  sha256     text    PRIMARY KEY,
  size       bigint  NOT NULL,
  chunks     bigint  NOT NULL,
  data       bytea   NOT NULL,
  stored_ns  bigint  NOT NULL
);

CREATE TABLE blob_chunks(
  sha256       text    NOT NULL,
  chunk        bigint  NOT NULL,
  chunks       bigint  NOT NULL,
  data         text    NOT NULL,
  received_ns  bigint  NOT NULL,
  PRIMARY KEY (sha256, chunk)
);

CREATE TABLE blob_files(
  agent_id        text    NOT NULL,
  store_epoch     bigint  NOT NULL,
  record_seq      bigint  NOT NULL,
  sha256          text    NOT NULL,
  ts_ns           bigint  NOT NULL,
  instrument      text    NOT NULL,
  name            text    NOT NULL,
  folder          text    NOT NULL,
  size            bigint  NOT NULL,
  format          text    NOT NULL,
  parse_error     text,
  analysis_error  text,
  info            text    NOT NULL,
  PRIMARY KEY (agent_id, store_epoch, record_seq)
);
CREATE INDEX blob_files_sha ON blob_files(sha256);
CREATE INDEX blob_files_ts ON blob_files(ts_ns);
