#!/usr/bin/python3
"""HTTP API throughput of semilab-central under wrk (issue #6, bench).

One instrument's last day as results: 1 000 run_result records of instrument `smu1` in the
last 24 h among 100 000 telemetry records of 20 other instruments (so the index has neighbours),
read as ten pages of 100 (`/api/v1/results?instrument=smu1&from_ns=..&to_ns=..&limit=100`, the
cursor of each page taken from the previous one). wrk, 100 connections, two threads, cycles through
the ten page URLs with a bearer token (role viewer); [auth] rate_per_s = 0 (no rate limit), so
every request reaches the handler.

Figures: central_api_rps and central_api_p99_ms with the response cache off
([http] cache_ttl_ms = 0: every request queries SQLite), central_api_cached_rps with it on, all
with the default [http] threads/readers (one HTTP thread and one read connection per core).
central_api_cpu_us_per_req: CPU time of the central process (user + system, /proc/PID/stat) per
request answered, cache off: the figure that does not depend on what else loads the machine.
central_api_1thread_rps / central_api_1thread_cpu_us_per_req: the same with [http] threads = 1,
readers = 1 (the single-threaded server of before), measured in the same run, so the thread pool's
gain is a ratio against a baseline on the same machine state.
Baseline: the old platform's 850 req/s at p95 120 ms (../shared/reference).

The store is made by central itself (migrations), then filled with Python's sqlite3 while the
service is stopped (the data model tables are not needed by /results).
"""
import argparse
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from harness import Proc, System, wait_for  # noqa: E402

LUA = """
local paths = {}
local i = 0
init = function(args)
  for _, p in ipairs(args) do table.insert(paths, p) end
end
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i], {["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")})
end
"""


def write_conf(system, cache_ttl_ms, threads=0):
    conf = system.path(f"central-{cache_ttl_ms}-{threads}.toml")
    with open(conf, "w") as f:
        f.write(f'[central]\ninstance = "central-bench"\ndata_dir = "{system.path("central")}"\n'
                f'log_level = "warn"\n\n'
                f'[mqtt]\nbroker = "tcp://127.0.0.1:{system.broker_port}"\n\n'
                f'[http]\nlisten = "127.0.0.1:0"\ncache_ttl_ms = {cache_ttl_ms}\n'
                f'threads = {threads}\nreaders = {threads}\n\n'
                f'[auth]\nanonymous = "none"\nrate_per_s = 0\n')
    return conf


def start_central(system, conf):
    p = Proc([os.path.join(system.bin, "semilab-central"), "run", "--config", conf],
             system.path("central.log"), first_line="http")
    system.procs.append(p)
    return p, p.first.split()[1]


def fill(db_path, now_ns):
    db = sqlite3.connect(db_path)
    rnd = random.Random(7)
    day = 86_400 * 10**9
    rows = []
    for i in range(100_000):  # neighbours: telemetry of other instruments over two days
        rows.append(("agent-b", 1, i + 1, 2, now_ns - rnd.randrange(2 * day), f"inst{i % 20}",
                     "curr", "A", 0, rnd.random(), None, None, None, None, now_ns))
    for i in range(1000):  # the instrument's last day: results spread over 24 h
        ts = now_ns - day + (i * day) // 1000 + 1
        rows.append(("agent-a", 1, i + 1, 1, ts, "smu1", "vth", "V", 0, 0.4 + rnd.random() / 10,
                     None, None, None, f"run-{i // 10}", now_ns))
    with db:
        db.executemany("INSERT INTO records(agent_id, store_epoch, record_seq, class, ts_ns, "
                       "instrument, channel, unit, quality, value_real, value_int, value_text, "
                       "value_repr, run_id, received_ns) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                       rows)
        for a, n in (("agent-a", 1000), ("agent-b", 100_000)):
            db.execute("INSERT INTO agents(agent_id, site, first_seen_ns, records) "
                       "VALUES(?, 'bench', ?, ?)", (a, now_ns, n))
    db.close()


def pages(http, token, now_ns):
    day = 86_400 * 10**9
    base = f"/api/v1/results?instrument=smu1&from_ns={now_ns - day}&to_ns={now_ns + 1}&limit=100"
    out, after, rows = [], None, 0
    for _ in range(10):
        path = base + (f"&after={after}" if after else "")
        req = urllib.request.Request(f"http://{http}{path}",
                                     headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = json.loads(r.read())
        n = len(body["results"])
        assert n == 100, f"page {len(out)}: {n} rows"
        rows += n
        out.append(path)
        after = body.get("next")
    assert rows == 1000
    return out


def cpu_seconds(pid):
    """User + system CPU time of a process so far (/proc/PID/stat, clock ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(http, token, paths, duration, lua):
    env = dict(os.environ, BENCH_TOKEN=token)
    cmd = ["wrk", "-t2", "-c100", f"-d{duration}s", "--latency", "-s", lua,
           f"http://{http}", "--", *paths]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration + 60)
    if out.returncode != 0:
        raise RuntimeError(f"wrk: {out.stderr}")
    text = out.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))

    def ms(label):
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        v = float(m.group(1))
        return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if non2xx:
        raise RuntimeError(f"wrk saw {non2xx.group(1)} error responses:\n{text}")
    total = int(re.search(r"(\d+) requests in", text).group(1))
    return rps, ms("50"), ms("99"), text, total


def main():
    ap = benchlib.common_args(argparse.ArgumentParser())
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--reps", type=int, default=3, help="wrk runs per setting (median kept)")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="semilab-api-bench-")
    system = System(args.bin_dir, workdir=work)
    try:
        system.start_broker()
        conf_off = write_conf(system, 0)
        conf_on = write_conf(system, 60_000)
        p, _ = start_central(system, conf_off)  # creates and migrates the store
        p.stop()
        system.procs.remove(p)
        now_ns = time.time_ns()
        fill(system.path("central", "central.db"), now_ns)
        out = subprocess.run([os.path.join(args.bin_dir, "semilab-central"), "tokens", "create",
                              "--config", conf_off, "--role", "viewer", "--name", "bench"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        token = out.stdout.strip()
        lua = system.path("pages.lua")
        with open(lua, "w") as f:
            f.write(LUA)
        conf_one = write_conf(system, 0, threads=1)
        figs = {}
        for label, conf in (("off", conf_off), ("one", conf_one), ("on", conf_on)):
            p, http = start_central(system, conf)
            paths = pages(http, token, now_ns)
            run_wrk(http, token, paths, 2, lua)  # warm-up
            runs = []
            for _ in range(args.reps):
                cpu0 = cpu_seconds(p.pid)
                rps, p50, p99, text, total = run_wrk(http, token, paths, args.duration, lua)
                cpu_us = (cpu_seconds(p.pid) - cpu0) * 1e6 / max(total, 1)
                print(f"cache {label}: {rps:.0f} req/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
                      f"{cpu_us:.0f} CPU us/request")
                runs.append((rps, p50, p99, cpu_us))
            runs.sort()
            figs[label] = runs[len(runs) // 2]
            p.stop()
            system.procs.remove(p)
        rps, _, p99, cpu_us = figs["off"]
        benchlib.publish(args.results, [
            benchlib.figure("central_api_rps", rps, "req/s", 850,
                            "old platform 850 req/s; target >= 20000 (wrk -c100, cache off)"),
            benchlib.figure("central_api_p99_ms", p99, "ms", 120,
                            "old platform p95 120 ms; target <= 20 (wrk -c100, cache off)"),
            benchlib.figure("central_api_cached_rps", figs["on"][0], "req/s", rps,
                            "same requests, response cache off"),
            benchlib.figure("central_api_cpu_us_per_req", cpu_us, "us", figs["one"][3],
                            "central CPU (user+sys) per request, cache off; baseline: 1 thread"),
            benchlib.figure("central_api_1thread_rps", figs["one"][0], "req/s", rps,
                            "[http] threads = readers = 1 (before), same run; baseline: default"),
            benchlib.figure("central_api_1thread_cpu_us_per_req", figs["one"][3], "us", cpu_us,
                            "CPU per request with one HTTP thread; baseline: default threads"),
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
