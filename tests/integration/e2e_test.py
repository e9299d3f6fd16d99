"""Whole-system test: simulator -> agent -> SQLite outbox -> MQTT -> central, acknowledged.

N measurements produced; central holds exactly N distinct records; the outbox is empty.
The same with central killed (SIGKILL) and restarted midway, and with the agent killed and
restarted midway: still exactly N, no duplicates.
"""
import argparse
import os
import signal
import sqlite3
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Proc, System, wait_for  # noqa: E402

AGENT = "agent-it-1"


def central_db_check(system, n, digits=True):
    db = sqlite3.connect(f"file:{system.path('central', 'central.db')}?mode=ro", uri=True)
    total, distinct, lo, hi = db.execute(
        "SELECT COUNT(*), COUNT(DISTINCT store_epoch || ':' || record_seq), MIN(record_seq),"
        " MAX(record_seq) FROM records WHERE agent_id = ?", (AGENT,)).fetchone()
    bad = db.execute("SELECT COUNT(*) FROM records WHERE agent_id = ? AND value_repr IS NULL",
                     (AGENT,)).fetchone()[0]
    db.close()
    assert total == n, f"central holds {total} records, expected {n}"
    assert distinct == n, f"central holds {distinct} distinct keys for {total} rows"
    assert hi - lo + 1 == n, f"sequence range {lo}..{hi} has gaps for {n} records"
    assert not digits or bad == 0, f"{bad} records lost their reported digits"


def finish(system, conf, n, timeout=120, digits=True):
    def done():
        st = system.agent_status(conf)
        c = st["counters"]
        return c["produced"] == n and st["outbox"]["records"] == 0 and c["held"] == 0
    wait_for(done, timeout, f"agent: {n} produced, outbox empty")
    wait_for(lambda: system.central_records(AGENT) == n, 30, f"central: {n} records")
    st = system.agent_status(conf)
    c = st["counters"]
    assert c["acked"] == n, f"agent acked {c['acked']}, expected {n}"
    assert c["produced"] == c["acked"] + c["held"] + c["dropped"]
    central_db_check(system, n, digits)


def test_exact_n(system, n):
    system.start_broker()
    _, sim_port = system.start_sim()
    system.start_central()
    conf = system.write_agent_config(sim_port, count=n, interval=0.005)
    system.start_agent(conf)
    finish(system, conf, n)


def test_central_killed(system, n):
    system.start_broker()
    _, sim_port = system.start_sim()
    system.start_central()
    conf = system.write_agent_config(sim_port, count=n, interval=0.005, ack_timeout=1.0)
    system.start_agent(conf)
    wait_for(lambda: (system.central_records(AGENT) or 0) > n // 4, 60, "a quarter stored")
    system.central.kill()  # SIGKILL: no clean shutdown, no final commit
    time.sleep(1.0)
    held = system.agent_status(conf)["counters"]["held"]
    assert held > 0, "records should wait in the outbox while central is down"
    system.start_central()
    finish(system, conf, n)


def test_agent_killed(system, n):
    system.start_broker()
    _, sim_port = system.start_sim()
    system.start_central()
    conf = system.write_agent_config(sim_port, count=n, interval=0.005, durability="full")
    system.start_agent(conf)
    wait_for(lambda: system.agent_status(conf)["counters"]["produced"] > n // 3, 60,
             "a third produced")
    system.agent.kill()
    produced = system.agent_status(conf)["counters"]["produced"]
    # The restarted agent resumes polling: `count` counts this run's polls, so ask for the rest.
    conf = system.write_agent_config(sim_port, count=n - produced, interval=0.005)
    system.start_agent(conf)
    finish(system, conf, n)


def test_agent_kill_rounds(system, n, rounds=20):
    """SIGKILL the agent at random moments while it produces and uploads; nothing is lost or
    stored twice: central ends with exactly the records the outbox says were produced."""
    import random
    rng = random.Random(1234)
    system.start_broker()
    _, sim_port = system.start_sim()
    system.start_central()
    conf = system.write_agent_config(sim_port, count=0, interval=0.002, ack_timeout=1.0)
    for _ in range(rounds):
        system.start_agent(conf)
        time.sleep(rng.uniform(0.2, 0.9))
        system.agent.kill()
    # One last poll so the agent comes up, then let it drain what every round left behind.
    produced = system.agent_status(conf)["counters"]["produced"]
    assert produced > rounds, f"only {produced} records produced in {rounds} rounds"
    conf = system.write_agent_config(sim_port, count=1, interval=0.002, ack_timeout=1.0)
    system.start_agent(conf)
    finish(system, conf, produced + 1)


def test_broker_stopped(system, n):
    """The broker freezes (SIGSTOP) for longer than the ack timeout, then resumes."""
    system.start_broker()
    _, sim_port = system.start_sim()
    system.start_central()
    conf = system.write_agent_config(sim_port, count=n, interval=0.005, ack_timeout=0.5)
    system.start_agent(conf)
    wait_for(lambda: (system.central_records(AGENT) or 0) > n // 5, 60, "a fifth stored")
    os.kill(system.broker.pid, signal.SIGSTOP)
    time.sleep(3.0)
    os.kill(system.broker.pid, signal.SIGCONT)
    finish(system, conf, n)


def test_broker_restart(system, n):
    """The broker restarts (no persistence: sessions and queued acks are gone)."""
    system.start_broker()
    _, sim_port = system.start_sim()
    system.start_central()
    conf = system.write_agent_config(sim_port, count=n, interval=0.005, ack_timeout=1.0)
    system.start_agent(conf)
    wait_for(lambda: (system.central_records(AGENT) or 0) > n // 5, 60, "a fifth stored")
    system.restart_broker()
    finish(system, conf, n)


def test_modbus(system, n):
    """A Modbus TCP controller (the simulator's eurotherm3200 profile) polled by the daemon: its
    points reach central exactly once, exact integers as integers."""
    system.start_broker()
    sim = Proc([os.path.join(system.bin, "semilab-sim"), "--model", "eurotherm3200", "--listen",
                "127.0.0.1:0"], system.path("modbus-sim.log"), first_line="listening")
    system.procs.append(sim)
    port = int(sim.first.rsplit(":", 1)[1])
    system.start_central()
    conf = system.path("agent-modbus.toml")
    polls = max(5, n // 40)
    with open(conf, "w") as f:
        f.write(f'[agent]\nid = "{AGENT}"\nsite = "lab-it"\ndata_dir = "{system.path(AGENT)}"\n'
                f'durability = "normal"\n\n{system.mqtt_toml(AGENT)}\n'
                f'[sync]\nack_timeout_s = 2.0\nlinger_ms = 50\n\n'
                f'[[instrument]]\nid = "furnace1"\nresource = "modbus-tcp://127.0.0.1:{port}?unit=1"\n'
                f'profile = "eurotherm3200"\npoll_interval_s = 0.05\ncount = {polls}\n')
    system.start_agent(conf)
    wait_for(lambda: system.agent_status(conf).get("live", {}).get("instruments", [{}])[0]
             .get("finished"), 60, f"{polls} Modbus polls")
    produced = system.agent_status(conf)["counters"]["produced"]
    assert produced >= polls, f"only {produced} values from {polls} polls"
    finish(system, conf, produced, digits=False)
    db = sqlite3.connect(f"file:{system.path('central', 'central.db')}?mode=ro", uri=True)
    channels = {r[0] for r in db.execute("SELECT DISTINCT channel FROM records WHERE instrument='furnace1'")}
    db.close()
    assert len(channels) >= 3, f"expected several points, got {channels}"


def test_dictionary(system, n):
    """zstd dictionary (schemas/WIRE.md "Dictionaries"): the agent trains one from its telemetry
    and announces it; central is SIGKILLed and its stored copy deleted, so the restarted central
    holds the batches that name it, fetches it on the cmd topic, stores it again, and ends with
    exactly the records produced."""
    n = max(n, 3000)
    system.start_broker()
    _, sim_port = system.start_sim()
    system.start_central()
    conf = system.write_agent_config(sim_port, count=n, interval=0.002, ack_timeout=1.0)
    with open(conf) as f:
        text = f.read()
    with open(conf, "w") as f:
        f.write(text.replace("[sync]\n", "[sync]\nzstd_dictionary_records = 300\nbatch_max_records = 20\n"))
    system.start_agent(conf)
    log = system.path("agent-it-1.log")
    wait_for(lambda: "zstd dictionary" in open(log).read(), 60, "a dictionary trained and in use")
    central_db = system.path("central", "central.db")

    def dictionaries():
        db = sqlite3.connect(f"file:{central_db}?mode=ro", uri=True)
        rows = db.execute("SELECT dict_id, length(bytes) FROM dictionaries WHERE agent_id = ?",
                          (AGENT,)).fetchall()
        db.close()
        return rows
    wait_for(lambda: dictionaries(), 30, "the announced dictionary stored at central")
    system.central.kill()
    db = sqlite3.connect(central_db)
    db.execute("DELETE FROM dictionaries")
    db.commit()
    db.close()
    system.start_central()
    finish(system, conf, n)
    rows = dictionaries()
    assert rows and all(r[1] > 100 for r in rows), f"central stored no dictionary: {rows}"
    assert "central asked for dictionary" in open(log).read(), "central never asked for it"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--case", default="all")
    ap.add_argument("-n", type=int, default=400)
    args = ap.parse_args()
    cases = {"exact": test_exact_n, "central-killed": test_central_killed,
             "agent-killed": test_agent_killed, "agent-kill-rounds": test_agent_kill_rounds,
             "broker-stopped": test_broker_stopped, "broker-restart": test_broker_restart,
             "modbus": test_modbus, "dictionary": test_dictionary}
    selected = cases if args.case == "all" else {args.case: cases[args.case]}
    failed = 0
    for name, fn in selected.items():
        system = System(args.bin_dir)
        t0 = time.monotonic()
        try:
            fn(system, args.n)
            print(f"PASS {name} ({time.monotonic() - t0:.1f} s)")
        except Exception:
            failed += 1
            print(f"FAIL {name}")
            traceback.print_exc()
            system.dump_logs()
        finally:
            system.stop()
    print(f"{len(selected) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
