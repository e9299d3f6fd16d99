"""Several central instances on the shared subscription and one PostgreSQL.

One PostgreSQL (initdb + pg_ctl as the `postgres` user when run as root, temp dir, free port),
one mosquitto, two semilab-sim, two semilab-central (backend = postgresql, own instance ids and
retained state topics, one `$share/semilab-central/...` subscription) and ten semilab-agent
processes producing N records each. One central instance is SIGKILLed under load; the other
carries on, the agents resend what was unacked, and PostgreSQL ends with exactly N distinct,
gap-free records per agent.
"""
import argparse
import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Proc, System, free_port, wait_for  # noqa: E402

AGENTS = [f"agent-mc-{i:02d}" for i in range(10)]


def pg_bindir():
    env = os.environ.get("SEMILAB_PG_BINDIR")
    if env and os.path.exists(os.path.join(env, "initdb")):
        return env
    dirs = sorted(d for d in glob.glob("/usr/lib/postgresql/*/bin")
                  if os.path.exists(os.path.join(d, "initdb")))
    if not dirs:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found in "
                           "$SEMILAB_PG_BINDIR or /usr/lib/postgresql/*/bin: install the Debian "
                           "package postgresql (./dev deps)")
    return dirs[-1]


class Postgres:
    """A throwaway cluster; stop() removes it."""

    def __init__(self):
        self.bin = pg_bindir()
        self.dir = tempfile.mkdtemp(prefix="semilab-pg-it-")
        self.data = os.path.join(self.dir, "data")
        self.prefix = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            os.chmod(self.dir, 0o755)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.port = free_port()
        self._run([f"{self.bin}/initdb", "-D", self.data, "-U", "semilab", "-A", "trust", "-E",
                   "UTF8", "--no-sync", "--no-instructions"])
        opts = (f"-k {self.dir} -p {self.port} -c listen_addresses=127.0.0.1 "
                "-c max_connections=50")
        self._run([f"{self.bin}/pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "server.log"),
                   "-w", "-t", "60", "-o", opts, "start"])
        self.url = f"postgresql://semilab@127.0.0.1:{self.port}/postgres"

    def _run(self, argv):
        out = subprocess.run(self.prefix + argv, capture_output=True, timeout=120)
        if out.returncode != 0:
            log = os.path.join(self.dir, "server.log")
            tail = open(log, errors="replace").read()[-1500:] if os.path.exists(log) else ""
            raise RuntimeError(f"{argv[0]} failed ({out.returncode}): "
                               f"{out.stdout.decode()}{out.stderr.decode()}{tail}")

    def query(self, sql):
        out = subprocess.run([f"{self.bin}/psql", "-At", "-F", ",", "-h", "127.0.0.1", "-p",
                              str(self.port), "-U", "semilab", "-d", "postgres", "-c", sql],
                             capture_output=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"psql: {out.stderr.decode()}")
        return [line.split(",") for line in out.stdout.decode().splitlines() if line]

    def stop(self):
        try:
            self._run([f"{self.bin}/pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop"])
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def start_central(system, pg, instance):
    conf = system.path(f"{instance}.toml")
    with open(conf, "w") as f:
        f.write(f'[central]\ninstance = "{instance}"\ndata_dir = "{system.path(instance)}"\n\n'
                f'{system.mqtt_toml("semilab-central")}\n'
                f'[http]\nlisten = "127.0.0.1:0"\n\n'
                f'[store]\nbackend = "postgresql"\nurl = "{pg.url}"\n')
    p = Proc([os.path.join(system.bin, "semilab-central"), "run", "--config", conf],
             system.path(f"{instance}.log"), first_line="http")
    system.procs.append(p)
    return p, p.first.split()[1]


def stored_per_agent(pg):
    return {a: int(n) for a, n in pg.query("SELECT agent_id, COUNT(*) FROM records GROUP BY 1")}


def test_kill_one_instance(system, pg, n):
    system.start_broker()
    sims = [system.start_sim()[1] for _ in range(2)]
    c1, http1 = start_central(system, pg, "central-a")
    c2, _ = start_central(system, pg, "central-b")
    system.http = http1  # the survivor answers the API (it reads the shared database)
    confs = {}
    for i, agent in enumerate(AGENTS):
        confs[agent] = system.write_agent_config(sims[i % 2], count=n, interval=0.01,
                                                 agent_id=agent, ack_timeout=1.0)
        system.start_agent(confs[agent], agent_id=agent)
    total = n * len(AGENTS)
    wait_for(lambda: sum(stored_per_agent(pg).values()) > total // 4, 120, "a quarter stored")
    ledger = dict(pg.query("SELECT instance, COUNT(*) FROM batches GROUP BY 1"))
    assert "central-b" in ledger and "central-a" in ledger, \
        f"both instances should share the load before the kill: {ledger}"
    c2.kill()  # SIGKILL under load: no clean shutdown, its open transaction is lost
    killed_at = sum(stored_per_agent(pg).values())
    assert killed_at < total, "the kill came after everything was stored: lower the rate"

    def agent_done(agent):
        st = system.agent_status(confs[agent])
        c = st["counters"]
        return c["produced"] == n and st["outbox"]["records"] == 0 and c["held"] == 0

    wait_for(lambda: all(agent_done(a) for a in AGENTS), 240, "every agent: N produced, all acked")
    counts = stored_per_agent(pg)
    for agent in AGENTS:
        assert counts.get(agent) == n, f"{agent}: {counts.get(agent)} records stored, expected {n}"
    rows = pg.query("SELECT agent_id, COUNT(DISTINCT (store_epoch, record_seq)), MIN(record_seq), "
                    "MAX(record_seq) FROM records GROUP BY 1")
    for agent, distinct, lo, hi in rows:
        assert int(distinct) == n, f"{agent}: {distinct} distinct keys, expected {n}"
        assert int(hi) - int(lo) + 1 == n, f"{agent}: sequence {lo}..{hi} has gaps"
    for agent in AGENTS:
        c = system.agent_status(confs[agent])["counters"]
        assert c["acked"] == n, f"{agent}: acked {c['acked']}, expected {n}"
    after = dict(pg.query("SELECT instance, COUNT(*) FROM batches GROUP BY 1"))
    assert int(after["central-a"]) > int(ledger["central-a"]), "the survivor stopped storing"
    # The API of the survivor agrees with the database.
    api = {a["agent_id"]: a["records"] for a in system.central_get("/api/v1/agents")["agents"]}
    for agent in AGENTS:
        assert api.get(agent) == n, f"API: {agent} has {api.get(agent)} records"
    print(f"ok: {len(AGENTS)} agents x {n} records; central-b killed at {killed_at}/{total} "
          f"stored; ledger rows per instance {after}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--records", type=int, default=400)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="semilab-mc-") if args.keep else None
    pg = Postgres()
    system = System(args.bin_dir, workdir)
    try:
        test_kill_one_instance(system, pg, args.records)
        return 0
    except Exception:
        traceback.print_exc()
        system.dump_logs()
        return 1
    finally:
        system.stop()
        pg.stop()


if __name__ == "__main__":
    sys.exit(main())
