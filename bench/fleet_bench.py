#!/usr/bin/python3
"""Fleet run of issue #6: 1 000 simulated agents, one batch a second each, into one central.

mosquitto (its open-file limit raised to the hard limit, no connection cap) and one
semilab-central (SQLite store, signatures not required, no quota) on free loopback ports; then
--procs processes of semilab-bench-fleet (bench/fleet_bench.cpp) share --agents MQTT clients,
each client an agent with its own id publishing a zstd frame of --records telemetry records every
second (random phase, ±50 ms jitter) and timing central's ack for it. After --warmup seconds,
the batches published in the next --measure seconds are the window.

Figures: central_fleet_ack_p99_ms (publish -> ack, p99 over the window; target <= 500 ms),
central_fleet_agents (clients connected), central_fleet_batches_per_s (window batches acked per
second). Window batches still unacked --drain s after the window (counted at --drain in the
percentiles) and rejected ones are printed and make the run fail. FLEET_AGENTS (./dev bench) scales the fleet down.
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from harness import Proc, System, _port_open, free_port, wait_for  # noqa: E402


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start_broker(system):
    system.broker_port = free_port()
    conf = system.path("mosquitto.conf")
    with open(conf, "w") as f:
        f.write(f"listener {system.broker_port} 127.0.0.1\nmax_connections -1\n"
                "allow_anonymous true\npersistence false\nmax_queued_messages 1000000\n"
                "set_tcp_nodelay true\n")
    log = open(system.path("mosquitto.log"), "ab")
    p = subprocess.Popen(["/usr/sbin/mosquitto", "-c", conf], stdout=log, stderr=log,
                         preexec_fn=raise_nofile)
    wait_for(lambda: _port_open(system.broker_port), 10, "mosquitto")
    return p


def stop_broker(p):
    """Stops the broker of start_broker (terminate, then kill after 10 s)."""
    p.terminate()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def start_central(system, extra_ingest=""):
    conf = system.path("central.toml")
    with open(conf, "w") as f:
        f.write(f'[central]\ninstance = "central-fleet"\ndata_dir = "{system.path("central")}"\n'
                f'log_level = "warn"\n\n'
                f'[mqtt]\nbroker = "tcp://127.0.0.1:{system.broker_port}"\n\n'
                f'[http]\nlisten = "127.0.0.1:0"\n\n'
                f'[ingest]\nrequire_signatures = false\nagent_quota_records_per_s = 0\n{extra_ingest}')
    p = Proc([os.path.join(system.bin, "semilab-central"), "run", "--config", conf],
             system.path("central.log"), first_line="http")
    system.procs.append(p)
    return p


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[:3]


def main():
    ap = benchlib.common_args(argparse.ArgumentParser())
    ap.add_argument("--agents", type=int, default=int(os.environ.get("FLEET_AGENTS", "1000")))
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--records", type=int, default=30, help="records per batch")
    ap.add_argument("--warmup", type=float, default=10)
    ap.add_argument("--measure", type=float, default=30)
    ap.add_argument("--drain", type=float, default=10)
    ap.add_argument("--group-max-batches", type=int, default=0,
                    help="central [ingest] group_max_batches (0: central's default)")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="semilab-fleet-bench-")
    system = System(args.bin_dir, workdir=work)
    broker = None
    pubs = []
    ok = False
    try:
        broker = start_broker(system)
        start_central(system, f"group_max_batches = {args.group_max_batches}\n"
                      if args.group_max_batches else "")
        procs = max(1, min(args.procs, args.agents))
        per = [args.agents // procs + (1 if i < args.agents % procs else 0) for i in range(procs)]
        # Connecting 250 clients takes a few seconds on a loaded machine: start a little later.
        start_at = time.time() + 5 + args.agents / 200
        for i, n in enumerate(per):
            out = system.path(f"fleet-{i}.json")
            argv = [os.path.join(args.bin_dir, "semilab-bench-fleet"),
                    "--broker", f"tcp://127.0.0.1:{system.broker_port}", "--agents", str(n),
                    "--prefix", f"fleet-p{i}", "--records", str(args.records),
                    "--start-at", f"{start_at:.3f}", "--warmup", str(args.warmup),
                    "--measure", str(args.measure), "--drain", str(args.drain),
                    "--seed", str(i + 1), "--out", out]
            log = open(system.path(f"fleet-{i}.log"), "ab")
            pubs.append((subprocess.Popen(argv, stdout=log, stderr=log, preexec_fn=raise_nofile),
                         out))
        timeout = start_at - time.time() + args.warmup + args.measure + args.drain + 60
        load = None
        t_load = start_at + args.warmup + args.measure / 2
        for p, _ in pubs:
            while p.poll() is None:
                if load is None and time.time() >= t_load:
                    load = loadavg()
                time.sleep(0.2)
                timeout -= 0.2
                if timeout < 0:
                    raise TimeoutError("fleet publishers did not finish")
        for p, _ in pubs:
            if p.returncode != 0:
                raise RuntimeError(f"semilab-bench-fleet exited {p.returncode} (logs in {work})")
        res = []
        for _, out in pubs:
            with open(out) as f:
                res.append(json.load(f))
        sums = {k: sum(r[k] for r in res) for k in ("connected", "connected_at_end", "published",
                                                     "publish_errors", "window_published",
                                                     "window_acked", "window_lost", "rejected",
                                                     "unknown_acks")}
        codes = {}
        for r in res:
            for c, n in r.get("reject_codes", {}).items():
                codes[c] = codes.get(c, 0) + n
        lat = [v for r in res for v in r["window_ms"]]
        if not lat:
            raise RuntimeError(f"no batch acked in the window (logs in {work})")
        # A window batch still unacked --drain s after the window counts at the drain time
        # (a lower bound of its latency), so the percentiles never improve by losing batches.
        lat_all = lat + [args.drain * 1000.0] * sums["window_lost"]
        p50, p99 = benchlib.percentile(lat_all, 50), benchlib.percentile(lat_all, 99)
        print(f"fleet: {args.agents} agents in {procs} processes, {args.records} records/batch; "
              f"connected {sums['connected']} (at end {sums['connected_at_end']}); window "
              f"{args.measure:g} s: published {sums['window_published']} acked "
              f"{sums['window_acked']} unacked after {args.drain:g} s {sums['window_lost']} rejected "
              f"{sums['rejected']} {codes} "
              f"publish errors {sums['publish_errors']}; ack latency p50 {p50:.1f} ms "
              f"p99 {p99:.1f} ms max {max(lat):.1f} ms; load average {' '.join(load or loadavg())}")
        benchlib.publish(args.results, [
            benchlib.figure("central_fleet_ack_p99_ms", p99, "ms", 500.0,
                            "target <= 500 ms (issue #6)"),
            benchlib.figure("central_fleet_agents", sums["connected"], "agents", args.agents,
                            "agents started"),
            benchlib.figure("central_fleet_batches_per_s", sums["window_acked"] / args.measure,
                            "batches/s", args.agents, "one batch a second per agent"),
        ])
        ok = sums["window_lost"] == 0 and sums["rejected"] == 0
        if not ok:
            print("fleet: window batches unacked or rejected", file=sys.stderr)
    finally:
        for p, _ in pubs:
            if p.poll() is None:
                p.kill()
                p.wait()
        system.stop()
        if broker is not None:
            stop_broker(broker)
        if args.keep:
            print(f"fleet: work directory kept: {work}", file=sys.stderr)
        else:  # the store alone is ~250 MB after a full run
            shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
