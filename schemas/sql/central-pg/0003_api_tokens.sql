-- Central store, version 3 (PostgreSQL): bearer tokens of the HTTP API, as
-- schemas/sql/central/0004_api_tokens.sql (SQLite). Shared by every instance on this database.
CREATE TABLE api_tokens(
  id             text    PRIMARY KEY,
  name           text    NOT NULL,
  role           text    NOT NULL CHECK (role IN ('viewer', 'engineer', 'admin')),
  secret_sha256  text    NOT NULL,
  created_ns     bigint  NOT NULL,
  revoked_ns     bigint
);
