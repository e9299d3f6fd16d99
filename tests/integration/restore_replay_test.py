"""Disaster-recovery drill (issue #6, item 5): backup, more ingest, restore of the old backup, and
the replay central asks for by itself, with whole daemons on loopback.

mosquitto + semilab-sim + semilab-central + semilab-agent. While the agent produces, central is
backed up online (`semilab-central backup`); the agent goes on until every record is acked (and
retained, 1 h). Central is stopped and the old backup restored (`semilab-central restore`), which
prints the restored high-water mark and leaves restore-replay.json for the service. Central
starts, sees the agent online (retained state), asks it to replay from the mark, and ends up
holding every produced record exactly once; the pending file is gone.
"""
import argparse
import glob
import os
import re
import sqlite3
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Proc, System, wait_for  # noqa: E402

AGENT = "agent-restore-1"


def central_rows(system):
    db = sqlite3.connect(f"file:{system.path('central', 'central.db')}?mode=ro", uri=True)
    try:
        return db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT store_epoch || ':' || record_seq), MIN(record_seq),"
            " MAX(record_seq) FROM records WHERE agent_id = ?", (AGENT,)).fetchone()
    finally:
        db.close()


def start_central(system, conf):
    p = Proc([os.path.join(system.bin, "semilab-central"), "run", "--config", conf],
             system.path("central-1.log"), first_line="http")
    system.procs.append(p)
    system.http = p.first.split()[1]
    system.central = p
    return p


def cli(system, *args):
    out = subprocess.run([os.path.join(system.bin, "semilab-central"), *args],
                         capture_output=True, timeout=120)
    assert out.returncode == 0, f"{args[0]} exited {out.returncode}: {out.stderr.decode()}"
    return out.stdout.decode()


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def run(system, count=400, interval=0.02, batch=50):
    key = system.path("cmd.key")
    with open(key, "w") as f:
        f.write("shared-secret-of-the-restore-test\n")
    os.chmod(key, 0o600)
    system.start_broker()
    _, sim_port = system.start_sim()
    conf = system.path("central-1.toml")
    with open(conf, "w") as f:
        f.write(f'[central]\ninstance = "central-1"\ndata_dir = "{system.path("central")}"\n\n'
                f'{system.mqtt_toml("semilab-central")}'
                f'command_key_file = "{key}"\n\n[http]\nlisten = "127.0.0.1:0"\n')
    start_central(system, conf)
    aconf = system.path("agent-restore.toml")
    with open(aconf, "w") as f:
        f.write(f'[agent]\nid = "{AGENT}"\nsite = "lab-dr"\ndata_dir = "{system.path(AGENT)}"\n'
                f'durability = "normal"\nretain_hours = 1\nretain_mb = 64\n\n'
                f'{system.mqtt_toml(AGENT)}\n'
                f'[sync]\nack_timeout_s = 2.0\nlinger_ms = 50\nbatch_max_records = {batch}\n'
                f'command_key_file = "{key}"\n\n'
                f'[[instrument]]\nid = "smu1"\nmodel = "keithley2450"\n'
                f'resource = "TCPIP0::127.0.0.1::{sim_port}::SOCKET"\n'
                f'poll_interval_s = {interval}\ncount = {count}\n')
    system.start_agent(aconf, agent_id=AGENT)

    # Online backup while the agent is still producing.
    wait_for(lambda: central_rows(system)[0] >= 60, 60, "central: 60 records before the backup")
    out = cli(system, "backup", "--config", conf, "--to", system.path("backups"))
    backup = glob.glob(system.path("backups", "central-*.db"))
    assert len(backup) == 1, (backup, out)
    backup = backup[0]
    snap = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
    in_backup = snap.execute("SELECT COUNT(*) FROM records WHERE agent_id = ?",
                             (AGENT,)).fetchone()[0]
    snap.close()

    def drained():
        st = system.agent_status(aconf)
        fin = st.get("live", {}).get("instruments", [{}])[0].get("finished")
        return fin and st["counters"]["held"] == 0 and st["counters"]["produced"] > 0
    wait_for(drained, 120 + count * interval * 2, "polling finished and outbox drained")
    c = system.agent_status(aconf)["counters"]
    produced = c["produced"]
    assert c["acked"] == produced and c["retained"] == produced, c
    wait_for(lambda: central_rows(system)[0] == produced, 30, f"central: {produced} records")
    _, _, lo, hi = central_rows(system)
    assert in_backup < produced, f"the backup already held everything ({in_backup})"

    # Disaster: central goes back to the backup; everything acked since is gone from its store.
    system.central.stop()
    system.procs.remove(system.central)
    out = cli(system, "restore", backup, "--config", conf)
    print(out.strip())
    m = re.search(rf"{AGENT}\s+epoch (\d+) seq (\d+)\.\.(\d+) held, replay from (\d+)", out)
    assert m, out
    pending = system.path("central", "restore-replay.json")
    assert os.path.exists(pending), "restore left no pending replay list"
    assert central_rows(system)[0] == in_backup, "the restore did not bring the old content back"
    mark = int(m.group(4))
    assert int(m.group(2)) == lo and lo < mark <= in_backup + lo, (m.groups(), lo, in_backup)

    # Central starts: asks the agent by itself; the agent re-sends from the mark.
    t0 = time.monotonic()
    start_central(system, conf)
    wait_for(lambda: central_rows(system)[0] == produced, 60 + produced / 200,
             f"central: all {produced} records back after the replay")
    replay_s = time.monotonic() - t0
    wait_for(lambda: not os.path.exists(pending), 15, "the pending list removed")
    log = read(system.path("central-1.log"))
    assert re.search(rf"asked {AGENT} to re-send epoch {m.group(1)} from seq {mark}", log), log
    alog = read(system.path(f"{AGENT}.log"))
    r = wait_for(lambda: re.search(rf"replay of seq {mark}\.\.\d+ done: (\d+) retained",
                                   read(system.path(f"{AGENT}.log"))), 30,
                 "the agent finishing the replay")
    resent = int(r.group(1))
    assert resent == hi - mark + 1, (resent, hi, mark, alog[-2000:])
    total, distinct, lo2, hi2 = central_rows(system)
    assert total == produced and distinct == total and (lo2, hi2) == (lo, hi), \
        (total, distinct, lo2, hi2, produced)
    # A restart does not ask again: the list is gone.
    system.central.stop()
    system.procs.remove(system.central)
    start_central(system, conf)
    assert central_rows(system)[0] == produced
    print(f"restore drill ok: produced {produced}, backup held {in_backup}, replay from {mark}, "
          f"{resent} re-sent, central {total} rows, {distinct} distinct; service start to every "
          f"record back {replay_s:.2f} s ({resent / replay_s:.0f} records/s)")
    return {"produced": produced, "in_backup": in_backup, "resent": resent, "replay_s": replay_s}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--count", type=int, default=400, help="records the agent produces")
    ap.add_argument("--interval", type=float, default=0.02, help="poll interval (s)")
    ap.add_argument("--batch", type=int, default=50, help="agent batch_max_records")
    args = ap.parse_args()
    system = System(args.bin_dir)
    try:
        run(system, args.count, args.interval, args.batch)
    except Exception:
        traceback.print_exc()
        system.dump_logs()
        return 1
    finally:
        system.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
