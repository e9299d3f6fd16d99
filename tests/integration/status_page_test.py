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
    the page fits a phone-sized window; a screenshot is saved under --artifacts.
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


def http(port, path, method="GET", headers=None, timeout=5):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


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

    # The retained health snapshot on the broker.
    out = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(system.broker_port),
                          "-V", "mqttv5", "-C", "1", "-W", "10", "-t",
                          f"semilab/v1/lab-it/{AGENT}/health"], capture_output=True, timeout=20)
    assert out.returncode == 0, f"no retained health message: {out.stderr.decode()}"
    h = json.loads(out.stdout)
    assert h["agent_id"] == AGENT and h["state"] in ("ok", "degraded", "failed"), h
    print(f"http checks passed (health {h['state']}, {len(tx)} transactions)")


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
        system.start_agent(conf, agent_id=AGENT)
        wait_for(lambda: http(port, "/healthz")[0] == 200 if _port_open(port) else False, 20,
                 "the status page")
        http_checks(system, port, conf)
        if not args.no_browser:
            browser_checks(system, port, args.artifacts)
        with open(system.path(f"{AGENT}.log")) as f:
            log = f.read()
        assert TOKEN not in log, "the operator token appeared in the agent's log"
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
