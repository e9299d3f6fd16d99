#!/usr/bin/python3
"""Two central instances on the shared subscription (issue #6): throughput ratio and ack p99.

One PostgreSQL (tests/integration/multi_central_test.py's throwaway cluster, fsync on), one
mosquitto (bench/fleet_bench.py's broker) and semilab-central instances with the PostgreSQL store
on `$share/semilab-central/...`; the load comes from semilab-bench-fleet processes
(bench/fleet_bench.cpp), each client an agent with its own id.

1. Capacity, closed loop (`--inflight K`: every agent keeps K batches unacked, a new one as soon
   as an ack arrives): acked records/s over the window with ONE instance, then with TWO (a second
   instance joins the same group and database). `central_two_instance_ratio` = two / one
   (target >= 1.8 with cores to spare; on a 2-core machine the broker, PostgreSQL, both
   instances and the load generators share the cores, so read it with the load average printed).
2. Latency, open loop with the two instances: --agents agents publishing one batch a second each
   (as agents do); `central_ack_p99_ms` = publish -> ack p99 over the window (a batch unacked
   --drain s after the window counts at that time).

Every window batch must be acked and none rejected, else the run fails (after publishing). Figures merge into
build/bench/results.json (benchlib.publish).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import shutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from fleet_bench import loadavg, raise_nofile, start_broker, stop_broker  # noqa: E402
from harness import Proc, System  # noqa: E402
from multi_central_test import Postgres  # noqa: E402


def start_central(system, pg, instance):
    conf = system.path(f"{instance}.toml")
    with open(conf, "w") as f:
        f.write(f'[central]\ninstance = "{instance}"\ndata_dir = "{system.path(instance)}"\n'
                f'log_level = "warn"\n\n'
                f'[mqtt]\nbroker = "tcp://127.0.0.1:{system.broker_port}"\n\n'
                f'[http]\nlisten = "127.0.0.1:0"\n\n'
                f'[store]\nbackend = "postgresql"\nurl = "{pg.url}"\n\n'
                f'[ingest]\nrequire_signatures = false\nagent_quota_records_per_s = 0\n')
    p = Proc([os.path.join(system.bin, "semilab-central"), "run", "--config", conf],
             system.path(f"{instance}.log"), first_line="http")
    system.procs.append(p)
    return p


def fleet(system, args, phase, agents, inflight, warmup, measure):
    """Runs --procs fleet processes; returns (summed counts, window latencies in ms)."""
    procs = max(1, min(args.procs, agents))
    per = [agents // procs + (1 if i < agents % procs else 0) for i in range(procs)]
    start_at = time.time() + 3 + agents / 200
    runs = []
    for i, n in enumerate(per):
        out = system.path(f"{phase}-{i}.json")
        argv = [os.path.join(args.bin_dir, "semilab-bench-fleet"),
                "--broker", f"tcp://127.0.0.1:{system.broker_port}", "--agents", str(n),
                "--prefix", f"{phase}-p{i}", "--records", str(args.records),
                "--start-at", f"{start_at:.3f}", "--warmup", str(warmup),
                "--measure", str(measure), "--drain", str(args.drain), "--seed", str(i + 1),
                "--out", out]
        if inflight:
            argv += ["--inflight", str(inflight)]
        log = open(system.path(f"{phase}-{i}.log"), "ab")
        runs.append((subprocess.Popen(argv, stdout=log, stderr=log, preexec_fn=raise_nofile), out))
    load = None
    deadline = start_at + warmup + measure + args.drain + 90
    for p, _ in runs:
        while p.poll() is None:
            if load is None and time.time() >= start_at + warmup + measure / 2:
                load = loadavg()
            if time.time() > deadline:
                for q, _ in runs:
                    q.kill()
                raise TimeoutError(f"{phase}: fleet processes did not finish")
            time.sleep(0.2)
        if p.returncode != 0:
            raise RuntimeError(f"{phase}: semilab-bench-fleet exited {p.returncode}")
    res = []
    for _, out in runs:
        with open(out) as f:
            res.append(json.load(f))
    sums = {k: sum(r[k] for r in res) for k in ("connected", "window_published", "window_acked",
                                                 "window_lost", "rejected", "publish_errors")}
    lat = [v for r in res for v in r["window_ms"]]
    if not lat:
        raise RuntimeError(f"{phase}: no window batch acked: {sums}")
    sums["load"] = " ".join(load or loadavg())
    return sums, lat


def main():
    ap = benchlib.common_args(argparse.ArgumentParser())
    ap.add_argument("--procs", type=int, default=2, help="fleet processes")
    ap.add_argument("--records", type=int, default=100, help="records per batch")
    ap.add_argument("--closed-agents", type=int, default=40,
                    help="agents of the closed-loop (capacity) phases")
    ap.add_argument("--inflight", type=int, default=4, help="unacked batches per agent (closed)")
    ap.add_argument("--agents", type=int, default=100, help="agents of the open-loop phase")
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--measure", type=float, default=15)
    ap.add_argument("--drain", type=float, default=15)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="semilab-mc-bench-")
    system = System(args.bin_dir, workdir=work)
    pg = broker = None
    ok = False
    try:
        pg = Postgres()
        broker = start_broker(system)
        start_central(system, pg, "central-a")
        rate = {}
        for n in (1, 2):
            if n == 2:
                start_central(system, pg, "central-b")
            s, lat = fleet(system, args, f"closed{n}", args.closed_agents, args.inflight,
                           args.warmup, args.measure)
            if s["window_lost"] or s["rejected"]:
                raise RuntimeError(f"closed loop, {n} instance(s): window batches unacked or "
                                   f"rejected: {s}")
            rate[n] = s["window_acked"] * args.records / args.measure
            print(f"{n} instance(s), closed loop ({args.closed_agents} agents x {args.inflight} "
                  f"in flight, {args.records} records/batch): {rate[n]:.0f} records/s acked, "
                  f"ack p50 {benchlib.percentile(lat, 50):.1f} ms p99 "
                  f"{benchlib.percentile(lat, 99):.1f} ms; load average {s['load']}")
        ledger = dict(pg.query("SELECT instance, COUNT(*) FROM batches GROUP BY 1"))
        print(f"ledger rows per instance: {ledger}")
        if len(ledger) < 2:
            raise RuntimeError(f"the second instance stored nothing: {ledger}")
        s, lat = fleet(system, args, "open", args.agents, 0, args.warmup, args.measure)
        # A window batch still unacked --drain s after the window counts at the drain time (a
        # lower bound of its latency), as in fleet_bench.py; the run then fails.
        lat_all = lat + [args.drain * 1000.0] * s["window_lost"]
        p50, p99 = benchlib.percentile(lat_all, 50), benchlib.percentile(lat_all, 99)
        print(f"2 instances, open loop ({args.agents} agents, 1 batch/s, {args.records} "
              f"records/batch): {s['window_acked']} of {s['window_published']} window batches "
              f"acked, {s['rejected']} rejected, p50 {p50:.1f} ms p99 {p99:.1f} ms max "
              f"{max(lat):.1f} ms; load average {s['load']}")
        benchlib.publish(args.results, [
            benchlib.figure("central_two_instance_ratio", rate[2] / rate[1], "ratio", 1.8,
                            f"records/s two instances {rate[2]:.0f} / one {rate[1]:.0f} "
                            "(PostgreSQL, closed loop); baseline = target"),
            benchlib.figure("central_ack_p99_ms", p99, "ms", 500.0,
                            f"two instances, {args.agents} agents x 1 batch/s; baseline = "
                            "fleet target"),
        ])
        ok = s["window_lost"] == 0 and s["rejected"] == 0
        if not ok:
            print("open loop: window batches unacked or rejected", file=sys.stderr)
    finally:
        system.stop()
        if broker is not None:
            stop_broker(broker)
        if pg is not None:
            pg.stop()
        if args.keep:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
