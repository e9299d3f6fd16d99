"""The 30 s broker outage of the collectd measurement (issue #5, item 9), against semilab.

A Modbus mass-flow controller (the simulator's `mfc`, whose totaliser is an exact u64 counter)
is polled at 10 Hz by the agent; after a few seconds the broker is stopped for 30 s, then started
again on the same port (no persistence: every session and queued message is gone). Polling goes
on throughout. At the end central must hold exactly the records the agent produced: zero loss,
zero duplicates, a gap-free sequence, and the totaliser readings taken during the outage present.
Prints outage_loss_pct (collectd measured 99.6-99.9 % here).
"""
import argparse
import json
import os
import sqlite3
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Proc, System, wait_for  # noqa: E402

AGENT = "agent-outage-1"


def run(system, outage_s, hz):
    system.start_broker()
    sim = Proc([os.path.join(system.bin, "semilab-sim"), "--model", "mfc", "--listen",
                "127.0.0.1:0"], system.path("mfc-sim.log"), first_line="listening")
    system.procs.append(sim)
    port = int(sim.first.rsplit(":", 1)[1])
    system.start_central()
    polls = int((outage_s + 12) * hz)
    conf = system.path("agent-outage.toml")
    with open(conf, "w") as f:
        f.write(f'[agent]\nid = "{AGENT}"\nsite = "lab-it"\ndata_dir = "{system.path(AGENT)}"\n'
                f'durability = "full"\n\n{system.mqtt_toml(AGENT)}\n'
                f'[sync]\nack_timeout_s = 2.0\nlinger_ms = 50\n\n'
                f'[[instrument]]\nid = "mfc1"\nresource = "modbus-tcp://127.0.0.1:{port}?unit=1"\n'
                f'profile = "mfc"\npoll_interval_s = {1.0 / hz}\ncount = {polls}\n')
    system.start_agent(conf, agent_id=AGENT)
    wait_for(lambda: (system.central_records(AGENT) or 0) > 0, 30, "first records at central")
    time.sleep(3)
    before = system.agent_status(conf)["counters"]["produced"]
    t_down = time.time_ns()
    system.restart_broker(pause=outage_s)  # down for outage_s seconds
    t_up = time.time_ns()
    during = system.agent_status(conf)["counters"]["produced"] - before
    assert during >= outage_s * hz * 0.8, f"only {during} records produced during the outage"

    def drained():
        st = system.agent_status(conf)
        live = st.get("live", {})
        fin = live.get("instruments", [{}])[0].get("finished")
        return fin and st["counters"]["held"] == 0
    wait_for(drained, outage_s + 60, "polling finished and outbox drained")
    st = system.agent_status(conf)
    c = st["counters"]
    produced = c["produced"]
    assert c["produced"] == c["acked"] + c["held"] + c["dropped"], c
    assert c["dropped"] == 0 and c.get("refused", 0) == 0, c
    wait_for(lambda: system.central_records(AGENT) == produced, 30, f"central: {produced} records")
    db = sqlite3.connect(f"file:{system.path('central', 'central.db')}?mode=ro", uri=True)
    total, distinct, lo, hi = db.execute(
        "SELECT COUNT(*), COUNT(DISTINCT store_epoch || ':' || record_seq), MIN(record_seq),"
        " MAX(record_seq) FROM records WHERE agent_id = ?", (AGENT,)).fetchone()
    in_outage = db.execute(
        "SELECT COUNT(*) FROM records WHERE agent_id = ? AND channel = 'totalizer'"
        " AND ts_ns BETWEEN ? AND ?", (AGENT, t_down, t_up)).fetchone()[0]
    db.close()
    loss_pct = 100.0 * (produced - distinct) / produced
    print(json.dumps({"outage_s": outage_s, "poll_hz": hz, "produced": produced,
                      "produced_during_outage": during, "central_rows": total,
                      "central_distinct": distinct, "totalizer_during_outage": in_outage,
                      "outage_loss_pct": loss_pct}))
    assert total == produced, f"central holds {total} rows, agent produced {produced}"
    assert distinct == total, f"{total - distinct} duplicates at central"
    assert hi - lo + 1 == produced, f"sequence {lo}..{hi} has gaps for {produced} records"
    assert in_outage >= outage_s * hz * 0.8, f"only {in_outage} totaliser readings from the outage"
    return loss_pct


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--outage-s", type=float, default=30.0)
    ap.add_argument("--hz", type=float, default=10.0)
    args = ap.parse_args()
    system = System(args.bin_dir)
    try:
        run(system, args.outage_s, args.hz)
        print("PASS broker_outage")
        return 0
    except Exception:
        traceback.print_exc()
        system.dump_logs()
        print("FAIL broker_outage")
        return 1
    finally:
        system.stop()


if __name__ == "__main__":
    sys.exit(main())
