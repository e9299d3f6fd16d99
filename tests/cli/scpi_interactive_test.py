#!/usr/bin/python3
"""`semilab-agent scpi RESOURCE` on a terminal: a prompt, replies, line editing and a history file
kept across sessions. Runs the agent in a pseudo-terminal against a semilab-sim process."""
import os
import pty
import select
import subprocess
import sys
import tempfile
import time

bin_dir = sys.argv[1]
sim = subprocess.Popen([os.path.join(bin_dir, "semilab-sim"), "--model", "keithley2450",
                        "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
try:
    first = sim.stdout.readline().decode().strip()
    assert first.startswith("listening 127.0.0.1:"), first
    resource = "TCPIP0::127.0.0.1::%s::SOCKET" % first.rsplit(":", 1)[1]
    state = tempfile.mkdtemp()
    env = dict(os.environ, XDG_STATE_HOME=state)

    def session(lines):
        pid, fd = pty.fork()
        if pid == 0:
            os.execve(os.path.join(bin_dir, "semilab-agent"),
                      ["semilab-agent", "scpi", resource, "--timeout", "2"], env)
        out = b""

        def pump(seconds, until=None):
            # Reads until `until` appears in what arrives from now on (or the time is up).
            nonlocal out
            start = len(out)
            end = time.time() + seconds
            while time.time() < end and not (until and until in out[start:]):
                r, _, _ = select.select([fd], [], [], 0.05)
                if r:
                    try:
                        out += os.read(fd, 4096)
                    except OSError:
                        return
        pump(5, b"scpi> ")
        for line in lines:
            os.write(fd, line + b"\r")
            pump(5, b"scpi> ")
            out += b"\n--\n"
        os.write(fd, b"\x04")  # Ctrl-D ends the session
        pump(2)
        _, status = os.waitpid(pid, 0)
        return out.decode(errors="replace"), os.waitstatus_to_exitcode(status)

    out, code = session([b":SYST:NONC? first", b":SOUR:VOLT 0.5", b":SOUR:VOLT?"])
    assert code == 0, (code, out)
    assert "first\r\n" in out, out
    assert "5.000000E-01" in out, out
    history = os.path.join(state, "semilab", "scpi_history")
    text = open(history).read()
    assert ":SYST:NONC?\\040first" in text and ":SOUR:VOLT?" in text, text

    # A new session starts with that history: Up arrow (ESC [ A) recalls the last command.
    out, code = session([b"\x1b[A"])
    assert code == 0, (code, out)
    assert "5.000000E-01" in out.split("--")[0], out
    print("ok: prompt, replies, history file, history recalled in a new session")
finally:
    sim.terminate()
    sim.wait(5)
