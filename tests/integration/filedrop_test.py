"""File drops end to end (issue #11): mosquitto + semilab-central + two semilab-agents + the
export-folder simulator, all on loopback.

- `semilab-sim --model export-folder` writes one file of each format (XRDML, JCAMP-DX, VAMAS,
  SPC, CSV, SEM TIFF) in pieces under its final name; the agent takes each once it is stable,
  archives, parses and analyses it (one [[filedrop]] per pattern, with its analysis kind).
- A large file of no known format (parse error) uploads under a bandwidth cap; the agent is
  SIGKILLed mid-upload and restarted: the upload resumes from the outbox and the file is not
  taken again (ledger).
- A truncated XRDML reaches central with its parse error.
- The same content from two agents is two file rows and one stored blob.
- Central: every file listed once with its metadata and parameters, the content byte-identical
  (sha256 of GET /api/v1/blobs/{sha256}), chunk texts cleared from `records`, staging empty.
Files the simulator writes after the large one reach central (metadata and parameters) while its
blob is still uploading: a large file never holds back newer records.
"""
import argparse
import hashlib
import json
import os
import sqlite3
import sys
import time
import traceback
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Proc, System, wait_for  # noqa: E402

A1, A2 = "agent-fd-1", "agent-fd-2"
DROPS = [  # id, pattern, analysis kind
    ("xrd", "*.xrdml", "xrd-peak"),
    ("raman", "*.spc", "raman-peak"),
    ("xps", "*.vms", "xps-check"),
    ("uvvis-jdx", "*.jdx", "tauc"),
    ("uvvis-csv", "*.csv", "tauc"),
    ("sem", "*.tif", ""),
    ("misc", "*.dat", ""),
]


def agent_conf(system, agent_id, folder, drops, cap):
    conf = system.path(f"{agent_id}.toml")
    with open(conf, "w") as f:
        f.write(f'[agent]\nid = "{agent_id}"\nsite = "lab-fd"\n'
                f'data_dir = "{system.path(agent_id)}"\ndurability = "normal"\n\n'
                f'{system.mqtt_toml(agent_id)}\n'
                f'[sync]\nack_timeout_s = 2\nlinger_ms = 20\nmax_bytes_per_s = {cap}\n\n')
        for did, pattern, kind in drops:
            f.write(f'[[filedrop]]\nid = "{did}"\nfolder = "{folder}"\npattern = "{pattern}"\n'
                    f'kind = "{kind}"\nstable_s = 0.4\npoll_interval_s = 0.1\n\n')
    return conf


def files(system, **q):
    query = "&".join(f"{k}={v}" for k, v in q.items())
    return system.central_get(f"/api/v1/blobs?limit=1000&{query}")["files"]


def content(system, sha):
    with urllib.request.urlopen(f"http://{system.http}/api/v1/blobs/{sha}", timeout=10) as r:
        return r.read()


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def run(bin_dir):
    system = System(bin_dir)
    try:
        system.start_broker()
        system.start_central()
        exports = system.path("exports")
        other = system.path("exports-2")
        os.makedirs(exports)
        os.makedirs(other)

        # The large unparseable file first, so that it uploads while the simulator writes.
        big = os.path.join(exports, "0000_dump.dat")
        with open(big, "wb") as f:
            f.write(os.urandom(1_500_000))
        big_sha = sha256(big)
        bad = os.path.join(exports, "0099_truncated.xrdml")
        with open(bad, "w") as f:
            f.write('<?xml version="1.0"?>\n<xrdMeasurements><xrdMeasurement><scan><dataPoints>'
                    '<intensities unit="counts">1 2 3')

        conf1 = agent_conf(system, A1, exports, DROPS, 250_000)
        system.start_agent(conf1, A1)
        wait_for(lambda: any(not f["stored"] for f in files(system, sha256=big_sha)), 30,
                 "the large file's metadata at central")

        sim = Proc([os.path.join(system.bin, "semilab-sim"), "--model", "export-folder", exports,
                    "--period", "0.4", "--count", "6", "--seed", "11"],
                   system.path("sim-export.log"), first_line="ready")
        system.procs.append(sim)
        wait_for(lambda: not sim.alive(), 30, "the simulator's six files")
        assert sim.p.returncode == 0, f"semilab-sim exited {sim.p.returncode}"
        written = sorted(n for n in os.listdir(exports) if n[:4].isdigit() and n[:4] not in ("0000", "0099"))
        assert len(written) == 6, written
        names = lambda: {f["name"] for f in files(system, agent=A1)}  # noqa: E731
        wait_for(lambda: set(written) <= names(), 30, "metadata of the six simulated files")
        # Newer records were not held back by the large blob still uploading.
        assert not files(system, sha256=big_sha)[0]["stored"], "large blob done before newer files"

        # Kill the agent mid-upload; it resumes from its outbox and does not take files again.
        system.agent.kill()
        assert not files(system, sha256=big_sha)[0]["stored"]
        system.start_agent(conf1, A1)

        # Same content from a second agent.
        dup_src = os.path.join(exports, [n for n in written if n.endswith(".spc")][0])
        with open(dup_src, "rb") as s, open(os.path.join(other, "copy.spc"), "wb") as d:
            d.write(s.read())
        conf2 = agent_conf(system, A2, other, [("raman2", "*.spc", "raman-peak")], 0)
        system.start_agent(conf2, A2)

        expected = {n: sha256(os.path.join(exports, n)) for n in written}
        expected[os.path.basename(big)] = big_sha
        expected[os.path.basename(bad)] = sha256(bad)

        def all_stored():
            fs = files(system)
            got = {(f["agent_id"], f["name"]) for f in fs if f["stored"]}
            want = {(A1, n) for n in expected} | {(A2, "copy.spc")}
            return want <= got

        wait_for(all_stored, 60, "every file stored at central")
        time.sleep(1.0)  # a duplicate taken after the restart would show up by now
        fs = files(system)
        by_name = {}
        for f in fs:
            by_name.setdefault((f["agent_id"], f["name"]), []).append(f)
        for n, sha in expected.items():
            rows = by_name.get((A1, n), [])
            assert len(rows) == 1, f"{n}: {len(rows)} file rows (taken again after the restart?)"
            f = rows[0]
            assert f["sha256"] == sha, f"{n}: sha {f['sha256']} != {sha} (taken before it was stable?)"
            with open(os.path.join(exports, n), "rb") as src:
                assert content(system, sha) == src.read(), f"{n}: content differs"
        assert len(fs) == len(expected) + 1, [(f["agent_id"], f["name"]) for f in fs]

        fmt = {f["name"]: f for f in fs if f["agent_id"] == A1}
        for n in written:
            f = fmt[n]
            assert f["parse_error"] is None, f"{n}: {f['parse_error']}"
            assert f["format"] in ("xrdml", "jcamp-dx", "vamas", "spc", "csv", "sem-tiff"), f
        xrd = fmt[[n for n in written if n.endswith(".xrdml")][0]]
        names_xrd = {p["name"] for p in xrd["parameters"]}
        assert any(n.startswith("xrd-peak.") for n in names_xrd), xrd["parameters"]
        raman = fmt[[n for n in written if n.endswith(".spc")][0]]
        assert any(p["name"].startswith("raman-peak.") for p in raman["parameters"]), raman
        sem = fmt[[n for n in written if n.endswith(".tif")][0]]
        assert sem["meta"].get("vendor"), sem
        assert fmt[os.path.basename(big)]["parse_error"], "the unknown binary should not parse"
        assert fmt[os.path.basename(bad)]["parse_error"], "the truncated XRDML should not parse"
        assert files(system, parse_error="true") and all(
            f["parse_error"] for f in files(system, parse_error="true"))

        dup = [f for f in fs if f["sha256"] == expected[os.path.basename(dup_src)]]
        assert {f["agent_id"] for f in dup} == {A1, A2}, dup

        db = sqlite3.connect(f"file:{system.path('central', 'central.db')}?mode=ro", uri=True)
        try:
            assert db.execute("SELECT COUNT(*) FROM blobs").fetchone()[0] == len(expected)
            assert db.execute("SELECT COUNT(*) FROM blob_chunks").fetchone()[0] == 0
            assert db.execute("SELECT COUNT(*) FROM records WHERE class = 3 AND value_text IS NOT NULL"
                              ).fetchone()[0] == 0, "chunk texts kept twice"
            dups = db.execute("SELECT SUM(duplicates) FROM agents").fetchone()[0]
        finally:
            db.close()
        print(f"ok: {len(expected)} files from {A1}, 1 shared with {A2}; large file resumed after "
              f"kill -9; {dups} redelivered record(s) ignored")
    except BaseException:
        traceback.print_exc()
        system.dump_logs()
        raise
    finally:
        system.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    a = ap.parse_args()
    run(a.bin_dir)
