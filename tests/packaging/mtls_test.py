#!/usr/bin/python3
"""Mutual TLS packaging: packaging/pki/semilab-pki + packaging/mosquitto/semilab.conf.template
+ semilab.acl, against a real mosquitto on a free loopback port.

Checks:
  - the CA, broker, central and agent certificates come from the script; CN = id;
  - an agent (CN a1) publishes into its own batch topic: central's subscriber gets it;
  - a1 publishing into a2's batch topic, or posing as a central instance: never delivered;
  - a1 subscribed to every ack topic receives only its own ack, not a2's;
  - a client without a certificate, or with one from another CA, is refused;
  - after `semilab-pki revoke DIR agents a2` and a broker restart, a2 is refused while a1 still
    delivers (crlfile).
"""
import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


def wait_for(pred, timeout):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


class Broker:
    """The broker's files are copied where the mosquitto user (privileges dropped) can read them,
    as an installation would put them under /etc/mosquitto; refresh() copies the CRL again."""

    def __init__(self, tmp, template, acl, pki, port):
        self.pki = pki
        self.dir = os.path.join(tmp, "broker")
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(tmp, 0o755)
        os.chmod(self.dir, 0o755)
        self.refresh()
        d = self.dir
        conf = open(template).read()
        for k, v in {"LISTEN_ADDRESS": "127.0.0.1", "LISTEN_PORT": str(port),
                     "CA_FILE": f"{d}/ca.crt", "CERT_FILE": f"{d}/server.crt",
                     "KEY_FILE": f"{d}/server.key", "CRL_FILE": f"{d}/crl.pem",
                     "ACL_FILE": acl, "PERSISTENCE": "false", "DATA_DIR": d}.items():
            conf = conf.replace(f"@{k}@", v)
        live = [ln for ln in conf.splitlines() if not ln.lstrip().startswith("#")]
        assert not any("@" in ln for ln in live), "unreplaced placeholder in the template"
        self.conf = os.path.join(tmp, "mosquitto.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.log = os.path.join(tmp, "mosquitto.log")
        self.port = port
        self.proc = None

    def refresh(self):
        try:
            import pwd
            pw = pwd.getpwnam("mosquitto")
        except (KeyError, ImportError):
            pw = None
        for src, dst in (("ca.crt", "ca.crt"), ("crl.pem", "crl.pem"),
                         ("server/127.0.0.1.crt", "server.crt"), ("server/127.0.0.1.key", "server.key")):
            shutil.copy(os.path.join(self.pki, src), os.path.join(self.dir, dst))
            if pw and os.geteuid() == 0:
                os.chown(os.path.join(self.dir, dst), pw.pw_uid, pw.pw_gid)

    def start(self):
        self.proc = subprocess.Popen(["/usr/sbin/mosquitto", "-c", self.conf, "-v"],
                                     stdout=open(self.log, "a"), stderr=subprocess.STDOUT)
        if not wait_for(lambda: port_open(self.port), 5):
            raise RuntimeError("mosquitto did not start: " + open(self.log).read()[-2000:])

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(5)
            self.proc = None


class Client:
    """mosquitto_pub / mosquitto_sub with one identity."""

    def __init__(self, pki, port, kind, name):
        self.port = port
        self.tls = ["--cafile", f"{pki}/ca.crt"]
        if kind:
            self.tls += ["--cert", f"{pki}/{kind}/{name}.crt", "--key", f"{pki}/{kind}/{name}.key"]
        self.id = name

    def pub(self, topic, msg):
        r = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(self.port), "-V", "mqttv5",
                            "-q", "1", "-i", self.id, "-t", topic, "-m", msg] + self.tls,
                           capture_output=True, text=True, timeout=20)
        return r.returncode, r.stdout + r.stderr

    def sub(self, topic, out_path):
        return subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.port),
                                 "-V", "mqttv5", "-q", "1", "-i", self.id + "-sub", "-v",
                                 "-t", topic] + self.tls,
                                stdout=open(out_path, "w"), stderr=subprocess.STDOUT)


def read(path):
    with open(path) as f:
        return f.read()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", required=True)
    a = ap.parse_args()
    script = os.path.join(a.source, "packaging/pki/semilab-pki")
    template = os.path.join(a.source, "packaging/mosquitto/semilab.conf.template")
    acl = os.path.join(a.source, "packaging/mosquitto/semilab.acl")
    tmp = tempfile.mkdtemp(prefix="semilab-mtls-")
    failures = []

    def check(cond, what):
        print(("ok   " if cond else "FAIL ") + what, flush=True)
        if not cond:
            failures.append(what)

    pki = os.path.join(tmp, "pki")
    procs = []
    broker = None
    try:
        def pki_run(*args):
            return subprocess.run([script, *args], capture_output=True, text=True, timeout=60)

        for args in (["init", pki], ["server", pki, "127.0.0.1"], ["central", pki],
                     ["agent", pki, "a1"], ["agent", pki, "a2"]):
            r = pki_run(*args)
            if r.returncode != 0:
                raise RuntimeError(f"semilab-pki {args}: {r.stderr}")
        subj = subprocess.run(["openssl", "x509", "-noout", "-subject", "-in", f"{pki}/agents/a1.crt"],
                              capture_output=True, text=True).stdout
        check("CN = a1" in subj or "CN=a1" in subj, f"agent certificate CN is the agent id ({subj.strip()})")
        check(oct(os.stat(f"{pki}/agents/a1.key").st_mode & 0o777) == "0o600", "agent key is 0600")
        check(pki_run("agent", pki, "a1").returncode != 0, "a second certificate for a1 is refused")
        check(pki_run("agent", pki, "../x").returncode != 0, "an invalid agent id is refused")

        # Another CA's certificate for the same CN: must not be accepted.
        other = os.path.join(tmp, "other")
        for args in (["init", other], ["agent", other, "a1"]):
            if pki_run(*args).returncode != 0:
                raise RuntimeError("second CA")

        port = free_port()
        broker = Broker(tmp, template, acl, pki, port)
        broker.start()
        central = Client(pki, port, "central", "semilab-central")
        a1 = Client(pki, port, "agents", "a1")
        a2 = Client(pki, port, "agents", "a2")

        batches = os.path.join(tmp, "central-batches.txt")
        procs.append(central.sub("$share/semilab-central/semilab/v1/+/+/batch", batches))
        presence = os.path.join(tmp, "central-presence.txt")
        central2 = Client(pki, port, "central", "semilab-central")
        central2.id = "central-2"
        procs.append(central2.sub("semilab/v1/central/+/state", presence))
        acks_a1 = os.path.join(tmp, "a1-acks.txt")
        procs.append(a1.sub("semilab/v1/+/+/ack", acks_a1))
        time.sleep(0.5)

        rc, out = a1.pub("semilab/v1/lab/a2/batch", "forged-by-a1")
        rc, out = a1.pub("semilab/v1/central/a1/state", "a1-poses-as-central")
        rc, out = a1.pub("semilab/v1/lab/a1/batch", "own-a1")
        check(rc == 0, f"a1 publishes into its own batch topic ({out.strip()})")
        rc, out = central.pub("semilab/v1/central/central-1/state", "central-online")
        check(rc == 0, "central publishes its instance presence")
        check(wait_for(lambda: "own-a1" in read(batches), 5),
              "central's shared subscription receives a1's batch")
        check(wait_for(lambda: "central-online" in read(presence), 5),
              "central's presence is delivered")
        central.pub("semilab/v1/lab/a2/ack", "ack-for-a2")
        central.pub("semilab/v1/lab/a1/ack", "ack-for-a1")
        check(wait_for(lambda: "ack-for-a1" in read(acks_a1), 5), "a1 receives its own ack")
        time.sleep(0.5)
        check("forged-by-a1" not in read(batches), "a1's message on a2's topic is never delivered")
        check("a1-poses-as-central" not in read(presence),
              "a1 cannot publish a central instance's presence")
        check("ack-for-a2" not in read(acks_a1), "a1 never receives a2's ack")

        anon = Client(pki, port, None, "anon")
        rc, out = anon.pub("semilab/v1/lab/anon/batch", "x")
        check(rc != 0, "a client without a certificate is refused")
        foreign = Client(other, port, "agents", "a1")
        foreign.tls[1] = f"{pki}/ca.crt"  # trusts the broker, presents another CA's certificate
        rc, out = foreign.pub("semilab/v1/lab/a1/batch", "foreign")
        check(rc != 0, "a certificate from another CA is refused")

        rc, out = a2.pub("semilab/v1/lab/a2/batch", "own-a2-before-revocation")
        check(rc == 0 and wait_for(lambda: "own-a2-before-revocation" in read(batches), 5),
              "a2 delivers before revocation")

        r = pki_run("revoke", pki, "agents", "a2")
        check(r.returncode == 0, "semilab-pki revoke a2")
        listed = subprocess.run(["openssl", "crl", "-noout", "-text", "-in", f"{pki}/crl.pem"],
                                capture_output=True, text=True).stdout
        check("Serial Number" in listed, "the CRL lists the revoked certificate")
        os.rename(f"{pki}/agents/a2.crt.revoked", f"{pki}/agents/a2.crt")  # the agent still holds it
        for p in procs:
            p.terminate()
            p.wait(5)
        procs.clear()
        broker.stop()
        broker.refresh()
        broker.start()
        procs.append(central.sub("$share/semilab-central/semilab/v1/+/+/batch", batches))
        time.sleep(0.5)
        rc, out = a2.pub("semilab/v1/lab/a2/batch", "own-a2-after-revocation")
        check(rc != 0, f"revoked a2 is refused ({out.strip()[:120]})")
        rc, out = a1.pub("semilab/v1/lab/a1/batch", "own-a1-after-revocation")
        check(rc == 0 and wait_for(lambda: "own-a1-after-revocation" in read(batches), 5),
              "a1 still delivers after a2's revocation")
        time.sleep(0.3)
        check("own-a2-after-revocation" not in read(batches), "nothing of revoked a2 is delivered")
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        if broker:
            broker.stop()
        if failures:
            print("broker log tail:\n" + read(os.path.join(tmp, "mosquitto.log"))[-3000:]
                  if os.path.exists(os.path.join(tmp, "mosquitto.log")) else "")
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
