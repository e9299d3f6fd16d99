#!/usr/bin/python3
"""Crash soak of issue #5 (item 9): exactly once at central under repeated SIGKILLs.

One mosquitto, one semilab-central, one simulated Keithley 2450 and one semilab-agent run on
loopback for the whole soak. Each round starts the agent with a fixed number of polls, SIGKILLs
one of agent / central / broker at a random moment while it produces and uploads (seeded RNG: the
seed is printed, `--seed` replays a run), restarts the victim at once, waits until the agent has
finished its polls and its outbox is empty, then checks central's store against the agent's own
counters:

- every record the outbox says it produced is stored exactly once (rows = distinct keys = produced
  minus dropped; no two rows with the same instrument, channel and acquisition time);
- per store epoch, seqs 1..max are gap-free except for ranges named by a drop notice.

A round passes when it settles within `--round-timeout` and the check holds. Figures merged into
results.json: soak_rounds_passed, soak_duplicates, soak_lost (checked over the whole run at the end).

    /usr/bin/python3 bench/soak.py --bin-dir build/bin --rounds 200 [--seed N] [--keep]
"""
import argparse
import json
import os
import random
import sqlite3
import sys
import time
import traceback

from benchlib import ROOT, common_args, figure, publish  # also puts tests/integration on sys.path
from harness import Proc, System, wait_for  # noqa: E402

AGENT = "agent-soak-1"
VICTIMS = ("agent", "central", "broker")


def signed64(u):
    u = int(u)
    return u - (1 << 64) if u >= (1 << 63) else u


class Soak:
    def __init__(self, system, polls, interval):
        self.s = system
        self.polls = polls
        self.interval = interval
        self.conf = None
        self.sim_port = None

    def start(self):
        self.s.start_broker()
        _, self.sim_port = self.s.start_sim()
        self.s.start_central()

    def agent_conf(self, count):
        # durability "full" is the product default; ack_timeout short so resends come fast.
        self.conf = self.s.write_agent_config(self.sim_port, count=count, interval=self.interval,
                                              agent_id=AGENT, durability="full", ack_timeout=1.0)
        return self.conf

    def status(self):
        return self.s.agent_status(self.conf)

    def kill_broker(self, pause):
        """SIGKILL mosquitto (no persistence: sessions and queued messages are gone), start it
        again on the same port after `pause` seconds."""
        self.s.broker.kill()
        self.s.procs.remove(self.s.broker)
        time.sleep(pause)
        p = Proc(["/usr/sbin/mosquitto", "-c", self.s.path("mosquitto.conf")],
                 self.s.path("mosquitto.log"))
        self.s.procs.append(p)
        self.s.broker = p
        wait_for(lambda: _port_open(self.s.broker_port), 10, "mosquitto after SIGKILL")

    def kill_central(self, pause):
        self.s.central.kill()  # SIGKILL: its open transaction and unsent acks are lost
        self.s.procs.remove(self.s.central)
        time.sleep(pause)
        self.s.start_central()

    def kill_agent(self, pause, round_produced):
        self.s.agent.kill()
        self.s.procs.remove(self.s.agent)
        time.sleep(pause)
        # `count` counts one run's polls (one record each): ask the new run for the rest.
        self.agent_conf(max(1, self.polls - round_produced))
        self.s.start_agent(self.conf, agent_id=AGENT)

    def settled(self, target):
        """The status when the agent produced at least `target` records in all, finished its
        polls, holds nothing, and central stored every record not dropped; else None."""
        st = self.status()
        c = st["counters"]
        fin = all(i.get("finished") for i in st.get("live", {}).get("instruments", [{}]))
        if not (fin and c["produced"] >= target and c["held"] == 0
                and st["outbox"]["records"] == 0):
            return None
        if self.s.central_records(AGENT) != c["produced"] - c["dropped"]:
            return None
        return st


def check_central(db_path, counters):
    """Compares central's rows for AGENT with the agent's counters. Returns a dict with rows,
    distinct, duplicates, lost and the gap accounting."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        rows, distinct = db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT store_epoch || ':' || record_seq) FROM records "
            "WHERE agent_id = ?", (AGENT,)).fetchone()
        # The same measurement stored under two seqs would be a duplicate the key cannot catch.
        same_sample = db.execute(
            "SELECT COALESCE(SUM(n - 1), 0) FROM (SELECT COUNT(*) AS n FROM records "
            "WHERE agent_id = ? AND instrument <> 'agent' GROUP BY instrument, channel, ts_ns "
            "HAVING n > 1)", (AGENT,)).fetchone()[0]
        explained = {}
        for (text,) in db.execute(
                "SELECT value_text FROM records WHERE agent_id = ? AND instrument = 'agent' "
                "AND channel = 'drop_notice'", (AGENT,)):
            try:
                n = json.loads(text)
            except (TypeError, ValueError):
                continue
            if n.get("action") in ("dropped", "unrecoverable"):
                ep = signed64(n.get("epoch", "0"))
                for a, b in n.get("ranges", []):
                    explained.setdefault(ep, []).append((int(a), int(b)))
        gaps = unexplained = 0
        epochs = [r[0] for r in db.execute(
            "SELECT DISTINCT store_epoch FROM records WHERE agent_id = ?", (AGENT,))]
        for ep in epochs:
            seqs = [r[0] for r in db.execute(
                "SELECT record_seq FROM records WHERE agent_id = ? AND store_epoch = ? "
                "ORDER BY record_seq", (AGENT, ep))]
            prev = 0
            for q in seqs:
                for missing in range(prev + 1, q):
                    gaps += 1
                    if not any(a <= missing <= b for a, b in explained.get(ep, [])):
                        unexplained += 1
                prev = q
    finally:
        db.close()
    expected = counters["produced"] - counters["dropped"]
    lost = max(unexplained, expected - distinct)
    return {"rows": rows, "distinct": distinct, "expected": expected,
            "duplicates": (rows - distinct) + same_sample, "gaps": gaps,
            "unexplained_gaps": unexplained, "lost": max(0, lost), "epochs": len(epochs)}


def _port_open(port):
    import socket
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def main():
    ap = common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--polls", type=int, default=150, help="polls per round (one record each)")
    ap.add_argument("--interval", type=float, default=0.005, help="poll interval, s")
    ap.add_argument("--round-timeout", type=float, default=30.0)
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    print(f"soak: {args.rounds} rounds, seed {seed} (replay with --seed {seed})", flush=True)

    workdir = None
    if args.keep:
        workdir = os.path.join(ROOT, "build", "bench", f"soak-{seed}")
    system = System(os.path.abspath(args.bin_dir), workdir)
    soak = Soak(system, args.polls, args.interval)
    db_path = system.path("central", "central.db")
    passed = 0
    kills = {v: 0 for v in VICTIMS}
    failures = []
    final = None
    t_start = time.monotonic()
    try:
        soak.start()
        produce_s = args.polls * args.interval
        for r in range(1, args.rounds + 1):
            t0 = time.monotonic()
            victim = rng.choice(VICTIMS)
            at = rng.uniform(0.05, produce_s + 0.2)
            pause = rng.uniform(0.0, 0.5)
            before = soak.status()["counters"]["produced"] if r > 1 else 0
            soak.agent_conf(args.polls)
            system.start_agent(soak.conf, agent_id=AGENT)
            time.sleep(at)
            try:
                if victim == "agent":
                    soak.kill_agent(pause, soak.status()["counters"]["produced"] - before)
                elif victim == "central":
                    soak.kill_central(pause)
                else:
                    soak.kill_broker(pause)
                kills[victim] += 1
                st = wait_for(lambda: soak.settled(before + args.polls), args.round_timeout,
                              "agent finished, outbox empty, central caught up")
                chk = check_central(db_path, st["counters"])
                ok = chk["duplicates"] == 0 and chk["lost"] == 0 and chk["rows"] == chk["expected"]
            except Exception as e:  # a round that does not settle fails; the soak goes on
                st = None
                ok = False
                chk = {"error": f"{type(e).__name__}: {e}"}
            if ok:
                passed += 1
            else:
                failures.append((r, victim, chk))
            print(f"round {r:>4}/{args.rounds}: kill -9 {victim:<7} at {at:5.2f}s "
                  f"{'ok' if ok else 'FAIL'} {time.monotonic() - t0:5.2f}s  "
                  f"produced={st['counters']['produced'] if st else '?'} "
                  f"{'' if ok else json.dumps(chk)}", flush=True)
            system.agent.stop()  # SIGTERM: the next round starts a fresh run of polls
            system.procs.remove(system.agent)
        # Final: the whole run, once more, after everything settled.
        soak.agent_conf(1)
        system.start_agent(soak.conf, agent_id=AGENT)
        st = wait_for(lambda: soak.settled(0), 60, "final settle")
        final = check_central(db_path, st["counters"])
        final["counters"] = {k: st["counters"][k] for k in ("produced", "acked", "held", "dropped")}
    except Exception:
        traceback.print_exc()
        system.dump_logs()
    finally:
        elapsed = time.monotonic() - t_start
        system.stop()

    if final is None:
        print("soak: no final check (see the error above)")
        return 1
    print(json.dumps({"seed": seed, "rounds": args.rounds, "passed": passed, "kills": kills,
                      "elapsed_s": round(elapsed, 1), "final": final}))
    for r, v, chk in failures[:20]:
        print(f"  failed round {r} ({v}): {json.dumps(chk)}")
    publish(args.results, [
        figure("soak_rounds_passed", passed, "rounds", args.rounds,
               f"rounds run (seed {seed}; kills {kills})"),
        figure("soak_duplicates", final["duplicates"], "records", final["expected"],
               "records produced (minus dropped) in the soak"),
        figure("soak_lost", final["lost"], "records", final["expected"],
               "records produced (minus dropped) in the soak"),
    ])
    ok = passed == args.rounds and final["duplicates"] == 0 and final["lost"] == 0
    print("soak: PASS" if ok else "soak: FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
