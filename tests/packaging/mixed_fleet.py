#!/usr/bin/python3
"""Mixed fleet with real old binaries (issue 10, "Upgrades"): the previous release's
semilab-agent and semilab-central, built from git history, against this tree's, over a real
mosquitto on loopback. Run by `./dev mixed-fleet` (not by `./dev test`: it compiles a second tree).

The previous release is PREVIOUS below: the schemas and the wire of the last change of the frame
or the agent/central schemas before the current ones. `git log -- schemas/`: 67fc64b (current)
added the dictionary id to the frame, agent 0006 and central 0009; before it, 19fa98a filled the
frame's signature field and added central 0005 and the reject codes bad_signature/unapproved.
19fa98a itself does not build a working agent (agent/CMakeLists.txt lists src/signing.cpp only
from a later commit: `load_signing_key` is undefined at link), so PREVIOUS is 67174c5, the last
commit before 67fc64b: its schemas/ are identical to 19fa98a's (`git diff 19fa98a 67174c5 --
schemas/` is empty), so it writes the same frames, acks and stores, and it is what a site ran
last before the current release. Override with --old-commit.

Scenarios (each: fresh broker, simulators, stores; N records per agent; every agent's status
must say produced = acked = N with an empty outbox, and central's store must hold exactly N
distinct records per agent with contiguous sequence numbers, i.e. each record exactly once):
  1. old central, one old and one new agent (new agents -> old central);
  2. new central, one old and one new agent (old agents -> new central);
  3. each of those with central SIGKILLed midway and restarted (acks after a restart, resends);
  4. in-place upgrades: an old agent fills its outbox while no central runs, then the new agent
     binary takes over the same data_dir; an old central stores, then the new central opens its
     store (migrations, back-fill of the data model) and keeps ingesting.
"""
import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from harness import Proc, System, wait_for  # noqa: E402

PREVIOUS = "67174c5"


def log(msg):
    print(f"[mixed-fleet] {msg}", flush=True)


def build_old(commit, out, jobs):
    """The previous release's agent and central in a Release tree under `out` (reused when
    already built). Returns its bin directory."""
    bin_dir = os.path.join(out, "build", "bin")
    if all(os.path.exists(os.path.join(bin_dir, b)) for b in ("semilab-agent", "semilab-central")):
        log(f"old binaries present in {bin_dir}")
        return bin_dir
    src = os.path.join(out, "src")
    if not os.path.isdir(src):
        os.makedirs(src)
        arch = subprocess.run(["git", "-C", ROOT, "archive", commit], capture_output=True,
                              check=True).stdout
        subprocess.run(["tar", "-x", "-C", src], input=arch, check=True)
    env = dict(os.environ)
    if shutil.which("ccache"):
        env.setdefault("CCACHE_BASEDIR", src)
        env.setdefault("CCACHE_NOHASHDIR", "1")
    log(f"building {commit} (Release) in {out}")
    subprocess.run(["cmake", "-S", src, "-B", os.path.join(out, "build"), "-G", "Ninja",
                    "-DCMAKE_BUILD_TYPE=Release"], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["ninja", "-C", os.path.join(out, "build"), f"-j{jobs}", "semilab-agent",
                    "semilab-central"], check=True, env=env)
    return bin_dir


class Fleet:
    """A broker plus centrals and agents, each started from the bin dir of its version."""

    def __init__(self, new_bin, workdir):
        self.sys = System(new_bin, workdir=workdir, tls=False)  # broker + simulators (new sim)
        self.sys.start_broker()
        self.central = None
        self.agents = {}  # id -> (bin, conf)

    def start_central(self, bin_dir):
        s = self.sys
        conf = s.write_central_config("central-1")
        p = Proc([os.path.join(bin_dir, "semilab-central"), "run", "--config", conf],
                 s.path("central-1.log"), first_line="http")
        s.procs.append(p)
        s.http = p.first.split()[1]
        self.central = p
        return p

    def start_agent(self, agent_id, bin_dir, count):
        s = self.sys
        if agent_id not in self.agents:
            _, port = s.start_sim()
            self.agents[agent_id] = {"port": port}
        a = self.agents[agent_id]
        a["bin"] = bin_dir
        a["conf"] = s.write_agent_config(a["port"], count=count, interval=0.003,
                                         agent_id=agent_id, ack_timeout=1.0)
        with open(a["conf"], "a") as f:  # two agents (and other tests) must not share :8470
            f.write("\n[status]\nport = 0\n")
        p = Proc([os.path.join(bin_dir, "semilab-agent"), "run", "--config", a["conf"]],
                 s.path(f"{agent_id}.log"))
        s.procs.append(p)
        a["proc"] = p
        return p

    def status(self, agent_id):
        a = self.agents[agent_id]
        out = subprocess.run([os.path.join(a["bin"], "semilab-agent"), "status", "--config",
                              a["conf"], "--json"], capture_output=True, timeout=30)
        if out.returncode != 0:
            raise RuntimeError(f"{agent_id} status: {out.stderr.decode()}")
        import json
        return json.loads(out.stdout)

    def central_records(self, agent_id):
        return self.sys.central_records(agent_id) or 0

    def check(self, n_by_agent, timeout=120):
        for agent_id, n in n_by_agent.items():
            def drained():
                st = self.status(agent_id)
                c = st["counters"]
                return c["produced"] == n and st["outbox"]["records"] == 0 and c["held"] == 0
            wait_for(drained, timeout, f"{agent_id}: {n} produced, outbox empty")
            wait_for(lambda: self.central_records(agent_id) == n, 30, f"central: {n} of {agent_id}")
            c = self.status(agent_id)["counters"]
            assert c["acked"] == n, f"{agent_id} acked {c['acked']}, expected {n}"
        db = sqlite3.connect(f"file:{self.sys.path('central', 'central.db')}?mode=ro", uri=True)
        try:
            for agent_id, n in n_by_agent.items():
                total, distinct, lo, hi = db.execute(
                    "SELECT COUNT(*), COUNT(DISTINCT store_epoch || ':' || record_seq), "
                    "MIN(record_seq), MAX(record_seq) FROM records WHERE agent_id = ?",
                    (agent_id,)).fetchone()
                assert total == n, f"central holds {total} records of {agent_id}, expected {n}"
                assert distinct == n, f"{agent_id}: {distinct} distinct keys for {total} rows"
                assert hi - lo + 1 == n, f"{agent_id}: seqs {lo}..{hi} have gaps for {n} records"
        finally:
            db.close()

    def stop(self):
        self.sys.stop()


def run_scenario(name, fn, new_bin, workroot, keep):
    work = os.path.join(workroot, name)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    fleet = Fleet(new_bin, work)
    t0 = time.monotonic()
    try:
        detail = fn(fleet)
        log(f"PASS {name} ({time.monotonic() - t0:.1f} s){': ' + detail if detail else ''}")
        return True
    except Exception:
        log(f"FAIL {name}")
        traceback.print_exc()
        fleet.sys.dump_logs()
        return False
    finally:
        fleet.stop()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--new-bin-dir", default=os.path.join(ROOT, "build", "bin"),
                    help="this tree's binaries (semilab-agent, semilab-central, semilab-sim)")
    ap.add_argument("--old-commit", default=PREVIOUS)
    ap.add_argument("--old-dir", default=None,
                    help="where the old tree is extracted and built (default /tmp/semilab-old-COMMIT)")
    ap.add_argument("--old-bin-dir", default=None, help="use these old binaries, build nothing")
    ap.add_argument("--records", type=int, default=2000, help="records per agent")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the scenario directories")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    a = ap.parse_args()

    new = os.path.abspath(a.new_bin_dir)
    for b in ("semilab-agent", "semilab-central", "semilab-sim"):
        if not os.path.exists(os.path.join(new, b)):
            sys.exit(f"{new}/{b} missing: ./dev build first (or --new-bin-dir)")
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", a.old_commit],
                            capture_output=True, text=True, check=True).stdout.strip()
    old = a.old_bin_dir or build_old(commit, a.old_dir or f"/tmp/semilab-old-{commit}", a.jobs)
    old = os.path.abspath(old)
    n = a.records
    workroot = a.workdir or os.path.join("/tmp", f"semilab-mixed-fleet-{os.getpid()}")
    log(f"old = {commit} ({old}), new = {new}, {n} records per agent")

    def mixed(central_bin, kill_central):
        def fn(f):
            f.start_central(central_bin)
            f.start_agent("agent-old", old, n)
            f.start_agent("agent-new", new, n)
            if kill_central:
                wait_for(lambda: f.central_records("agent-old") > n // 4 and
                         f.central_records("agent-new") > n // 4, 120, "a quarter stored")
                f.central.kill()
                time.sleep(1.5)
                f.start_central(central_bin)
            f.check({"agent-old": n, "agent-new": n})
        return fn

    def agent_upgrade(f):
        # The old agent produces n/2 while no central runs (all held), stops; the new binary
        # opens the same outbox, produces the rest, and a new central gets everything once.
        half = n // 2
        f.start_agent("agent-up", old, half)
        wait_for(lambda: f.status("agent-up")["counters"]["produced"] == half, 120,
                 "old agent: half produced")
        held = f.status("agent-up")["counters"]["held"]
        assert held == half, f"old agent holds {held}, expected {half} (no central yet)"
        f.agents["agent-up"]["proc"].stop()
        f.start_agent("agent-up", new, n - half)
        f.start_central(new)
        f.check({"agent-up": n})
        return f"{half} records held by the old agent, sent by the new one"

    def central_upgrade(f):
        # An old central stores half; the new central opens its store (migrations from the old
        # version, data model back-fill) and the rest arrives once.
        half = n // 2
        f.start_central(old)
        f.start_agent("agent-a", new, half)
        f.check({"agent-a": half})
        f.central.stop()
        f.sys.procs.remove(f.central)
        f.agents["agent-a"]["proc"].stop()
        f.start_agent("agent-a", new, n - half)
        wait_for(lambda: f.status("agent-a")["counters"]["produced"] == n, 120, "the rest produced")
        f.start_central(new)
        f.check({"agent-a": n})
        db = sqlite3.connect(f"file:{f.sys.path('central', 'central.db')}?mode=ro", uri=True)
        try:
            inst = db.execute("SELECT SUM(records) FROM instruments WHERE agent_id = 'agent-a'"
                              ).fetchone()[0]
            version = db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
        finally:
            db.close()
        assert inst == n, f"instruments table counts {inst} records of agent-a, expected {n}"
        return f"store migrated to version {version}, data model counts all {n}"

    scenarios = [
        ("old-central-mixed-agents", mixed(old, False)),
        ("new-central-mixed-agents", mixed(new, False)),
        ("old-central-killed-midway", mixed(old, True)),
        ("new-central-killed-midway", mixed(new, True)),
        ("agent-upgrade-in-place", agent_upgrade),
        ("central-upgrade-in-place", central_upgrade),
    ]
    ok = all([run_scenario(name, fn, new, workroot, a.keep) for name, fn in scenarios])
    if not a.keep:
        shutil.rmtree(workroot, ignore_errors=True)
    log("all scenarios passed" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
