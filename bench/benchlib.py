"""Python side of bench/results.hpp: figures printed and merged into build/bench/results.json.

The file is a list of {"name", "value", "unit", "baseline", "ratio", "baseline_what"}; an entry
with the same name is replaced, entries of other benches are kept (same rule as
semilab::bench::publish). Standard library only (runs under Debian's /usr/bin/python3).
"""
import json
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))


def figure(name, value, unit, baseline, baseline_what):
    return {"name": name, "value": float(value), "unit": unit, "baseline": float(baseline),
            "ratio": float(value) / baseline if baseline else 0.0, "baseline_what": baseline_what}


def publish(path, figs):
    rows = []
    try:
        with open(path) as f:
            v = json.load(f)
        if isinstance(v, list):
            rows = v
    except (OSError, ValueError):
        pass
    for fig in figs:
        for i, r in enumerate(rows):
            if isinstance(r, dict) and r.get("name") == fig["name"]:
                rows[i] = fig
                break
        else:
            rows.append(fig)
        print(f"{fig['name']:<28} {fig['value']:>14.4g} {fig['unit']:<14} baseline "
              f"{fig['baseline']:>12.4g}  ratio {fig['ratio']:>7.3f}  ({fig['baseline_what']})")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(rows) + "\n")
    os.replace(tmp, path)


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100.0 * len(s)) - 1))
    return s[k]


def common_args(ap):
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "build", "bin"))
    ap.add_argument("--results", default=os.path.join(ROOT, "build", "bench", "results.json"))
    ap.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    return ap
