-- Central store, version 4: bearer tokens of the HTTP API (central/src/auth.cpp). Only the
-- SHA-256 of a token's secret is kept; the token itself is printed once by
-- `semilab-central tokens create` and never stored. Rows are revoked (revoked_ns set), never
-- deleted, so `tokens list --all` keeps who had access and when.
CREATE TABLE api_tokens(
  id             TEXT    PRIMARY KEY,     -- public part of the token (12 hex digits)
  name           TEXT    NOT NULL,        -- who or what holds it
  role           TEXT    NOT NULL CHECK (role IN ('viewer', 'engineer', 'admin')),
  secret_sha256  TEXT    NOT NULL,        -- hex SHA-256 of the secret part
  created_ns     INTEGER NOT NULL,
  revoked_ns     INTEGER                  -- NULL while the token is valid
) WITHOUT ROWID;
