"""Start semilab's daemons and their peers on 127.0.0.1 for whole-system tests.

Every process is started here, on free loopback ports, in a temp directory, and stopped by PID.
Standard library only (runs under Debian's /usr/bin/python3).

MQTT runs over mutual TLS with the topic ACLs, as in production: the broker is configured from
packaging/mosquitto/semilab.conf.template + semilab.acl, the certificates come from
packaging/pki/semilab-pki (one site CA per test process, made on first use in a temp dir; one
certificate per identity, CN = client id = agent id, `semilab-central` for central instances).
Configuration files get their `[mqtt]` table from System.mqtt_toml(identity). Set
SEMILAB_IT_PLAIN_MQTT=1 to run a plain-TCP broker without ACLs instead (debugging only).
"""
import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class Proc:
    """A child process whose first stdout line may announce its address."""

    def __init__(self, argv, log_path, first_line=None, env=None):
        self.argv = argv
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE if first_line else self.log,
                                  stderr=self.log, env=env)
        self.first = None
        if first_line:
            line = self.p.stdout.readline().decode().strip()
            if not line.startswith(first_line):
                self.stop()
                raise RuntimeError(f"{argv[0]}: expected '{first_line} ...', got '{line}' "
                                   f"(log: {log_path})")
            self.first = line
            # Keep draining stdout so the child never blocks on a full pipe.
            import threading
            threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for chunk in iter(lambda: self.p.stdout.read(4096), b""):
            self.log.write(chunk)
            self.log.flush()

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def kill(self):
        if self.alive():
            self.p.send_signal(signal.SIGKILL)
            self.p.wait()

    def stop(self, timeout=10):
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.p.returncode


SOURCE = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CENTRAL_IDENTITY = "semilab-central"  # the identity semilab.acl grants central's rights to


class SitePki:
    """A site CA made by packaging/pki/semilab-pki: the broker's certificate for 127.0.0.1, central's
    and one per agent id on demand. One per process (site_pki()); removed at exit."""

    def __init__(self):
        self.script = os.path.join(SOURCE, "packaging", "pki", "semilab-pki")
        self.parent = tempfile.mkdtemp(prefix="semilab-it-pki-")
        self.dir = os.path.join(self.parent, "ca")
        self._run("init", self.dir)
        self._run("server", self.dir, "127.0.0.1")
        self._run("central", self.dir, CENTRAL_IDENTITY)
        atexit.register(shutil.rmtree, self.parent, True)

    def _run(self, *args):
        r = subprocess.run([self.script, *args], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"semilab-pki {' '.join(args)}: {r.stderr.strip()}")

    @property
    def ca(self):
        return os.path.join(self.dir, "ca.crt")

    @property
    def crl(self):
        return os.path.join(self.dir, "crl.pem")

    def identity(self, name):
        """(certificate, key) for `name`, issued on first use (CN = name)."""
        kind = "central" if name == CENTRAL_IDENTITY else "agents"
        crt = os.path.join(self.dir, kind, f"{name}.crt")
        if not os.path.exists(crt):
            self._run("agent" if kind == "agents" else "central", self.dir, name)
        return crt, os.path.join(self.dir, kind, f"{name}.key")

    def revoke(self, name):
        """Revokes `name`'s certificate and regenerates the CRL (restart the broker to apply)."""
        kind = "central" if name == CENTRAL_IDENTITY else "agents"
        self._run("revoke", self.dir, kind, name)


_PKI = None


def site_pki():
    global _PKI
    if _PKI is None:
        _PKI = SitePki()
    return _PKI


def plain_mqtt():
    return os.environ.get("SEMILAB_IT_PLAIN_MQTT") == "1"


class System:
    """mosquitto + semilab-sim + semilab-central + semilab-agent, all on loopback."""

    def __init__(self, bin_dir, workdir=None, tls=None):
        self.bin = bin_dir
        self.tmp = None
        if workdir is None:
            self.tmp = tempfile.TemporaryDirectory(prefix="semilab-it-")
            workdir = self.tmp.name
        self.dir = workdir
        os.makedirs(self.dir, exist_ok=True)
        self.procs = []
        self.broker_port = None
        self.http = None
        self.tls = (not plain_mqtt()) if tls is None else tls
        self.pki = site_pki() if self.tls else None

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def broker_url(self):
        return f"{'ssl' if self.tls else 'tcp'}://127.0.0.1:{self.broker_port}"

    def mqtt_toml(self, identity):
        """The `[mqtt]` table (no trailing blank line, so more keys may follow) for a daemon that
        connects as `identity`: an agent id, or CENTRAL_IDENTITY for central instances."""
        s = f'[mqtt]\nbroker = "{self.broker_url()}"\n'
        if self.tls:
            crt, key = self.pki.identity(identity)
            s += (f'tls_ca_file = "{self.pki.ca}"\ntls_cert_file = "{crt}"\n'
                  f'tls_key_file = "{key}"\n')
        return s

    def mosquitto_client_args(self, identity=CENTRAL_IDENTITY):
        """Host, port and TLS options for mosquitto_pub / mosquitto_sub as `identity`."""
        args = ["-h", "127.0.0.1", "-p", str(self.broker_port)]
        if self.tls:
            crt, key = self.pki.identity(identity)
            args += ["--cafile", self.pki.ca, "--cert", crt, "--key", key]
        return args

    def _write_broker_conf(self):
        """mosquitto.conf: the packaged template (mutual TLS, CRL, ACL) or a plain listener. The
        broker drops root for the mosquitto user, so its files are copied into a directory that
        user can read, as an installation puts them under /etc/mosquitto."""
        conf = self.path("mosquitto.conf")
        if not self.tls:
            with open(conf, "w") as f:
                f.write(f"listener {self.broker_port} 127.0.0.1\nallow_anonymous true\n"
                        "persistence false\nmax_queued_messages 1000000\nset_tcp_nodelay true\n")
            return conf
        d = self.path("broker")
        os.makedirs(d, exist_ok=True)
        os.chmod(self.dir, 0o755)
        os.chmod(d, 0o755)
        try:
            import pwd
            pw = pwd.getpwnam("mosquitto") if os.geteuid() == 0 else None
        except (KeyError, ImportError):
            pw = None
        pki = self.pki.dir
        for src, dst in ((self.pki.ca, "ca.crt"), (self.pki.crl, "crl.pem"),
                         (f"{pki}/server/127.0.0.1.crt", "server.crt"),
                         (f"{pki}/server/127.0.0.1.key", "server.key"),
                         (os.path.join(SOURCE, "packaging", "mosquitto", "semilab.acl"), "semilab.acl")):
            shutil.copy(src, os.path.join(d, dst))
            if pw:
                os.chown(os.path.join(d, dst), pw.pw_uid, pw.pw_gid)
        with open(os.path.join(SOURCE, "packaging", "mosquitto", "semilab.conf.template")) as f:
            text = f.read()
        for k, v in {"LISTEN_ADDRESS": "127.0.0.1", "LISTEN_PORT": str(self.broker_port),
                     "CA_FILE": f"{d}/ca.crt", "CERT_FILE": f"{d}/server.crt",
                     "KEY_FILE": f"{d}/server.key", "CRL_FILE": f"{d}/crl.pem",
                     "ACL_FILE": f"{d}/semilab.acl", "PERSISTENCE": "false", "DATA_DIR": d}.items():
            text = text.replace(f"@{k}@", v)
        # As the plain broker: deep queues for the outage tests (the template keeps 100000).
        text = text.replace("max_queued_messages 100000\n", "max_queued_messages 1000000\n")
        with open(conf, "w") as f:
            f.write(text)
        return conf

    def start_broker(self):
        self.broker_port = free_port()
        conf = self._write_broker_conf()
        p = Proc(["/usr/sbin/mosquitto", "-c", conf], self.path("mosquitto.log"))
        self.procs.append(p)
        wait_for(lambda: _port_open(self.broker_port), 10, "mosquitto")
        self.broker = p
        return p

    def restart_broker(self, pause=0.5):
        """Stops the broker (SIGTERM) and starts it again on the same port (with the current CRL)."""
        self.broker.stop()
        self.procs.remove(self.broker)
        time.sleep(pause)
        conf = self._write_broker_conf()
        p = Proc(["/usr/sbin/mosquitto", "-c", conf], self.path("mosquitto.log"))
        self.procs.append(p)
        wait_for(lambda: _port_open(self.broker_port), 10, "mosquitto restart")
        self.broker = p
        return p

    def start_sim(self, model="keithley2450", extra=()):
        p = Proc([os.path.join(self.bin, "semilab-sim"), "--model", model, "--listen",
                  "127.0.0.1:0", "--seed", "7", *extra], self.path(f"sim-{len(self.procs)}.log"),
                 first_line="listening")
        self.procs.append(p)
        return p, int(p.first.rsplit(":", 1)[1])

    def write_central_config(self, instance="central-1"):
        conf = self.path(f"{instance}.toml")
        with open(conf, "w") as f:
            f.write(f'[central]\ninstance = "{instance}"\ndata_dir = "{self.path("central")}"\n\n'
                    f'{self.mqtt_toml(CENTRAL_IDENTITY)}\n'
                    f'[http]\nlisten = "127.0.0.1:0"\n')
        return conf

    def start_central(self, instance="central-1"):
        conf = self.write_central_config(instance)
        p = Proc([os.path.join(self.bin, "semilab-central"), "run", "--config", conf],
                 self.path(f"{instance}.log"), first_line="http")
        self.procs.append(p)
        self.http = p.first.split()[1]
        self.central = p
        return p

    def write_agent_config(self, sim_port, count=0, interval=0.01, agent_id="agent-it-1",
                           durability="normal", ack_timeout=2.0):
        conf = self.path(f"{agent_id}.toml")
        with open(conf, "w") as f:
            f.write(f'[agent]\nid = "{agent_id}"\nsite = "lab-it"\n'
                    f'data_dir = "{self.path(agent_id)}"\ndurability = "{durability}"\n\n'
                    f'{self.mqtt_toml(agent_id)}\n'
                    f'[sync]\nack_timeout_s = {ack_timeout}\nlinger_ms = 50\n\n'
                    f'[[instrument]]\nid = "smu1"\nmodel = "keithley2450"\n'
                    f'resource = "TCPIP0::127.0.0.1::{sim_port}::SOCKET"\n'
                    f'poll_interval_s = {interval}\ncount = {count}\n')
        return conf

    def start_agent(self, conf, agent_id="agent-it-1"):
        self.procs = [p for p in self.procs if p.alive() or p is not getattr(self, "agent", None)]
        p = Proc([os.path.join(self.bin, "semilab-agent"), "run", "--config", conf],
                 self.path(f"{agent_id}.log"))
        self.procs.append(p)
        self.agent = p
        return p

    def agent_status(self, conf):
        out = subprocess.run([os.path.join(self.bin, "semilab-agent"), "status", "--config", conf,
                              "--json"], capture_output=True, timeout=30)
        if out.returncode != 0:
            raise RuntimeError(f"status failed: {out.stderr.decode()}")
        return json.loads(out.stdout)

    def central_get(self, path):
        with urllib.request.urlopen(f"http://{self.http}{path}", timeout=5) as r:
            return json.loads(r.read())

    def central_records(self, agent_id):
        try:
            for a in self.central_get("/api/v1/agents")["agents"]:
                if a["agent_id"] == agent_id:
                    return a["records"]
        except OSError:
            return None
        return 0

    def stop(self):
        for p in reversed(self.procs):
            p.stop()
        self.procs.clear()
        if self.tmp:
            self.tmp.cleanup()

    def dump_logs(self):
        for name in sorted(os.listdir(self.dir)):
            if name.endswith(".log"):
                with open(self.path(name), errors="replace") as f:
                    tail = f.readlines()[-25:]
                sys.stderr.write(f"----- {name} (last lines)\n{''.join(tail)}")


def _port_open(port):
    with contextlib.closing(socket.socket()) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0
