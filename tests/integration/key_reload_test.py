#!/usr/bin/python3
"""SIGHUP pick-up of a new pinned central key (issue #9): central's key is rotated while an agent
uploads over mutual TLS, and the agent learns the new key by a reload, not a restart.

mosquitto (mutual TLS + ACLs, harness.py) + semilab-sim + semilab-central + semilab-agent:
  1. central signs acks with key 1; the agent pins key 1 and uploads;
  2. central restarts with key 2: the agent ignores its acks (log "signature ..."), the records
     stay in its outbox and are resent;
  3. an invalid `central_public_keys` + SIGHUP: refused, the running keys stay;
  4. `central_public_keys = key 2` + SIGHUP: applied in place (log lists key 2's id, no
     "restart the agent" warning for [sync]), then every record is acked.
Checks: one agent process and one broker session throughout (mosquitto's log counts the agent's
connections), every record stored exactly once at central, nothing left in the outbox.
"""
import argparse
import hashlib
import os
import re
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from harness import Proc, System, wait_for  # noqa: E402

COUNT = 400
AGENT = "agent-it-1"


def run(argv):
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    a = ap.parse_args()
    s = System(a.bin_dir)
    central_bin = os.path.join(s.bin, "semilab-central")
    ok = False
    try:
        assert s.tls, "this test is about the mutual-TLS deployment (unset SEMILAB_IT_PLAIN_MQTT)"
        s.start_broker()
        _, sim_port = s.start_sim()
        base = s.write_central_config()
        with open(base) as f:
            text = f.read()
        confs, pubs = [], []
        for i in (1, 2):
            conf = s.path(f"central-key{i}.toml")
            with open(conf, "w") as f:
                f.write(text.replace("[central]\n", f'[central]\nsigning_key_file = '
                                                    f'"{s.path(f"central-key{i}.pem")}"\n', 1))
            r = run([central_bin, "keygen", "--config", conf])
            assert r.returncode == 0, r.stderr
            confs.append(conf)
            pubs.append(r.stdout.strip())
        assert pubs[0] != pubs[1] and all(len(p) == 64 for p in pubs), pubs

        def start_central(conf):
            p = Proc([central_bin, "run", "--config", conf], s.path("central-1.log"),
                     first_line="http")
            s.procs.append(p)
            s.http = p.first.split()[1]
            return p

        central = start_central(confs[0])
        agent_conf = s.write_agent_config(sim_port, count=COUNT, interval=0.01, ack_timeout=1.0)
        with open(agent_conf) as f:
            agent_text = f.read()

        def pin(keys):
            with open(agent_conf, "w") as f:
                f.write(agent_text.replace("[sync]\n", f'[sync]\ncentral_public_keys = "{keys}"\n', 1))
        pin(pubs[0])
        agent = s.start_agent(agent_conf)
        agent_log = s.path(f"{AGENT}.log")

        def counters():
            return s.agent_status(agent_conf)["counters"]
        wait_for(lambda: counters()["acked"] > 0, 60, "records acked under key 1")

        # Central's key changes: its acks no longer verify against the pinned key 1.
        central.stop()
        s.procs.remove(central)
        central = start_central(confs[1])
        wait_for(lambda: "ignored: signature" in read(agent_log), 30, "an ack refused (key 2)")
        wait_for(lambda: counters()["produced"] == COUNT, 60, "every record produced")
        acked_before = counters()["acked"]
        assert acked_before < COUNT, "everything was acked before central's key changed"

        # An invalid key list is refused: nothing changes.
        pin("00zz")
        agent.p.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in read(agent_log), 15, "the invalid list refused")
        assert "central_public_keys" in read(agent_log).split("reload refused", 1)[1][:400]

        # The new key, by SIGHUP: the same process and broker session ack everything.
        pin(pubs[1])
        agent.p.send_signal(signal.SIGHUP)
        wait_for(lambda: "central keys: 1 pinned" in read(agent_log), 15, "the new key applied")
        applied = read(agent_log).split("central keys: 1 pinned", 1)[1][:40]
        key2_id = hashlib.sha256(bytes.fromhex(pubs[1])).hexdigest()[:16]  # schemas key_id_of
        assert key2_id in applied, (key2_id, applied)
        wait_for(lambda: s.central_records(AGENT) == COUNT, 60, "every record stored")
        wait_for(lambda: counters()["held"] == 0, 60, "every record acked under key 2")
        c = counters()
        assert c["acked"] == COUNT == c["produced"], c
        log = read(agent_log)
        assert not re.search(r"reload: .*\[sync\].*changed", log), "[sync] reported as needing a restart"
        assert agent.alive(), "the agent restarted"
        sessions = read(s.path("mosquitto.log")).count(f"as {AGENT} ")
        assert sessions == 1, f"{sessions} broker sessions of {AGENT} (expected one)"
        print(f"ok: {acked_before} of {COUNT} acked under key 1, the rest after the SIGHUP under "
              f"key 2, one broker session, every record stored once")
        ok = True
    finally:
        if not ok:
            s.dump_logs()
        s.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
