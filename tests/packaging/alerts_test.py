#!/usr/bin/python3
"""packaging/prometheus/semilab-alerts.yml: valid YAML in Prometheus' rule-file shape, and every
semilab_* metric it names is one the code exports (agent/src, central/src). With promtool on
PATH (Debian's `prometheus` package), also `promtool check rules`."""
import argparse
import os
import re
import shutil
import subprocess
import sys

import yaml


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules", required=True)
    ap.add_argument("--source", required=True)
    a = ap.parse_args()
    doc = yaml.safe_load(open(a.rules))
    exported = set()
    for sub in ("agent/src", "central/src"):
        for name in os.listdir(os.path.join(a.source, sub)):
            if name.endswith(".cpp"):
                exported |= set(re.findall(r'"(semilab_(?:agent|central)_[a-z_]+)',
                                           open(os.path.join(a.source, sub, name)).read()))
    bad, n = [], 0
    for g in doc["groups"]:
        for r in g["rules"]:
            n += 1
            assert r.get("alert") and r.get("expr"), r
            for m in re.findall(r"semilab_(?:agent|central)_[a-z_]+", r["expr"]):
                if m not in exported:
                    bad.append(f"{r['alert']}: {m} is not exported by the code")
    print(f"{n} rules, {len(exported)} metric names exported by the code")
    promtool = shutil.which("promtool")
    if promtool:
        r = subprocess.run([promtool, "check", "rules", a.rules], capture_output=True, text=True)
        print(r.stdout, r.stderr)
        if r.returncode:
            bad.append("promtool check rules failed")
        # Alert unit tests: synthetic series through the rules (for:, thresholds, labels).
        tests = os.path.join(os.path.dirname(os.path.abspath(a.rules)), "semilab-alerts.test.yml")
        r = subprocess.run([promtool, "test", "rules", tests], capture_output=True, text=True,
                           cwd=os.path.dirname(os.path.abspath(a.rules)))
        print(r.stdout, r.stderr)
        if r.returncode:
            bad.append("promtool test rules failed")
    else:
        bad.append("promtool not installed (Debian package `prometheus`, ./dev deps)")
    for b in bad:
        print("FAIL", b)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
