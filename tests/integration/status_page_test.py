#!/usr/bin/python3
"""The agent's status page, end to end: simulator -> agent -> page, checked in headless Chromium.

Starts mosquitto, a Keithley 2450 simulator, central and an agent with its status page on a free
loopback port, then:
  * HTTP client: /api/v1/status, /metrics (parsed), /healthz, /readyz, the SSE stream, the
    transaction log, the retained health topic, the reconnect action refused without / with a
    wrong token and accepted with the right one;
  * Chromium (selenium): the page loads, the values shown change, and each value shown equals the
    record central stored for that instrument, channel and timestamp (what the agent read from the
    simulator, every digit); the reconnect button is refused without the token and works with it;
    the page fits a phone-sized window; a screenshot is saved under --artifacts;
  * local users (issue 7): login, session cookie (HttpOnly, SameSite=Strict), CSRF token and
    roles over HTTP; in Chromium the pause action is refused without a login (401) and for a
    technician (403), works for an engineer (acquisition pauses: no new readings) and resume
    brings the readings back;
  * the CLI over the control socket and on the database: instruments, queue, pause/resume,
    flush, export, diag bundle (no secret inside), config check, version, security-check;
  * HTTPS: the agent restarted with a self-signed certificate serves the page and an action over
    TLS (Secure cookie, HSTS), and a non-loopback bind without TLS is refused by config check;
  * a recipe run (diode I-V on the simulator, two repeats, prompts at start and between the
    repeats): its progress bar appears and advances 0 -> 50 -> 100 %, the prompt is confirmed
    on the page (with the operator token, then as a logged-in technician), pause is refused while
    it runs (409 naming the run), its instrument says `in_run`; a paused agent's instruments say
    `paused`; acks_refused is on the page, in /api/v1/status and in /metrics.
Debian's python3-selenium drives /usr/bin/chromedriver; run with /usr/bin/python3.
"""
import argparse
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import System, free_port, wait_for  # noqa: E402

AGENT = "agent-page-1"
TOKEN = "tok-" + os.urandom(8).hex()
TECH_PW = "tech-" + os.urandom(6).hex()
ENG_PW = "eng-" + os.urandom(6).hex()


def http(port, path, method="GET", headers=None, timeout=5, body=None, scheme="http",
         ctx=None, full=False):
    req = urllib.request.Request(f"{scheme}://127.0.0.1:{port}{path}", method=method,
                                 headers=headers or {}, data=body)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
            out = (r.status, r.headers.get("Content-Type", ""), r.read().decode())
            return out + (r.headers,) if full else out
    except urllib.error.HTTPError as e:
        out = (e.code, e.headers.get("Content-Type", ""), e.read().decode())
        return out + (e.headers,) if full else out


def login(port, user, password, **kw):
    """(status, cookie "semilab_session=...", csrf, Set-Cookie header)."""
    code, _, body, headers = http(port, "/api/v1/login", "POST",
                                  {"Content-Type": "application/json"},
                                  body=json.dumps({"user": user, "password": password}).encode(),
                                  full=True, **kw)
    sc = headers.get("Set-Cookie", "")
    if code != 200:
        return code, None, None, sc
    return code, sc.split(";")[0], json.loads(body)["csrf"], sc


def cli(system, *args, stdin=None, timeout=60):
    return subprocess.run([os.path.join(system.bin, "semilab-agent"), *args],
                          input=stdin.encode() if stdin else None, capture_output=True,
                          timeout=timeout)


def status(port):
    code, _, body = http(port, "/api/v1/status")
    assert code == 200, f"/api/v1/status answered {code}: {body}"
    return json.loads(body)


def central_value(system, channel, ts_ns):
    """value_repr central stored for (smu1, channel, ts_ns), or None (not stored yet)."""
    path = system.path("central", "central.db")
    if not os.path.exists(path):
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        row = db.execute("SELECT value_repr FROM records WHERE agent_id = ? AND instrument = 'smu1'"
                         " AND channel = ? AND ts_ns = ?", (AGENT, channel, int(ts_ns))).fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        db.close()
    return row[0] if row else None


def parse_metrics(text):
    """Minimal strict reader: TYPE before samples, numeric values. Returns {name{labels}: v}."""
    types, out = {}, {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            assert typ in ("counter", "gauge", "histogram"), line
            assert name not in types, f"TYPE twice: {name}"
            types[name] = typ
            continue
        m = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)', line)
        assert m, f"bad metrics line: {line!r}"
        base = re.sub(r"_(bucket|sum|count)$", "", m.group(1))
        assert m.group(1) in types or base in types, f"sample before its TYPE: {line}"
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return types, out


def http_checks(system, port, conf):
    st = wait_for(lambda: (s := status(port))["instruments"][0]["channels"] and s, 30,
                  "a first reading on the page")
    assert st["agent_id"] == AGENT
    first = {c["channel"]: c for c in st["instruments"][0]["channels"]}
    wait_for(lambda: any(c["ts_ns"] != first[c["channel"]]["ts_ns"]
                         for c in status(port)["instruments"][0]["channels"]), 10, "new values")
    # The CLI still works and agrees with the page on the counters' identity.
    cli = system.agent_status(conf)
    assert cli["live"]["instruments"][0]["id"] == "smu1"
    assert "health" in cli["live"]

    code, ctype, text = http(port, "/metrics")
    assert code == 200 and ctype.startswith("text/plain; version=0.0.4"), (code, ctype)
    types, samples = parse_metrics(text)
    assert types["semilab_agent_records_produced_total"] == "counter"
    assert types["semilab_agent_instrument_poll_duration_seconds"] == "histogram"
    assert samples["semilab_agent_records_produced_total"] > 0
    assert samples['semilab_agent_instrument_connected{instrument="smu1"}'] == 1
    assert samples['semilab_agent_instrument_poll_duration_seconds_count{instrument="smu1"}'] > 0
    # Issue 9: acks refused by the sync layer (unsigned or foreign), documented name.
    assert types["semilab_agent_acks_refused_total"] == "counter"
    assert samples["semilab_agent_acks_refused_total"] == 0
    assert st["sync"]["acks_refused"] == 0 and st["acquisition"]["state"] == "running", st["sync"]
    assert samples["semilab_agent_acquisition_paused"] == 0

    assert http(port, "/healthz")[0] == 200
    wait_for(lambda: http(port, "/readyz")[0] == 200, 10, "/readyz 200")
    code, _, body = http(port, "/api/v1/instruments/smu1/transactions")
    tx = json.loads(body)["transactions"]
    assert code == 200 and tx and any(t["command"].startswith(":READ") or "?" in t["command"]
                                      for t in tx), body[:300]
    assert http(port, "/api/v1/instruments/nope/transactions")[0] == 404
    # A Host that is not loopback is refused (DNS rebinding).
    assert http(port, "/api/v1/status", headers={"Host": "evil.example"})[0] == 421

    # Server-sent events: the first event at once, the next within about a second.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        buf, end = b"", time.monotonic() + 5
        while buf.count(b"event: status\n") < 2 and time.monotonic() < end:
            buf += s.recv(65536)
        assert buf.startswith(b"HTTP/1.1 200 OK"), buf[:100]
        assert b"text/event-stream" in buf.split(b"\r\n\r\n")[0]
        assert buf.count(b"event: status\n") >= 2, "fewer than two events in 5 s"

    # The action: refused without a token and with a wrong one, accepted with the right one.
    url = "/api/v1/instruments/smu1/reconnect"
    assert http(port, url, "POST")[0] == 401
    assert http(port, url, "POST", {"Authorization": "Bearer nope"})[0] == 403
    assert status(port)["instruments"][0]["reconnects_requested"] == 0
    assert http(port, url, "POST", {"Authorization": f"Bearer {TOKEN}"})[0] == 202
    wait_for(lambda: status(port)["instruments"][0]["reconnects_requested"] == 1, 5,
             "the reconnect to happen")
    wait_for(lambda: status(port)["instruments"][0]["connected"], 10, "smu1 answering again")

    user_checks(port)

    # The retained health snapshot on the broker.
    out = subprocess.run(["mosquitto_sub", *system.mosquitto_client_args(), "-V", "mqttv5",
                          "-C", "1", "-W", "10", "-t", f"semilab/v1/lab-it/{AGENT}/health"],
                         capture_output=True, timeout=20)
    assert out.returncode == 0, f"no retained health message: {out.stderr.decode()}"
    h = json.loads(out.stdout)
    assert h["agent_id"] == AGENT and h["state"] in ("ok", "degraded", "failed"), h
    print(f"http checks passed (health {h['state']}, {len(tx)} transactions)")


def user_checks(port):
    """Login, cookie attributes, CSRF and roles over plain HTTP."""
    pause = "/api/v1/acquisition/pause"
    assert http(port, pause, "POST")[0] == 401
    assert login(port, "tech", "wrong-password")[0] == 401
    code, _, _ = http(port, "/api/v1/login", "POST", {"Content-Type": "text/plain"},
                      body=json.dumps({"user": "tech", "password": TECH_PW}).encode())
    assert code == 415, "a login must be JSON (no cross-site form)"
    code, cookie, csrf, sc = login(port, "tech", TECH_PW)
    assert code == 200, code
    assert "HttpOnly" in sc and "SameSite=Strict" in sc and "Secure" not in sc, sc
    # The cookie alone (a cross-site request would carry it) is refused; with the CSRF token a
    # technician may flush but not pause (engineer).
    assert http(port, "/api/v1/outbox/flush", "POST", {"Cookie": cookie})[0] == 403
    code, _, body = http(port, "/api/v1/outbox/flush", "POST",
                         {"Cookie": cookie, "X-CSRF-Token": csrf})
    assert code == 200 and json.loads(body)["by"] == "tech", body
    assert http(port, pause, "POST", {"Cookie": cookie, "X-CSRF-Token": csrf})[0] == 403
    code, _, body = http(port, "/api/v1/session", headers={"Cookie": cookie})
    assert code == 200 and json.loads(body)["role"] == "technician"
    assert http(port, "/api/v1/logout", "POST", {"Cookie": cookie})[0] == 204
    assert http(port, "/api/v1/session", headers={"Cookie": cookie})[0] == 401
    # Security headers on the page.
    code, _, _, h = http(port, "/", full=True)
    assert code == 200
    assert "frame-ancestors 'none'" in h["Content-Security-Policy"], h
    assert h["X-Frame-Options"] == "DENY" and h["X-Content-Type-Options"] == "nosniff"
    assert h["Referrer-Policy"] == "no-referrer"
    print("user checks passed (login, cookie, CSRF, roles, headers)")


def fresh_status(port):
    """The first snapshot written after this call (snapshots are written once a second)."""
    t = time.time_ns()
    return wait_for(lambda: (s := status(port)) and int(s["written_ns"]) > t and s, 5,
                    "a fresh status snapshot")


def assert_no_new_readings(port):
    """Paused: the count stays put between two snapshots taken after the pause."""
    n = fresh_status(port)["instruments"][0]["readings"]
    time.sleep(1.0)
    assert fresh_status(port)["instruments"][0]["readings"] == n, "readings went on while paused"


def assert_readings_again(port):
    """Resumed: new sessions, whose reading count grows (a snapshot from after the resume)."""
    n = fresh_status(port)["instruments"][0]["readings"]
    wait_for(lambda: status(port)["instruments"][0]["readings"] > n, 10, "readings after resume")


def acquisition(port):
    return json.loads(http(port, "/api/v1/acquisition")[2])["acquisition"]


def cli_checks(system, port, conf):
    """The CLI over the control socket and on the database, with the daemon running."""
    r = cli(system, "version")
    assert r.returncode == 0 and r.stdout.decode().startswith("semilab-agent "), r
    r = cli(system, "instruments", "-c", conf, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["instruments"][0]["id"] == "smu1"
    r = cli(system, "instruments", "-c", conf)
    assert r.returncode == 0 and b"smu1" in r.stdout, r
    r = cli(system, "queue", "-c", conf, "--json")
    assert r.returncode == 0, r.stderr
    q = json.loads(r.stdout)
    assert "telemetry" in q["classes"] and q["daemon"]["ok"], q
    assert q["retention"]["retain_hours"] == 168
    # pause / resume from the CLI: the page's state follows, readings stop and come back.
    assert cli(system, "pause", "-c", conf).returncode == 0
    assert acquisition(port) == "paused"
    r = cli(system, "status", "-c", conf)
    assert r.returncode == 0 and b"acquisition paused" in r.stdout, r.stdout
    assert system.agent_status(conf)["daemon"]["acquisition"] == "paused"
    # Health: the instrument is `paused` (who paused it), not stale or failed.
    h = wait_for(lambda: (x := json.loads(http(port, "/api/v1/health")[2]))["instruments"][0]
                 ["state"] == "paused" and x, 5, "smu1 paused in health")
    codes = [r["code"] for r in h["instruments"][0]["reasons"]]
    assert "paused" in codes and "stale" not in codes, h
    assert "by cli" in h["instruments"][0]["reasons"][codes.index("paused")]["text"], h
    _, samples = parse_metrics(http(port, "/metrics")[2])
    assert samples["semilab_agent_acquisition_paused"] == 1
    assert samples['semilab_agent_instrument_paused{instrument="smu1"}'] == 1
    assert_no_new_readings(port)
    assert cli(system, "resume", "-c", conf).returncode == 0
    assert acquisition(port) == "running"
    assert_readings_again(port)
    r = cli(system, "flush", "-c", conf, "--wait", "20", "--json")
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert json.loads(r.stdout)["pending"] == 0
    # Export: what the outbox and its retention window hold, every digit.
    r = cli(system, "export", "-c", conf, "--since", "10m", "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.decode().splitlines()]
    assert rows, "nothing exported"
    assert any(x["channel"] == "acquisition_paused" and x["value"] == "by cli" for x in rows)
    smu = [x for x in rows if x["instrument"] == "smu1"]
    stored = central_value(system, smu[0]["channel"], smu[0]["ts_ns"])
    assert stored == smu[0]["value"], (stored, smu[0])
    r = cli(system, "export", "-c", conf, "--since", "yesterday")
    assert r.returncode == 2 and b"RFC 3339" in r.stderr, r
    # config check: ok, and a broken file named with its line.
    assert cli(system, "config", "check", conf).returncode == 0
    bad = system.path("bad.toml")
    with open(bad, "w") as f:
        f.write('[agent]\nid = "a"\nsite = "s"\ndata_dir = "/tmp/x"\n\n[sync]\nzstd_level = 99\n')
    r = cli(system, "config", "check", bad)
    assert r.returncode == 1 and f"{bad}:7".encode() in r.stderr and b"zstd_level" in r.stderr, r
    public = system.path("public.toml")
    with open(public, "w") as f:
        f.write('[agent]\nid = "a"\nsite = "s"\ndata_dir = "/tmp/x"\n\n[status]\nbind = "0.0.0.0"\n')
    r = cli(system, "config", "check", public)
    assert r.returncode == 1 and b"status.bind" in r.stderr and b"HTTPS" in r.stderr, r
    # security-check: the configuration holds the operator token and is world-readable.
    os.chmod(conf, 0o644)
    r = cli(system, "security-check", "-c", conf)
    assert r.returncode == 1 and b"FAIL configuration file" in r.stdout, r.stdout
    os.chmod(conf, 0o600)
    r = cli(system, "security-check", "-c", conf, "--json")
    assert r.returncode == 0, r.stdout
    assert not json.loads(r.stdout)["insecure"]
    # diag bundle: a .tar.zst with the redacted configuration, the daemon's view, no secret.
    bundle = system.path("diag.tar.zst")
    r = cli(system, "diag", "bundle", "-c", conf, "-o", bundle, "--log", system.path(f"{AGENT}.log"))
    assert r.returncode == 0, r.stderr
    assert os.stat(bundle).st_mode & 0o777 == 0o600
    raw = subprocess.run(["zstd", "-dc", bundle], capture_output=True, check=True).stdout
    for name in (b"semilab-diag/config.toml", b"semilab-diag/transactions.json",
                 b"semilab-diag/database.json", b"semilab-diag/logs/" + AGENT.encode() + b".log"):
        assert name in raw, name
    assert TOKEN.encode() not in raw, "the operator token is in the diag bundle"
    assert b"<redacted>" in raw
    listing = subprocess.run(["tar", "--zstd", "-tf", bundle], capture_output=True, check=True)
    assert b"semilab-diag/daemon.json" in listing.stdout
    print("cli checks passed")


def https_checks(system, conf, artifacts):
    """The agent restarted with a self-signed certificate: page and an action over TLS."""
    import ssl
    crt, key = system.path("status.crt"), system.path("status.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", crt], check=True, capture_output=True)
    os.chmod(key, 0o600)
    system.agent.stop()
    port = free_port()
    with open(conf) as f:
        text = f.read()
    text = re.sub(r"port = \d+", f"port = {port}", text)
    text = text.replace("[status]\n", f'[status]\ntls_cert_file = "{crt}"\ntls_key_file = "{key}"\n')
    with open(conf, "w") as f:
        f.write(text)
    system.start_agent(conf, agent_id=AGENT)
    ctx = ssl.create_default_context(cafile=crt)
    wait_for(lambda: _port_open(port), 20, "the HTTPS page")
    code, _, body, h = wait_for(lambda: (r := _try(lambda: http(port, "/", scheme="https", ctx=ctx,
                                                                full=True))) and r, 20, "HTTPS /")
    assert code == 200 and "semilab-agent" in body
    assert "max-age" in h["Strict-Transport-Security"]
    # Plain HTTP on the TLS port gets no page.
    assert _try(lambda: http(port, "/healthz")) is None
    code, cookie, csrf, sc = login(port, "eng", ENG_PW, scheme="https", ctx=ctx)
    assert code == 200 and "Secure" in sc, sc
    code, _, body = http(port, "/api/v1/outbox/flush", "POST",
                         {"Cookie": cookie, "X-CSRF-Token": csrf}, scheme="https", ctx=ctx)
    assert code == 200 and json.loads(body)["by"] == "eng", body
    assert http(port, "/api/v1/outbox/flush", "POST", scheme="https", ctx=ctx)[0] == 401
    wait_for(lambda: json.loads(http(port, "/api/v1/status", scheme="https", ctx=ctx)[2])
             ["instruments"][0]["channels"], 20, "values over HTTPS")
    print("https checks passed")


def _try(f):
    try:
        return f()
    except (OSError, ValueError):
        return None


def browser(artifacts):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    o = webdriver.ChromeOptions()
    # Headless as root: no sandbox; no network beyond loopback (no component updates, no QUIC).
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", "--disable-extensions", "--window-size=390,844",
              "--user-data-dir=" + tempfile.mkdtemp(prefix="semilab-chromium-")]:
        o.add_argument(a)
    o.binary_location = "/usr/bin/chromium"
    # Debian 12 ships selenium 4.8 (log_path; later versions call it log_output).
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver",
                                         log_path=os.path.join(artifacts, "chromedriver.log")),
                         options=o)
    d.set_page_load_timeout(20)
    return d


def click(d, el):
    """Clicks el scrolled to the middle of the window (the sticky header covers the top)."""
    d.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
    el.click()


def shown_values(d):
    """(channel, ts_ns, text) of every value cell on smu1's card."""
    # One script: the rows are replaced on every update, element handles would go stale.
    return [tuple(v) for v in d.execute_script(
        "return [...document.querySelectorAll('[data-instrument=\"smu1\"] td.value')]"
        ".map(c => [c.dataset.channel, c.dataset.ts, c.textContent]);")]


def browser_login(d, user, password):
    d.find_element("id", "login-user").clear()
    d.find_element("id", "login-user").send_keys(user)
    d.find_element("id", "login-password").send_keys(password)
    click(d, d.find_element("id", "login"))


def browser_user_checks(d, port, result):
    """Pause refused without a login (401) and for a technician (403); an engineer pauses (no
    new readings) and resumes (readings again)."""
    click(d, d.find_element("id", "pause"))
    wait_for(lambda: "pause refused (401)" in result.text, 5, "pause refused without a login")
    assert acquisition(port) == "running"
    browser_login(d, "tech", "wrong-password")
    wait_for(lambda: "login refused (401)" in result.text, 10, "a wrong password refused")
    d.find_element("id", "login-password").clear()
    browser_login(d, "tech", TECH_PW)
    wait_for(lambda: d.find_element("id", "session-user").text == "tech", 10, "tech logged in")
    click(d, d.find_element("id", "pause"))
    wait_for(lambda: "pause refused (403)" in result.text, 5, "pause refused for a technician")
    assert acquisition(port) == "running"
    click(d, d.find_element("id", "flush"))
    wait_for(lambda: "flush: done by tech" in result.text, 5, "flush by the technician")
    click(d, d.find_element("id", "logout"))
    wait_for(lambda: d.find_element("id", "login-form").is_displayed(), 5, "the login form again")
    browser_login(d, "eng", ENG_PW)
    wait_for(lambda: d.find_element("id", "session-user").text == "eng", 10, "eng logged in")
    # The session survives a reload (cookie + GET /api/v1/session gives the CSRF token again).
    d.refresh()
    wait_for(lambda: d.find_element("id", "session-user").text == "eng", 10, "the login kept")
    result = d.find_element("id", "action-result")
    click(d, d.find_element("id", "pause"))
    wait_for(lambda: "pause: done by eng" in result.text, 5, "pause by the engineer")
    wait_for(lambda: d.find_element("id", "acquisition").text == "paused", 5, "paused shown")
    assert acquisition(port) == "paused"
    assert_no_new_readings(port)
    wait_for(lambda: "acquisition_paused by eng" in d.find_element("id", "events").text, 5,
             "the pause in the recent events")
    click(d, d.find_element("id", "resume"))
    wait_for(lambda: "resume: done by eng" in result.text, 5, "resume by the engineer")
    wait_for(lambda: d.find_element("id", "acquisition").text == "running", 5, "running shown")
    assert_readings_again(port)
    click(d, d.find_element("id", "logout"))
    wait_for(lambda: d.find_element("id", "login-form").is_displayed(), 5, "logged out")
    print("browser user checks passed (401 anonymous, 403 technician, engineer paused/resumed)")


RUN_RECIPE = """[recipe]
format = 1
name = "diode-page"
version = "1.0.0"
method = "diode-iv"
[roles.smu]
kind = "source-measure"
source = "current"
compliance = 2.0
nplc = 0.01
[sweep]
role = "smu"
mode = "log"
start = 1e-9
stop = 1e-2
points = 41
repeats = 2
[[prompt]]
at = "start"
text = "Land the probes on the diode"
[[prompt]]
at = "repeat"
text = "Move the probes to the second diode"
"""


def run_view(d, run_id):
    """(state, progress %, prompt seq, prompt shown, confirm visible) of the run's page entry."""
    return d.execute_script(
        "const li=document.querySelector('li.run[data-run=\"'+arguments[0]+'\"]');"
        "if(!li)return null;const b=li.querySelector('.progress');"
        "return [li.dataset.state, Number(b.getAttribute('aria-valuenow')), Number(li.dataset.promptSeq),"
        "li.querySelector('.run-prompt').hidden?'':li.querySelector('.run-prompt').textContent,"
        "!li.querySelector('.confirm').hidden, b.firstElementChild.style.width];", run_id)


def run_checks(d, port, result):
    """A run with two repeats and two prompts: the bar appears and advances; confirm on the page
    with the token, then as a logged-in technician; pause refused meanwhile."""
    code, _, body = http(port, "/api/v1/runs", "POST",
                         {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
                         body=json.dumps({"recipe": RUN_RECIPE, "recipe_file": "diode-page.toml",
                                          "metadata": {"sample": "S-page"},
                                          "bindings": {"smu": "smu1"}}).encode())
    assert code == 201, (code, body)
    run_id = json.loads(body)["run_id"]
    seen = []

    def view():
        v = run_view(d, run_id)
        if v:
            seen.append(v[1])
        return v

    v = wait_for(lambda: (x := view()) and x[0] == "waiting" and x, 15, "the run waiting on the page")
    assert v[1] == 0 and v[2] == 1 and "Land the probes" in v[3] and v[4], v
    # While the run owns smu1: pause is refused naming it; health says in_run, not stale.
    code, _, body = http(port, "/api/v1/acquisition/pause", "POST", {"Authorization": f"Bearer {TOKEN}"})
    assert code == 409 and run_id in body, (code, body)
    h = json.loads(http(port, "/api/v1/health")[2])
    assert "in_run" in [r["code"] for r in h["instruments"][0]["reasons"]], h
    _, samples = parse_metrics(http(port, "/metrics")[2])
    assert samples["semilab_agent_runs_active"] == 1
    li = f'li.run[data-run="{run_id}"]'
    click(d, d.find_element("css selector", li + " button.confirm"))
    wait_for(lambda: f"confirm {run_id}: accepted" in result.text, 5, "the confirm accepted")
    v = wait_for(lambda: (x := view()) and x[0] == "waiting" and x[2] == 2 and x, 30,
                 "the repeat prompt")
    assert v[1] == 50 and "second diode" in v[3], v
    # The second prompt confirmed by a logged-in technician (session cookie + CSRF, no token).
    tok = d.find_element("id", "token")
    tok.clear()
    click(d, d.find_element("id", "token-save"))
    browser_login(d, "tech", TECH_PW)
    wait_for(lambda: d.find_element("id", "session-user").text == "tech", 10, "tech logged in")
    click(d, d.find_element("css selector", li + " button.confirm"))
    wait_for(lambda: f"confirm {run_id}: accepted" in result.text and "tech" in
             d.find_element("id", "session-user").text, 5, "the technician's confirm accepted")
    v = wait_for(lambda: (x := view()) and x[0] in ("completed", "failed") and x, 30, "the run's end")
    assert v[0] == "completed" and v[1] == 100 and not v[4], v
    # The bar advanced: never backwards, 0 -> 50 -> 100 at least.
    assert seen == sorted(seen) and {0, 50, 100} <= set(seen), seen
    overflow = d.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"with the runs panel the page is {overflow}px wider than a phone"
    click(d, d.find_element("id", "logout"))
    wait_for(lambda: d.find_element("id", "login-form").is_displayed(), 5, "logged out")
    tok = d.find_element("id", "token")
    tok.send_keys(TOKEN)
    click(d, d.find_element("id", "token-save"))
    print(f"run checks passed ({run_id}: progress seen {sorted(set(seen))})")


def browser_checks(system, port, artifacts):
    d = browser(artifacts)
    try:
        d.get(f"http://127.0.0.1:{port}/")
        assert d.title == "semilab-agent"
        wait_for(lambda: shown_values(d), 20, "values on smu1's card")
        assert d.find_element("id", "agent").text == AGENT
        seen = {}
        end = time.monotonic() + 15
        while len({ts for _, ts, _ in seen.values()}) < 3 and time.monotonic() < end:
            for ch, ts, text in shown_values(d):
                seen[(ch, ts)] = (ch, ts, text)
            time.sleep(0.3)
        stamps = {ts for _, ts, _ in seen.values()}
        assert len(stamps) >= 3, f"the values shown did not change: {seen}"
        texts = {text for _, _, text in seen.values()}
        assert len(texts) >= 2, f"the same value text all along: {texts}"
        # Each value shown is the record central stored from the agent's outbox, every digit.
        for ch, ts, text in seen.values():
            stored = wait_for(lambda: central_value(system, ch, ts), 30,
                              f"central to store {ch}@{ts}")
            assert stored == text, f"{ch}@{ts}: page shows {text!r}, central stored {stored!r}"
        # The counters shown change and match the agent's own JSON closely.
        p1 = int(d.find_element("id", "produced").text)
        wait_for(lambda: int(d.find_element("id", "produced").text) > p1, 10, "produced to grow")
        assert abs(int(d.find_element("id", "produced").text) -
                   status(port)["counters"]["produced"]) <= 50
        canvas_ok = d.execute_script(
            "const c=document.querySelector('[data-instrument=\"smu1\"] canvas');"
            "const g=c.getContext('2d').getImageData(0,0,c.width,c.height).data;"
            "for(let i=3;i<g.length;i+=4){if(g[i]!==0)return true}return false;")
        assert canvas_ok, "the plot is empty"
        # Readable on a phone: nothing wider than the 390 px window.
        overflow = d.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"the page is {overflow}px wider than a phone screen"

        result = d.find_element("id", "action-result")
        browser_user_checks(d, port, result)
        result = d.find_element("id", "action-result")  # the page was reloaded
        button = d.find_element("css selector", '[data-instrument="smu1"] button.reconnect')
        before = status(port)["instruments"][0]["reconnects_requested"]
        click(d, button)
        wait_for(lambda: "refused (401)" in result.text, 5, "refusal without a token")
        d.find_element("id", "token").send_keys("wrong-token")
        click(d, d.find_element("id", "token-save"))
        click(d, button)
        wait_for(lambda: "refused (403)" in result.text, 5, "refusal with a wrong token")
        assert status(port)["instruments"][0]["reconnects_requested"] == before
        tok = d.find_element("id", "token")
        tok.clear()
        tok.send_keys(TOKEN)
        click(d, d.find_element("id", "token-save"))
        click(d, button)
        wait_for(lambda: "accepted" in result.text, 5, "the action with the token")
        wait_for(lambda: status(port)["instruments"][0]["reconnects_requested"] == before + 1, 5,
                 "the reconnect counted")
        wait_for(lambda: "reconnect requested" in d.find_element("id", "events").text, 5,
                 "the action in the recent events")
        assert d.find_element("id", "acks-refused").text == "0"
        run_checks(d, port, result)
        click(d, d.find_element("css selector", '[data-instrument="smu1"] button.tx'))
        wait_for(lambda: len(d.find_elements("css selector", "#tx-table tbody tr")) > 0, 5,
                 "the transaction table")
        time.sleep(1.2)  # one more live update before the picture
        shot = os.path.join(artifacts, "status_page.png")
        d.set_window_size(390, 2000)
        d.execute_script("window.scrollTo(0, 0)")
        assert d.save_screenshot(shot), "screenshot failed"
        print(f"browser checks passed; screenshot {shot} ({len(seen)} values compared)")
    finally:
        d.quit()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--artifacts", required=True)
    ap.add_argument("--no-browser", action="store_true", help="HTTP checks only")
    args = ap.parse_args()
    os.makedirs(args.artifacts, exist_ok=True)
    system = System(args.bin_dir)
    try:
        system.start_broker()
        _, sim_port = system.start_sim()
        system.start_central()
        port = free_port()
        conf = system.write_agent_config(sim_port, interval=0.25, agent_id=AGENT)
        with open(conf, "a") as f:
            f.write(f'\n[status]\nport = {port}\noperator_token = "{TOKEN}"\nhealth_period_s = 5\n')
        # Local users, created before the daemon starts (the CLI works on the database).
        for user, role, pw in (("tech", "technician", TECH_PW), ("eng", "engineer", ENG_PW)):
            r = cli(system, "user", "add", user, "--role", role, "-c", conf, "--password-stdin",
                    stdin=pw + "\n")
            assert r.returncode == 0, r.stderr
        r = cli(system, "user", "add", "x", "--role", "engineer", "-c", conf, stdin="short\n")
        assert r.returncode == 1 and b"too short" in r.stderr, r
        system.start_agent(conf, agent_id=AGENT)
        wait_for(lambda: http(port, "/healthz")[0] == 200 if _port_open(port) else False, 20,
                 "the status page")
        http_checks(system, port, conf)
        if not args.no_browser:
            browser_checks(system, port, args.artifacts)
        cli_checks(system, port, conf)
        https_checks(system, conf, args.artifacts)
        with open(system.path(f"{AGENT}.log")) as f:
            log = f.read()
        for secret in (TOKEN, TECH_PW, ENG_PW):
            assert secret not in log, "a secret appeared in the agent's log"
        return 0
    except Exception:
        traceback.print_exc()
        system.dump_logs()
        return 1
    finally:
        system.stop()


def _port_open(port):
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


if __name__ == "__main__":
    sys.exit(main())
