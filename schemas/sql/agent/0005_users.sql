-- Local users of the agent's status page (docs/agent-status.md "Users and sessions"), managed
-- with `semilab-agent user add|passwd|del`. Passwords are stored only as scrypt hashes
-- ("scrypt$ln$r$p$salt$hash", base64; parameters kept per row so they can be raised later).
-- failures/locked_until_ns implement the lockout after repeated wrong passwords; they are
-- persisted so that a restart does not reset it.
CREATE TABLE users(
  name            TEXT    PRIMARY KEY,
  role            TEXT    NOT NULL CHECK (role IN ('technician', 'engineer')),
  password_hash   TEXT    NOT NULL,
  created_ns      INTEGER NOT NULL,
  changed_ns      INTEGER NOT NULL,
  failures        INTEGER NOT NULL DEFAULT 0,
  locked_until_ns INTEGER NOT NULL DEFAULT 0,
  last_login_ns   INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
