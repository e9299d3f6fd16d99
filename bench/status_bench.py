#!/usr/bin/python3
"""The agent's /api/v1/status under wrk while it acquires (issue 7, item 5).

Real processes on loopback: mosquitto, a Keithley 2450 simulator, central, and semilab-agent
polling the simulator every --interval s (default 10 ms) with its status page on a free port.
One /api/v1/status reply of the agent is captured (status line, headers and body, as received)
and handed to semilab-bench-bare-http, a one-thread Boost.Beast keep-alive server answering every
request with those bytes: the ceiling of what an HTTP server of the same shape can do on this
machine at this moment. The bare server runs while the agent keeps acquiring, so both see the
same background load.

wrk -t2 -c100 -d<duration>s --latency, on the agent and the bare server in turn (A B A B ...,
--rounds rounds each, after a 2 s warm-up of each); medians kept. Figures:
  status_api_rps      agent requests/s (baseline: the bare server's)
  status_bare_rps     bare server requests/s
  status_api_ratio    agent / bare, target >= 0.5
  status_api_p99_ms   agent p99 latency, target <= 10 ms

    /usr/bin/python3 bench/status_bench.py --bin-dir build/bin [--duration 10] [--rounds 3]
"""
import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from harness import Proc, System, free_port, wait_for  # noqa: E402

AGENT = "agent-statusbench-1"


def raw_get(port, path):
    """The whole HTTP/1.1 reply to one keep-alive GET, bytes as received."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        m = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
        assert m, f"no Content-Length in {head[:300]!r}"
        n = int(m.group(1))
        while len(body) < n:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
        assert len(body) == n, f"short body: {len(body)} of {n}"
        return head + b"\r\n\r\n" + body


def run_wrk(port, duration):
    cmd = ["wrk", "-t2", "-c100", f"-d{duration}s", "--latency",
           f"http://127.0.0.1:{port}/api/v1/status"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    if out.returncode != 0:
        raise RuntimeError(f"wrk: {out.stderr}")
    text = out.stdout
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if non2xx:
        raise RuntimeError(f"wrk saw {non2xx.group(1)} error responses:\n{text}")
    errors = re.search(r"Socket errors:.*", text)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))

    def ms(label):
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        v = float(m.group(1))
        return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v
    return rps, ms("50"), ms("99"), errors.group(0) if errors else ""


def main():
    ap = benchlib.common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=3, help="A/B rounds (medians kept)")
    ap.add_argument("--interval", type=float, default=0.01, help="agent poll interval, s")
    args = ap.parse_args()
    bin_dir = os.path.abspath(args.bin_dir)
    work = tempfile.mkdtemp(prefix="semilab-status-bench-")
    system = System(bin_dir, workdir=work)
    try:
        system.start_broker()
        _, sim_port = system.start_sim()
        system.start_central()
        port = free_port()
        conf = system.write_agent_config(sim_port, interval=args.interval, agent_id=AGENT)
        with open(conf, "a") as f:
            f.write(f"\n[status]\nport = {port}\n")
        agent = system.start_agent(conf, agent_id=AGENT)

        def status_ok():
            try:
                raw = raw_get(port, "/api/v1/status")
            except OSError:
                return None
            if not raw.startswith(b"HTTP/1.1 200"):
                return None
            st = json.loads(raw.partition(b"\r\n\r\n")[2])
            return raw if st["instruments"] and st["instruments"][0]["channels"] else None
        raw = wait_for(status_ok, 30, "the agent's status page with a first reading")
        wait_for(lambda: (system.central_records(AGENT) or 0) > 0, 30, "records at central")
        canned = system.path("status-reply.http")
        with open(canned, "wb") as f:
            f.write(raw)
        head = raw.partition(b"\r\n\r\n")[0].decode()
        print(f"captured /api/v1/status: {len(raw)} bytes, headers:\n  "
              + head.replace("\r\n", "\n  "))
        bare = Proc([os.path.join(bin_dir, "semilab-bench-bare-http"), "--response", canned],
                    system.path("bare-http.log"), first_line="listening")
        system.procs.append(bare)
        bare_port = int(bare.first.rsplit(":", 1)[1])
        assert raw_get(bare_port, "/api/v1/status") == raw, "the bare server's reply differs"

        run_wrk(port, 2)  # warm-up
        run_wrk(bare_port, 2)

        def produced():
            st = json.loads(raw_get(port, "/api/v1/status").partition(b"\r\n\r\n")[2])
            return st["counters"]["produced"], st["instruments"][0].get("connected")
        n0, t0 = produced()[0], time.monotonic()
        runs = {"agent": [], "bare": []}
        for r in range(args.rounds):
            for label, p in (("agent", port), ("bare", bare_port)):
                assert agent.alive(), "agent died"
                rps, p50, p99, errs = run_wrk(p, args.duration)
                load = os.getloadavg()
                print(f"round {r + 1} {label:5}: {rps:9.0f} req/s  p50 {p50:6.2f} ms  "
                      f"p99 {p99:6.2f} ms  load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
                      + (f"  {errs}" if errs else ""))
                runs[label].append((rps, p50, p99))
        n1, connected = produced()
        rate = (n1 - n0) / (time.monotonic() - t0)
        print(f"agent acquiring throughout: {rate:.0f} records/s produced during the runs "
              f"(poll interval {args.interval * 1000:g} ms), instrument connected={connected}")
        assert n1 > n0 and connected, "the agent stopped acquiring under load"
        a_rps = statistics.median(x[0] for x in runs["agent"])
        b_rps = statistics.median(x[0] for x in runs["bare"])
        a_p99 = statistics.median(x[2] for x in runs["agent"])
        ratios = [a[0] / b[0] for a, b in zip(runs["agent"], runs["bare"])]
        print(f"per-round ratios: {', '.join(f'{x:.3f}' for x in ratios)}; "
              f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        benchlib.publish(args.results, [
            benchlib.figure("status_api_rps", a_rps, "req/s", b_rps,
                            "bare Beast server, same reply, same run (wrk -c100)"),
            benchlib.figure("status_bare_rps", b_rps, "req/s", b_rps,
                            "itself (reference of status_api_ratio)"),
            benchlib.figure("status_api_ratio", a_rps / b_rps, "ratio", 0.5,
                            "target >= 0.5 of the bare server (median rps)"),
            benchlib.figure("status_api_p99_ms", a_p99, "ms", 10,
                            "target <= 10 ms (wrk -c100, agent acquiring)"),
        ])
    except Exception:
        system.dump_logs()
        raise
    finally:
        system.stop()
        if not args.keep:
            subprocess.run(["rm", "-rf", work])
        else:
            print(f"kept {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
