#!/usr/bin/python3
"""A real Prometheus (Debian's `prometheus`) scrapes both daemons and evaluates the shipped rules.

mosquitto + simulator + semilab-central + semilab-agent (status page on), all on loopback
(tests/integration/harness.py), and `prometheus` with a 1 s scrape/evaluation interval scraping
central's and the agent's /metrics, `rule_files` = packaging/prometheus/semilab-alerts.yml.

Checks: both targets are up with no scrape error; agent and central series arrive (central's
stored-records gauge counts what the agent sent); every rule of the file is loaded and evaluates
without error against the scraped series; every gauge the rules use is scraped (event counters
with labels may have no sample yet: printed);
and a fault drives an alert: the simulated instrument is killed, and `SemilabInstrumentFailed`
goes pending (its `for:` keeps it from firing within the test) for instrument smu1.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import Proc, System, free_port, wait_for  # noqa: E402

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def api(port, path, **params):
    url = f"http://127.0.0.1:{port}/api/v1/{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=5) as r:
        d = json.loads(r.read())
    assert d["status"] == "success", d
    return d["data"]


def value(port, q):
    r = api(port, "query", query=q)["result"]
    return [(s["metric"], float(s["value"][1])) for s in r]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--rules", required=True)
    ap.add_argument("--prometheus", default=shutil.which("prometheus"))
    a = ap.parse_args()
    if not a.prometheus:
        print("FAIL prometheus not installed (Debian package `prometheus`, ./dev deps)")
        return 1
    system = System(a.bin_dir)
    try:
        system.start_broker()
        sim, sim_port = system.start_sim()
        system.start_central()
        status_port = free_port()
        conf = system.write_agent_config(sim_port, interval=0.2, agent_id="agent-prom-1")
        with open(conf, "a") as f:
            f.write(f"\n[status]\nport = {status_port}\n")
        system.start_agent(conf, agent_id="agent-prom-1")

        prom_port = free_port()
        pconf = system.path("prometheus.yml")
        with open(pconf, "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {os.path.abspath(a.rules)}
scrape_configs:
  - job_name: semilab-central
    static_configs: [{{targets: ["{system.http}"]}}]
  - job_name: semilab-agent
    static_configs: [{{targets: ["127.0.0.1:{status_port}"], labels: {{agent: agent-prom-1}}}}]
""")
        prom = Proc([a.prometheus, f"--config.file={pconf}",
                     f"--storage.tsdb.path={system.path('tsdb')}",
                     f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
                    system.path("prometheus.log"))
        system.procs.append(prom)
        wait_for(lambda: _ready(prom_port), 30, "prometheus ready")

        def targets_up():
            t = api(prom_port, "targets")["activeTargets"]
            return len(t) == 2 and all(x["health"] == "up" for x in t)
        wait_for(targets_up, 30, "both targets up")
        for t in api(prom_port, "targets")["activeTargets"]:
            check(t["health"] == "up" and t["lastError"] == "",
                  f"target {t['labels']['job']} {t['scrapeUrl']} up ({t['lastError']})")

        # Data flows, and Prometheus sees the same counts the daemons report.
        wait_for(lambda: (system.central_records("agent-prom-1") or 0) >= 20, 60, "records at central")
        names = set(api(prom_port, "label/__name__/values"))
        agent_names = sorted(n for n in names if n.startswith("semilab_agent_"))
        central_names = sorted(n for n in names if n.startswith("semilab_central_"))
        check(len(agent_names) >= 10, f"agent series scraped: {len(agent_names)}")
        check(len(central_names) >= 10, f"central series scraped: {len(central_names)}")

        # Every rule loaded, evaluated (lastEvaluation set) without error.
        def all_evaluated():
            groups = api(prom_port, "rules")["groups"]
            rules = [r for g in groups for r in g["rules"]]
            return rules and all(not r["lastEvaluation"].startswith("0001") for r in rules)
        wait_for(all_evaluated, 30, "every rule evaluated once")
        groups = api(prom_port, "rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        with open(a.rules) as f:
            declared = re.findall(r"^\s*- alert:\s*(\S+)", f.read(), re.M)
        check(sorted(r["name"] for r in rules) == sorted(declared),
              f"all {len(declared)} rules of the file loaded")
        bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
        check(not bad, f"every rule evaluates without error: {bad}")
        used = set()
        for r in rules:
            used |= set(re.findall(r"\bsemilab_[a-z0-9_]+", r["query"]))
        missing = sorted(used - names)
        print("rule metrics without a sample yet (labelled counters, no event):", missing)
        # Per-series gauges exist once there is a series: SPC charts need run results.
        per_series = {"semilab_central_spc_violations"}
        check(all(m.endswith("_total") or m in per_series for m in missing),
              f"every gauge the rules use is scraped; only event counters and per-series "
              f"gauges may lack a sample ({len(used) - len(missing)}/{len(used)} scraped)")
        # Central's operations gauges: the store answers, the disk is measured, no backup yet,
        # a gap series per agent.
        check(value(prom_port, "semilab_central_database_up")[0][1] == 1,
              "semilab_central_database_up = 1")
        full = value(prom_port, "1 - semilab_central_data_dir_free_bytes / "
                                "semilab_central_data_dir_size_bytes")
        check(full and 0 <= full[0][1] < 1, f"data_dir fill ratio scraped: {full}")
        check(value(prom_port, "semilab_central_backup_last_success_timestamp_seconds")[0][1] == 0,
              "no verified backup yet: backup timestamp 0")
        # (Its value may be > 0 for a moment: classes interleave, so a hole can be in flight.)
        gaps = value(prom_port, 'semilab_central_agent_unexplained_gaps{agent="agent-prom-1"}')
        check(len(gaps) == 1, f"unexplained-gaps series of agent-prom-1 scraped: {gaps}")
        # The numbers are the daemons' own: central's stored-records gauge as its API reports it.
        stored = value(prom_port, "semilab_central_store_records")
        check(stored and stored[0][1] >= 20, f"semilab_central_store_records scraped: {stored}")
        # Nothing is wrong yet: no alert about this healthy system is firing.
        firing = [x["labels"]["alertname"] for x in api(prom_port, "alerts")["alerts"]
                  if x["state"] == "firing"]
        check(not firing, f"no alert firing on a healthy system: {firing}")

        # The instrument dies: the agent's metrics say so, the rule goes pending for smu1.
        sim.kill()

        def instrument_alert():
            for x in api(prom_port, "alerts")["alerts"]:
                if (x["labels"]["alertname"] == "SemilabInstrumentFailed" and
                        x["labels"].get("instrument") == "smu1"):
                    return x["state"]
            return None
        wait_for(lambda: instrument_alert() in ("pending", "firing"), 60,
                 "SemilabInstrumentFailed pending after the instrument died")
        check(True, f"SemilabInstrumentFailed {instrument_alert()} for smu1 after the instrument died")
        conn = value(prom_port, 'semilab_agent_instrument_connected{instrument="smu1"}')
        check(conn and conn[0][1] == 0, f"semilab_agent_instrument_connected{{smu1}} = 0: {conn}")
    except Exception:
        traceback.print_exc()
        failures.append("exception")
        system.dump_logs()
    finally:
        system.stop()
    if failures:
        print(f"{len(failures)} failure(s)")
        return 1
    print("prometheus ok")
    return 0


def _ready(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
