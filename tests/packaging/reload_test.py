#!/usr/bin/python3
"""SIGHUP reload of a running agent (systemctl reload = kill -HUP).

An agent polls two simulators (smu1, smu2) with no broker: everything stays in the outbox.
Then its file changes: smu2's poll interval changes, smu3 is added, smu1 is untouched; SIGHUP.
Checks (agent-status.json through `semilab-agent status --json`, and each simulator's own count
of accepted connections from its debug log):
  - smu1: same session (connects 1, one connection at its simulator), readings keep counting;
  - smu2: restarted (a second connection at its simulator), new poll interval;
  - smu3: added and polling;
  - nothing buffered is lost: produced never decreases, held = produced (no broker).
Then an invalid file (unknown model) + SIGHUP: refused, reason logged, the three keep running.
"""
import argparse
import os
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from harness import System, Proc, free_port, wait_for  # noqa: E402


def agent_conf(path, data_dir, broker_port, instruments):
    with open(path, "w") as f:
        f.write(f'[agent]\nid = "agent-reload"\nsite = "lab-it"\ndata_dir = "{data_dir}"\n'
                f'durability = "normal"\n\n[mqtt]\nbroker = "tcp://127.0.0.1:{broker_port}"\n\n'
                f'[status]\nport = 0\n\n')
        for iid, port, interval, model in instruments:
            f.write(f'[[instrument]]\nid = "{iid}"\nmodel = "{model}"\n'
                    f'resource = "TCPIP0::127.0.0.1::{port}::SOCKET"\npoll_interval_s = {interval}\n\n')


def connections(sim_log):
    with open(sim_log, errors="replace") as f:
        return f.read().count("sim: connection from")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    a = ap.parse_args()
    s = System(a.bin_dir)
    ok = True
    try:
        sims = {}
        for iid in ("smu1", "smu2", "smu3"):
            p, port = s.start_sim(extra=("-v",))
            sims[iid] = (p, port)
        broker_port = free_port()  # nothing listens: the records stay held in the outbox
        conf = s.path("agent.toml")
        data = s.path("agent")
        agent_conf(conf, data, broker_port, [("smu1", sims["smu1"][1], 0.05, "keithley2450"),
                                             ("smu2", sims["smu2"][1], 0.05, "keithley2450")])
        agent = s.start_agent(conf, agent_id="agent-reload")
        shutil.copy(conf, s.path("status.toml"))

        def inst(st, iid):
            for i in st.get("live", {}).get("instruments", []):
                if i["id"] == iid:
                    return i
            return None

        # `status` validates the file it is given: query through a copy that stays valid.
        status_conf = s.path("status.toml")

        def status():
            return s.agent_status(status_conf)

        wait_for(lambda: all((inst(status(), i) or {}).get("readings", 0) >= 5 for i in ("smu1", "smu2")),
                 30, "both instruments polling")
        before = status()
        b1, b2 = inst(before, "smu1"), inst(before, "smu2")
        produced_before = before["counters"]["produced"]
        print("before:", {k: (v["readings"], v.get("connects")) for k, v in (("smu1", b1), ("smu2", b2))})
        c1, c2 = connections(sims["smu1"][0].log_path), connections(sims["smu2"][0].log_path)
        assert b1.get("connects") == 1 and b2.get("connects") == 1, (b1, b2)
        assert c1 == 1 and c2 == 1, (c1, c2)

        # smu1 unchanged, smu2 slower, smu3 new.
        agent_conf(conf, data, broker_port, [("smu1", sims["smu1"][1], 0.05, "keithley2450"),
                                             ("smu2", sims["smu2"][1], 0.2, "keithley2450"),
                                             ("smu3", sims["smu3"][1], 0.05, "keithley2450")])
        os.kill(agent.pid, signal.SIGHUP)
        wait_for(lambda: (inst(status(), "smu3") or {}).get("readings", 0) >= 3, 30, "smu3 polling")
        time.sleep(1.0)
        after = status()
        a1, a2 = inst(after, "smu1"), inst(after, "smu2")
        print("after:", {k: (v["readings"], v.get("connects"), v["poll_interval_s"])
                         for k, v in (("smu1", a1), ("smu2", a2), ("smu3", inst(after, "smu3")))})
        checks = [
            (a1["connects"] == 1, "smu1 kept its session (connects 1)"),
            (connections(sims["smu1"][0].log_path) == 1, "smu1's simulator saw no new connection"),
            (a1["readings"] > b1["readings"], "smu1's readings kept counting (same runner)"),
            (connections(sims["smu2"][0].log_path) == 2, "smu2 reconnected (2 connections at its simulator)"),
            (a2["poll_interval_s"] == 0.2, "smu2 runs with the new poll interval"),
            (after["counters"]["produced"] >= produced_before, "produced never decreases"),
            (after["counters"]["held"] == after["counters"]["produced"], "everything produced is held"),
            (agent.alive(), "agent still running"),
        ]

        # An invalid file: refused, the old configuration keeps running.
        with open(conf, "a") as f:
            f.write('[[instrument]]\nid = "bad"\nmodel = "no-such-model"\n'
                    'resource = "TCPIP0::127.0.0.1::1::SOCKET"\n')
        os.kill(agent.pid, signal.SIGHUP)
        log = s.path("agent-reload.log")
        wait_for(lambda: "reload refused" in open(log, errors="replace").read(), 15, "refusal logged")
        r0 = {i: inst(status(), i)["readings"] for i in ("smu1", "smu2", "smu3")}
        time.sleep(1.0)
        st = status()
        refused_line = [l for l in open(log, errors="replace") if "reload refused" in l][-1].strip()
        print("refused:", refused_line)
        checks += [
            ("no-such-model" in refused_line, "the refusal names the reason"),
            (all(inst(st, i)["readings"] > r0[i] for i in r0), "all three instruments keep polling"),
            (inst(st, "bad") is None, "the invalid instrument was not started"),
            (inst(st, "smu1")["connects"] == 1, "smu1 still on its first session"),
            (agent.alive(), "agent still running"),
        ]
        rc = agent.stop()
        checks.append((rc == 0, f"agent stops cleanly (rc {rc})"))
        for cond, what in checks:
            print(("ok   " if cond else "FAIL ") + what)
            ok = ok and cond
    except Exception as e:  # noqa: BLE001
        print("FAIL", repr(e))
        ok = False
    finally:
        if not ok:
            s.dump_logs()
        s.stop()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
