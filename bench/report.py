#!/usr/bin/python3
"""Prints build/bench/results.json as a table."""
import json
import sys

path = sys.argv[1] if len(sys.argv) > 1 else "build/bench/results.json"
try:
    rows = json.load(open(path))
except (OSError, ValueError) as e:
    sys.exit(f"no results in {path}: {e}")
print(f"\n{'figure':<30} {'value':>14} {'unit':<11} {'baseline':>14} {'ratio':>8}  baseline is")
for r in rows:
    print(f"{r['name']:<30} {r['value']:>14.4g} {r['unit']:<11} {r['baseline']:>14.4g} "
          f"{r['ratio']:>8.3f}  {r.get('baseline_what', '')}")
print(f"\n(merged into {path})")
