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
        # Generous waits: under ASan on a loaded machine the agent may take seconds to start, and
        # input typed before the line editor has set up the terminal is flushed by it.
        pump(30, b"scpi> ")
        assert b"scpi> " in out, out
        for line in lines:
            os.write(fd, line + b"\r")
            pump(15, b"scpi> ")
            out += b"\n--\n"
        # Ctrl-D ends the session. Typed ahead while the terminal is still in cooked mode (the
        # line editor switches to raw mode around its prompt), the kernel's line discipline turns
        # it into an end-of-file mark the editor never sees: as with a person at a terminal, a
        # second Ctrl-D then ends it.
        end = time.time() + 30
        status = None
        while status is None and time.time() < end:
            os.write(fd, b"\x04")
            for _ in range(3):
                pump(1)
                done, st = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = st
                    break
        if status is None:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError("the session did not end on Ctrl-D: " + out.decode(errors="replace"))
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
