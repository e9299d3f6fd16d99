"""Replay after central lost a range (issue #5, item 6), with whole daemons on loopback.

mosquitto + semilab-sim + semilab-central + semilab-agent. The agent produces and uploads; every
record is acked and stays in the agent's retention window. Central is stopped and a seq range is
deleted from its store (what a restore from an older backup does); central comes back. A replay
signed with the wrong key is refused by the agent (logged, nothing re-sent); `semilab-central
replay` with the shared key brings the range back: central holds every produced record exactly
once again.
"""
import argparse
import os
import re
import sqlite3
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import System, wait_for  # noqa: E402

AGENT = "agent-replay-1"


def central_rows(system):
    db = sqlite3.connect(f"file:{system.path('central', 'central.db')}?mode=ro", uri=True)
    try:
        return db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT store_epoch || ':' || record_seq), MIN(record_seq),"
            " MAX(record_seq), MIN(store_epoch), MAX(store_epoch) FROM records WHERE agent_id = ?",
            (AGENT,)).fetchone()
    finally:
        db.close()


def central_conf(system, key_file):
    conf = system.path(f"central-{os.path.basename(key_file)}.toml")
    with open(conf, "w") as f:
        f.write(f'[central]\ninstance = "central-1"\ndata_dir = "{system.path("central")}"\n\n'
                f'{system.mqtt_toml("semilab-central")}'
                f'command_key_file = "{key_file}"\n\n[http]\nlisten = "127.0.0.1:0"\n')
    return conf


def start_central(system, conf):
    from harness import Proc
    p = Proc([os.path.join(system.bin, "semilab-central"), "run", "--config", conf],
             system.path("central-1.log"), first_line="http")
    system.procs.append(p)
    system.http = p.first.split()[1]
    system.central = p
    return p


def replay(system, conf, epoch, lo, hi):
    out = subprocess.run([os.path.join(system.bin, "semilab-central"), "replay", "--config", conf,
                          "--agent", AGENT, "--epoch", str(epoch), "--from", str(lo), "--to",
                          str(hi)], capture_output=True, timeout=60)
    assert out.returncode == 0, f"replay exited {out.returncode}: {out.stderr.decode()}"
    return out.stdout.decode()


def agent_log(system):
    with open(system.path(f"{AGENT}.log"), errors="replace") as f:
        return f.read()


def run(system):
    key, wrong = system.path("cmd.key"), system.path("wrong.key")
    with open(key, "w") as f:
        f.write("shared-secret-of-the-replay-test\n")
    with open(wrong, "w") as f:
        f.write("some-other-secret-not-shared\n")
    os.chmod(key, 0o600)
    system.start_broker()
    _, sim_port = system.start_sim()
    good_conf = central_conf(system, key)
    bad_conf = central_conf(system, wrong)
    start_central(system, good_conf)
    conf = system.path("agent-replay.toml")
    with open(conf, "w") as f:
        f.write(f'[agent]\nid = "{AGENT}"\nsite = "lab-it"\ndata_dir = "{system.path(AGENT)}"\n'
                f'durability = "normal"\nretain_hours = 1\nretain_mb = 64\n\n'
                f'{system.mqtt_toml(AGENT)}\n'
                f'[sync]\nack_timeout_s = 2.0\nlinger_ms = 50\nbatch_max_records = 100\n'
                f'command_key_file = "{key}"\n\n'
                f'[[instrument]]\nid = "smu1"\nmodel = "keithley2450"\n'
                f'resource = "TCPIP0::127.0.0.1::{sim_port}::SOCKET"\n'
                f'poll_interval_s = 0.01\ncount = 300\n')
    system.start_agent(conf, agent_id=AGENT)

    def drained():
        st = system.agent_status(conf)
        fin = st.get("live", {}).get("instruments", [{}])[0].get("finished")
        return fin and st["counters"]["held"] == 0 and st["counters"]["produced"] > 0
    wait_for(drained, 90, "polling finished and outbox drained")
    c = system.agent_status(conf)["counters"]
    produced = c["produced"]
    assert c["acked"] == produced and c["retained"] == produced, c
    wait_for(lambda: central_rows(system)[0] == produced, 30, f"central: {produced} records")
    total, distinct, lo, hi, e1, e2 = central_rows(system)
    assert e1 == e2, "one store epoch expected"
    epoch = e1 + (1 << 64) if e1 < 0 else e1
    assert hi - lo + 1 == produced, (lo, hi, produced)

    # A restore from an older backup: central loses a range.
    a, b = lo + produced // 4, lo + produced // 2
    system.central.stop()
    system.procs.remove(system.central)
    db = sqlite3.connect(system.path("central", "central.db"))
    with db:
        n = db.execute("DELETE FROM records WHERE agent_id = ? AND record_seq BETWEEN ? AND ?",
                       (AGENT, a, b)).rowcount
        db.execute("UPDATE agents SET records = records - ? WHERE agent_id = ?", (n, AGENT))
    db.close()
    assert n == b - a + 1, n
    start_central(system, good_conf)
    assert central_rows(system)[0] == produced - n

    # Signed with a key the agent does not share: refused, nothing comes back.
    replay(system, bad_conf, epoch, a, b)
    wait_for(lambda: "refused: bad_mac" in agent_log(system), 15, "the agent refusing a bad MAC")
    time.sleep(2)
    assert central_rows(system)[0] == produced - n, "a forged replay was served"

    # The real one: the range comes back, exactly once.
    print(replay(system, good_conf, epoch, a, b).strip())
    wait_for(lambda: central_rows(system)[0] == produced, 30, "the replayed range at central")
    m = wait_for(lambda: re.search(rf"replay of seq {a}\.\.{b} done: (\d+) retained",
                                   agent_log(system)), 15, "the agent finishing the replay")
    assert int(m.group(1)) == n, f"agent re-sent {m.group(1)} records, {n} expected"
    time.sleep(1)
    total, distinct, lo2, hi2, _, _ = central_rows(system)
    assert total == produced and distinct == total, (total, distinct, produced)
    assert (lo2, hi2) == (lo, hi)
    c = system.agent_status(conf)["counters"]
    assert c["acked"] == produced and c["produced"] == produced, c
    print(f"replay ok: produced {produced}, wiped {n} (seq {a}..{b}), replayed {n}, "
          f"central {total} rows, {distinct} distinct")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    args = ap.parse_args()
    system = System(args.bin_dir)
    try:
        run(system)
    except Exception:
        traceback.print_exc()
        system.dump_logs()
        return 1
    finally:
        system.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
