#!/usr/bin/python3
"""Whole-daemon figures of issue #5 (item 10), each measured on real processes on loopback
(mosquitto, semilab-central, semilab-sim, semilab-agent from --bin-dir):

- agent_rss_mb (`--only rss_issue`, the default): the issue's condition. The agent's outbox holds
  --backlog records (1 M) when it starts; 10 simulated instruments poll every 10 ms; the agent
  talks TLS (client certificate, broker verified) to a mosquitto of its own; for --hold-s seconds
  no central runs (the backlog stays buffered), then central starts on the broker's plain
  listener and the agent drains. Figure: VmHWM of /proc/PID/status over both phases; the end
  prints VmRSS split into RssAnon/RssFile (shared libraries and the binary count in RssFile).
  `--only rss` is the older, lighter figure: 4 instruments at 1 ms for --rss-s seconds (baseline:
  1 instrument at 1 Hz for 5 s).
- rate_cap_error_pct: the agent runs with `max_bytes_per_s` = --cap while two instruments produce
  well above it; a third MQTT subscriber (mosquitto_sub, QoS 1, on the batch topic) timestamps
  every batch frame at the broker. Over --cap-s seconds (default 60) after a 5 s warm-up, the
  rate is sum(frame bytes of batches k..m-1) / (t_m - t_k): the token bucket is charged the
  frame size (payload, topic excluded) when a batch goes out, so that is what it paces. Figure =
  |measured - cap| / cap in %. Baseline: the cap.
- e2e_latency_p99_ms: steady ~1 000 records/s, default batching
  (linger_ms, batch_max_records unset), for --lat-s seconds (two Keithley 2450s every 2 ms, default 20 s, first 3 s skipped).
  Latency = time a record becomes visible in central's SQLite store (committed: read through a
  read-only connection polled every 10 ms, so figures are upper bounds by up to ~10 ms) minus
  the record's acquisition stamp (ts_ns, set by the agent at the instrument's reply). Baseline:
  the median of the same samples. Central's received_ns - ts_ns (before its commit) is printed
  too, for comparison.

    /usr/bin/python3 bench/agent_bench.py --bin-dir build/bin [--only rss_issue,rss,cap,latency]
"""
import argparse
import os
import sqlite3
import subprocess
import sys
import threading
import time
import traceback

from benchlib import common_args, figure, percentile, publish
from harness import System, wait_for  # noqa: E402

AGENT = "agent-bench-1"
MODELS = ("keithley2450", "keithley2400", "e4980a", "34461a")


def agent_config(system, instruments, sync_extra=""):
    """instruments: list of (model, port, poll_interval_s)."""
    conf = system.path(f"{AGENT}.toml")
    with open(conf, "w") as f:
        f.write(f'[agent]\nid = "{AGENT}"\nsite = "lab-bench"\ndata_dir = "{system.path(AGENT)}"\n\n'
                f'[mqtt]\nbroker = "tcp://127.0.0.1:{system.broker_port}"\n\n'
                f'[sync]\n{sync_extra}\n')
        for i, (model, port, interval) in enumerate(instruments):
            f.write(f'[[instrument]]\nid = "inst{i}"\nmodel = "{model}"\n'
                    f'resource = "TCPIP0::127.0.0.1::{port}::SOCKET"\n'
                    f'poll_interval_s = {interval}\ncount = 0\n\n')
    return conf


def vm(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])  # kB
    raise KeyError(key)


def start_base(system, models):
    system.start_broker()
    ports = [system.start_sim(model=m)[1] for m in models]
    system.start_central()
    return ports


def run_rss(bin_dir, seconds, n_instruments=4, interval=0.001):
    s = System(bin_dir)
    try:
        ports = start_base(s, MODELS[:n_instruments])
        conf = agent_config(s, [(m, p, interval) for m, p in zip(MODELS, ports)])
        a = s.start_agent(conf, agent_id=AGENT)
        wait_for(lambda: (s.central_records(AGENT) or 0) > 0, 30, "first records at central")
        t_end = time.monotonic() + seconds
        peak = 0
        while time.monotonic() < t_end:
            assert a.alive(), "agent died"
            peak = max(peak, vm(a.pid, "VmHWM"))
            time.sleep(0.5)
        peak = max(peak, vm(a.pid, "VmHWM"))
        st = s.agent_status(conf)
        return peak / 1024.0, st["counters"]
    except Exception:
        s.dump_logs()
        raise
    finally:
        s.stop()


def make_pki(d):
    """A CA, a server certificate for 127.0.0.1 and a client certificate for AGENT (openssl CLI)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*a):
        subprocess.run(["openssl", *a], check=True, capture_output=True)
    run("req", "-x509", *ec, "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.crt", "-days", "2",
        "-subj", "/CN=semilab-bench-ca")
    with open(f"{d}/san.cnf", "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    for name, cn in (("server", "127.0.0.1"), ("client", AGENT)):
        run("req", *ec, "-keyout", f"{d}/{name}.key", "-out", f"{d}/{name}.csr", "-subj", f"/CN={cn}")
        run("x509", "-req", "-in", f"{d}/{name}.csr", "-CA", f"{d}/ca.crt", "-CAkey", f"{d}/ca.key",
            "-CAcreateserial", "-out", f"{d}/{name}.crt", "-days", "2",
            *(["-extfile", f"{d}/san.cnf"] if name == "server" else []))


def start_tls_broker(s):
    """mosquitto with a plain listener (central) and a TLS listener requiring a client
    certificate (the agent); s.broker_port is the plain one. Returns the TLS port."""
    from harness import Proc, _port_open, free_port
    make_pki(s.dir)
    s.broker_port, tls = free_port(), free_port()
    conf = s.path("mosquitto.conf")
    with open(conf, "w") as f:
        # `user root`: as root mosquitto would drop to its own user, which cannot read the keys.
        f.write(f"user root\nper_listener_settings false\nallow_anonymous true\npersistence false\n"
                f"max_queued_messages 1000000\nset_tcp_nodelay true\n"
                f"listener {s.broker_port} 127.0.0.1\nlistener {tls} 127.0.0.1\n"
                f"cafile {s.path('ca.crt')}\ncertfile {s.path('server.crt')}\n"
                f"keyfile {s.path('server.key')}\nrequire_certificate true\n")
    p = Proc(["/usr/sbin/mosquitto", "-c", conf], s.path("mosquitto.log"))
    s.procs.append(p)
    s.broker = p
    wait_for(lambda: _port_open(s.broker_port) and _port_open(tls), 10, "mosquitto (TLS)")
    return tls


def prefill_outbox(s, conf, path, records):
    """Creates the agent's outbox (one start of the daemon without instruments polling) and fills
    it with `records` telemetry records the way the outbox writes them."""
    a = s.start_agent(conf, agent_id=AGENT)
    wait_for(lambda: os.path.exists(path), 30, "outbox created")
    time.sleep(1.0)
    a.stop()
    s.procs.remove(a)
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")
    chans = ("curr", "volt", "res", "temp")
    t0 = time.time_ns() - records * 2_500_000
    db.executemany("INSERT INTO outbox(class, ts_ns, instrument, channel, unit, quality, vkind, vnum,"
                   " vexp, bytes) VALUES(2, ?, 'inst0', ?, 'A', 0, 2, ?, -13, 52)",
                   ((t0 + n * 2_500_000, chans[n % 4], 3978508 + n % 997) for n in range(records)))
    db.execute("UPDATE counters SET value = value + ? WHERE name = 'produced'", (records,))
    db.execute("UPDATE counters SET value = value + ? WHERE name = 'held_bytes'", (records * 52,))
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def run_rss_issue(bin_dir, hold_s, n_instruments=10, interval=0.01, backlog=1_000_000,
                  drain_limit_s=120.0):
    """The issue's condition: `backlog` records buffered in the outbox, `n_instruments` polling,
    TLS to the broker (client certificate, peer verified). Phase 1 (`hold_s`): no central, the
    backlog stays buffered while the instruments add to it; phase 2: central starts and the
    agent drains everything. VmHWM over both phases."""
    import inspect
    # The broker is ours (TLS listener for the agent, plain one for central): the harness itself
    # stays plain where it can do TLS on its own.
    s = System(bin_dir, tls=False) if "tls" in inspect.signature(System).parameters else System(bin_dir)
    try:
        tls_port = start_tls_broker(s)
        models = [MODELS[i % len(MODELS)] for i in range(n_instruments)]
        ports = [s.start_sim(model=m)[1] for m in models]
        conf = s.path(f"{AGENT}.toml")
        ca, crt, key = s.path("ca.crt"), s.path("client.crt"), s.path("client.key")

        def write(instruments):
            with open(conf, "w") as f:
                f.write(f'[agent]\nid = "{AGENT}"\nsite = "lab-bench"\ndata_dir = "{s.path(AGENT)}"\n\n'
                        f'[mqtt]\nbroker = "ssl://127.0.0.1:{tls_port}"\ntls_ca_file = "{ca}"\n'
                        f'tls_cert_file = "{crt}"\ntls_key_file = "{key}"\n\n[sync]\n\n')
                for i, (model, port) in enumerate(instruments):
                    f.write(f'[[instrument]]\nid = "inst{i}"\nmodel = "{model}"\n'
                            f'resource = "TCPIP0::127.0.0.1::{port}::SOCKET"\n'
                            f'poll_interval_s = {interval}\ncount = 0\n\n')
        write([(models[0], ports[0])])
        prefill_outbox(s, conf, os.path.join(s.path(AGENT), "outbox.db"), backlog)
        write(list(zip(models, ports)))
        a = s.start_agent(conf, agent_id=AGENT)
        peak = 0
        t_end = time.monotonic() + hold_s
        while time.monotonic() < t_end:
            assert a.alive(), "agent died"
            peak = max(peak, vm(a.pid, "VmHWM"))
            time.sleep(0.5)
        held_before = s.agent_status(conf)["counters"]["held"]
        s.start_central()
        t_end = time.monotonic() + drain_limit_s
        held = held_before
        while time.monotonic() < t_end:
            assert a.alive(), "agent died"
            peak = max(peak, vm(a.pid, "VmHWM"))
            held = s.agent_status(conf)["counters"]["held"]
            if held < 10_000:
                break
            time.sleep(0.5)
        peak = max(peak, vm(a.pid, "VmHWM"))
        status = open(f"/proc/{a.pid}/status").read()
        rss = {k: vm(a.pid, k) for k in ("VmRSS", "RssAnon", "RssFile", "VmHWM")}
        threads = int(next(l.split()[1] for l in status.splitlines() if l.startswith("Threads:")))
        return peak / 1024.0, held_before, held, rss, threads
    except Exception:
        s.dump_logs()
        raise
    finally:
        s.stop()


def run_rss_baseline(bin_dir, seconds=5):
    s = System(bin_dir)
    try:
        ports = start_base(s, MODELS[:1])
        conf = agent_config(s, [(MODELS[0], ports[0], 1.0)])
        a = s.start_agent(conf, agent_id=AGENT)
        wait_for(lambda: (s.central_records(AGENT) or 0) > 0, 30, "first records at central")
        time.sleep(seconds)
        return vm(a.pid, "VmHWM") / 1024.0
    finally:
        s.stop()


def run_cap(bin_dir, cap, seconds, warmup=5.0):
    s = System(bin_dir)
    frames = []  # (t_s, payload bytes)
    sub = None
    try:
        ports = start_base(s, MODELS[:2])
        sub = subprocess.Popen(["/usr/bin/mosquitto_sub", "-h", "127.0.0.1", "-p",
                                str(s.broker_port), "-q", "1", "-t", "semilab/v1/+/+/batch",
                                "-F", "%U %l"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

        def reader():
            for line in sub.stdout:
                t, n = line.split()
                frames.append((float(t), int(n)))
        threading.Thread(target=reader, daemon=True).start()
        time.sleep(0.5)  # the subscription is in place before the agent publishes
        conf = agent_config(s, [(m, p, 0.001) for m, p in zip(MODELS[:2], ports)],
                            f"max_bytes_per_s = {cap}\nbatch_max_records = 500\n")
        s.start_agent(conf, agent_id=AGENT)
        time.sleep(warmup + seconds + 2.0)
        st = s.agent_status(conf)
    except Exception:
        s.dump_logs()
        raise
    finally:
        if sub:
            sub.terminate()
            sub.wait()
        s.stop()
    t0 = frames[0][0] + warmup
    win = [f for f in frames if t0 <= f[0] <= t0 + seconds]
    assert len(win) >= 10, f"only {len(win)} batches in the window: lower the cap"
    k, m = 0, len(win) - 1
    measured = sum(n for _, n in win[k:m]) / (win[m][0] - win[k][0])
    c = st["counters"]
    # Production must have stayed above the cap, or the figure measures the producer.
    assert c["held"] > 0, f"no backlog at the end: production did not exceed the cap ({c})"
    return measured, len(win), win[m][0] - win[k][0], c


def run_latency(bin_dir, seconds, skip=3.0):
    s = System(bin_dir)
    obs = {}  # seq -> (visible_ns, ts_ns, received_ns)
    try:
        # Two Keithley 2450s (one record per poll) every 2 ms: ~1 000 records/s.
        ports = start_base(s, (MODELS[0], MODELS[0]))
        conf = agent_config(s, [(MODELS[0], p, 0.002) for p in ports])
        s.start_agent(conf, agent_id=AGENT)
        wait_for(lambda: os.path.exists(s.path("central", "central.db")), 30, "central db")
        db = sqlite3.connect(f"file:{s.path('central', 'central.db')}?mode=ro", uri=True,
                             timeout=10)
        low = 0  # every seq <= low has been seen
        t_start = time.monotonic()
        while time.monotonic() - t_start < seconds:
            rows = db.execute("SELECT record_seq, ts_ns, received_ns, instrument FROM records "
                              "WHERE agent_id = ? AND record_seq > ?", (AGENT, low)).fetchall()
            now = time.time_ns()
            for seq, ts, rcv, inst in rows:
                if seq not in obs:
                    obs[seq] = (now, ts, rcv, inst)
            while low + 1 in obs:
                low += 1
            time.sleep(0.01)
        db.close()
        st = s.agent_status(conf)
    except Exception:
        s.dump_logs()
        raise
    finally:
        s.stop()
    vals = sorted((v for v in obs.values() if v[3] != "agent"), key=lambda v: v[1])
    t_skip = vals[0][1] + int(skip * 1e9)
    vals = [v for v in vals if v[1] >= t_skip]
    span = (vals[-1][1] - vals[0][1]) / 1e9
    lat = [(v[0] - v[1]) / 1e6 for v in vals]
    rcv = [(v[2] - v[1]) / 1e6 for v in vals]
    return lat, rcv, len(vals) / span, st["counters"]


def main():
    ap = common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    ap.add_argument("--only", default="rss_issue,cap,latency",
                    help="rss_issue (the issue's condition), rss (4 instruments at 1 ms), cap, latency")
    ap.add_argument("--rss-s", type=float, default=30.0)
    ap.add_argument("--hold-s", type=float, default=15.0,
                    help="issue condition: seconds with the 1 M backlog held before central starts")
    ap.add_argument("--backlog", type=int, default=1_000_000)
    ap.add_argument("--cap", type=float, default=10000.0, help="max_bytes_per_s under test")
    ap.add_argument("--cap-s", type=float, default=60.0)
    ap.add_argument("--lat-s", type=float, default=20.0)
    args = ap.parse_args()
    bin_dir = os.path.abspath(args.bin_dir)
    only = set(args.only.split(","))
    figs, rc = [], 0
    if "rss" in only:
        try:
            base = run_rss_baseline(bin_dir)
            peak, c = run_rss(bin_dir, args.rss_s)
            print(f"rss: VmHWM {peak:.1f} MiB over {args.rss_s:.0f} s, 4 instruments at 1 ms: "
                  f"produced {c['produced']}, acked {c['acked']}, held {c['held']}")
            figs.append(figure("agent_rss_mb", peak, "MiB", base,
                               "VmHWM polling 1 instrument at 1 Hz for 5 s"))
        except Exception:
            traceback.print_exc()
            rc = 1
    if "rss_issue" in only:
        try:
            peak, held0, held1, rss, threads = run_rss_issue(bin_dir, args.hold_s, backlog=args.backlog)
            print(f"rss (issue condition: {args.backlog} buffered, 10 instruments, TLS): VmHWM "
                  f"{peak:.2f} MiB; held {held0} with central away, {held1} at the end; "
                  f"at the end {rss} kB, {threads} threads")
            figs.append(figure("agent_rss_mb", peak, "MiB", args.backlog,
                               "records buffered at start; 10 instruments polling at 10 ms, TLS"))
        except Exception:
            traceback.print_exc()
            rc = 1
    if "cap" in only:
        try:
            measured, n, span, c = run_cap(bin_dir, args.cap, args.cap_s)
            err = abs(measured - args.cap) / args.cap * 100
            print(f"cap: configured {args.cap:.0f} B/s, measured at the broker {measured:.1f} B/s "
                  f"over {n} batches / {span:.1f} s; agent produced {c['produced']}, held {c['held']}")
            figs.append(figure("rate_cap_error_pct", err, "%", args.cap,
                               f"configured max_bytes_per_s; measured {measured:.0f} B/s"))
        except Exception:
            traceback.print_exc()
            rc = 1
    if "latency" in only:
        try:
            lat, rcv, rate, c = run_latency(bin_dir, args.lat_s)
            p50, p99 = percentile(lat, 50), percentile(lat, 99)
            print(f"latency: {len(lat)} records at {rate:.0f} records/s; to visible at central "
                  f"p50 {p50:.1f} ms p99 {p99:.1f} ms max {max(lat):.1f} ms; to central's "
                  f"receipt p50 {percentile(rcv, 50):.1f} ms p99 {percentile(rcv, 99):.1f} ms")
            figs.append(figure("e2e_latency_p99_ms", p99, "ms", p50,
                               f"p50 of the same {len(lat)} records at {rate:.0f}/s "
                               "(acquisition to committed at central)"))
        except Exception:
            traceback.print_exc()
            rc = 1
    if figs:
        publish(args.results, figs)
    return rc


if __name__ == "__main__":
    sys.exit(main())
