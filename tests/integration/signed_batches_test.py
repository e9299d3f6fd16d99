#!/usr/bin/python3
"""Signed batches end to end: `semilab-agent enroll`, central with require_signatures, the
agent's batches refused (`unapproved`, retryable: held, not lost) until an admin runs
`semilab-central agents approve`, then every record stored once, every batch's signature kept in
the ledger; then an attempt to approve a malformed key fails with exit code 2.
"""
import argparse
import os
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import System, wait_for  # noqa: E402

COUNT = 200


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    a = ap.parse_args()
    s = System(a.bin_dir)
    ok = False
    try:
        s.start_broker()
        _, sim_port = s.start_sim()
        conf = s.write_central_config()
        with open(conf, "a") as f:
            f.write("\n[ingest]\nrequire_signatures = true\n")
        # start_central rewrites the file: start it by hand with ours.
        from harness import Proc
        p = Proc([os.path.join(s.bin, "semilab-central"), "run", "--config", conf],
                 s.path("central-1.log"), first_line="http")
        s.procs.append(p)
        s.http = p.first.split()[1]

        agent_conf = s.write_agent_config(sim_port, count=COUNT, interval=0.005)
        agent_bin = os.path.join(s.bin, "semilab-agent")
        r = subprocess.run([agent_bin, "enroll", "--config", agent_conf], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        agent_id, key_id, pub_hex = r.stdout.split()
        assert agent_id == "agent-it-1" and len(key_id) == 16 and len(pub_hex) == 64, r.stdout

        s.start_agent(agent_conf)
        wait_for(lambda: s.agent_status(agent_conf)["counters"]["produced"] >= COUNT, 60,
                 "all records produced")
        time.sleep(2.0)
        assert (s.central_records("agent-it-1") or 0) == 0, "stored before approval"
        held = s.agent_status(agent_conf)["counters"]["held"]
        assert held == COUNT, f"records not held while unapproved: {held}"

        central_bin = os.path.join(s.bin, "semilab-central")
        bad = subprocess.run([central_bin, "agents", "approve", "agent-it-1", "--key", "00zz",
                              "--config", conf], capture_output=True, text=True, timeout=30)
        assert bad.returncode == 2, bad
        good = subprocess.run([central_bin, "agents", "approve", "agent-it-1", "--key",
                               os.path.join(s.path("agent-it-1"), "signing.pub"), "--config", conf],
                              capture_output=True, text=True, timeout=30)
        assert good.returncode == 0 and key_id in good.stdout, good

        wait_for(lambda: s.central_records("agent-it-1") == COUNT, 60, "all records stored")
        wait_for(lambda: s.agent_status(agent_conf)["counters"]["held"] == 0, 30, "nothing held")
        db = sqlite3.connect(f"file:{s.path('central', 'central.db')}?mode=ro", uri=True)
        rows = db.execute("SELECT signature FROM batches").fetchall()
        assert rows, "no batch in the ledger"
        for (sig,) in rows:
            assert sig is not None and sig[0] == 1 and sig[2:2 + sig[1]].decode() == key_id, sig
        n = db.execute("SELECT count(*) FROM records WHERE agent_id = 'agent-it-1'").fetchone()[0]
        assert n == COUNT, n
        print(f"ok: {COUNT} records stored after approval, {len(rows)} signed batches by {key_id}")
        ok = True
    finally:
        if not ok:
            s.dump_logs()
        s.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
