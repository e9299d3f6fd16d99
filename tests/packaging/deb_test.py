#!/usr/bin/python3
"""Builds the .deb packages of a build tree with cpack and inspects them (dpkg-deb -c/-I/-f).

Checks: the three packages exist; each holds its files (binary, /etc/semilab config as a
conffile, systemd unit, udev rule, profiles); Depends carries the shared libraries found by
dpkg-shlibdeps plus adduser; the maintainer scripts pass `sh -n` and are idempotent (run twice
against stub commands, the second run creates nothing); the shipped configurations pass the
shipped binaries' own `check-config`.

Installing them is packaging_install (install_test.py): `dpkg -i` into an overlay snapshot of /,
reusing the packages this test leaves in --out.
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, **kw)


EXPECT = {
    "semilab-agent": {
        "files": ["./usr/bin/semilab-agent", "./etc/semilab/agent.toml",
                  "./lib/systemd/system/semilab-agent.service", "./lib/udev/rules.d/60-semilab.rules",
                  "./usr/share/semilab/profiles/modbus/eurotherm3200.toml",
                  "./usr/share/doc/semilab-agent/OPERATIONS.md",
                  "./usr/share/doc/semilab-agent/agent-cli.md",
                  "./usr/share/bash-completion/completions/semilab-agent",
                  "./usr/share/doc/semilab-agent/copyright",
                  "./usr/share/doc/semilab-agent/changelog.Debian.gz",
                  "./usr/share/lintian/overrides/semilab-agent"],
        "conffiles": ["/etc/semilab/agent.toml"],
        "depends": ["adduser", "libsqlite3-0", "libpaho-mqttpp3", "libmodbus5", "libusb-1.0-0",
                    "libzstd1", "libsystemd0", "libc6"],
        "scripts": ["postinst", "prerm", "postrm"],
    },
    "semilab-central": {
        "files": ["./usr/bin/semilab-central", "./etc/semilab/central.toml",
                  "./lib/systemd/system/semilab-central.service",
                  "./usr/share/semilab/prometheus/semilab-alerts.yml"],
        "conffiles": ["/etc/semilab/central.toml"],
        "depends": ["adduser", "libsqlite3-0", "libpq5", "libssl3", "libsystemd0", "libc6"],
        "scripts": ["postinst", "prerm", "postrm"],
    },
    "semilab-sim": {
        "files": ["./usr/bin/semilab-sim"],
        "conffiles": [],
        "depends": ["libc6"],
        "scripts": [],
    },
}

STUB = r"""#!/bin/sh
# stub of {name}: logs the call; getent/id answer from the state file.
echo "{name} $*" >> "$STUB_LOG"
case "{name}" in
  getent) grep -qx "$1 $2" "$STUB_STATE"; exit $? ;;
  addgroup) echo "group $3" >> "$STUB_STATE"; [ "$3" = semilab ] || echo "group $(eval echo \$$#)" >> "$STUB_STATE" ;;
  adduser)
    if [ "$1" = "--system" ]; then
      for a; do last=$a; done; echo "passwd $last" >> "$STUB_STATE"
    else
      for a; do last=$a; done; echo "member $last" >> "$STUB_STATE"
    fi ;;
  id) if grep -qx "member dialout" "$STUB_STATE"; then echo "semilab dialout"; else echo semilab; fi ;;
esac
exit 0
"""


def script_idempotent(control_dir, pkg):
    """Runs postinst configure twice with every side effect stubbed; counts what it created."""
    with tempfile.TemporaryDirectory(prefix="semilab-stub-") as d:
        bindir = os.path.join(d, "bin")
        os.makedirs(bindir)
        for name in ["getent", "adduser", "addgroup", "install", "chown", "chmod", "udevadm",
                     "systemctl", "id", "deb-systemd-helper", "deb-systemd-invoke"]:
            p = os.path.join(bindir, name)
            with open(p, "w") as f:
                f.write(STUB.replace("{name}", name))
            os.chmod(p, 0o755)
        state, log = os.path.join(d, "state"), os.path.join(d, "log")
        open(state, "w").write("group dialout\n")
        # The stubs come first on PATH; nothing here may touch the host's users or units.
        env = dict(os.environ, PATH=f"{bindir}:/usr/bin:/bin", STUB_STATE=state, STUB_LOG=log)
        postinst = os.path.join(control_dir, "postinst")
        r1 = run(["sh", postinst, "configure", ""], env=env)
        first = open(log).read().splitlines()
        open(log, "w").close()
        r2 = run(["sh", postinst, "configure", "0.1.0-1"], env=env)
        second = open(log).read().splitlines()
        check(r1.returncode == 0 and r2.returncode == 0, f"{pkg}: postinst runs ({r1.stderr}{r2.stderr})")
        created = [c for c in first if c.startswith(("adduser --system", "addgroup"))]
        check(len(created) == 2, f"{pkg}: first postinst creates the semilab group and user: {created}")
        again = [c for c in second if c.startswith(("adduser", "addgroup"))]
        check(not again, f"{pkg}: second postinst creates nothing: {again}")
        if pkg == "semilab-agent":
            check(any(c == "adduser --quiet semilab dialout" for c in first),
                  "semilab-agent: postinst adds semilab to dialout")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    shutil.rmtree(a.out, ignore_errors=True)
    os.makedirs(a.out)
    r = run(["cpack", "--config", os.path.join(a.build_dir, "CPackConfig.cmake"), "-B", a.out])
    print(r.stdout[-3000:], r.stderr[-3000:])
    check(r.returncode == 0, "cpack builds the packages")
    debs = {os.path.basename(p).split("_")[0]: p for p in glob.glob(os.path.join(a.out, "*.deb"))}
    check(sorted(debs) == sorted(EXPECT), f"packages: {sorted(debs)}")
    for pkg, exp in EXPECT.items():
        deb = debs.get(pkg)
        if not deb:
            continue
        files = run(["dpkg-deb", "-c", deb]).stdout
        names = [line.split()[-1] if " -> " not in line else line.split()[-3]
                 for line in files.splitlines()]
        for f in exp["files"]:
            check(f in names, f"{pkg}: contains {f}")
        info = run(["dpkg-deb", "-I", deb]).stdout
        print(info)
        depends = run(["dpkg-deb", "-f", deb, "Depends"]).stdout.strip()
        for dep in exp["depends"]:
            check(dep in depends, f"{pkg}: Depends names {dep} ({depends})")
        with tempfile.TemporaryDirectory(prefix="semilab-deb-") as d:
            ctl, root = os.path.join(d, "DEBIAN"), os.path.join(d, "root")
            check(run(["dpkg-deb", "-e", deb, ctl]).returncode == 0, f"{pkg}: control extracts")
            check(run(["dpkg-deb", "-x", deb, root]).returncode == 0, f"{pkg}: data extracts")
            conff = open(os.path.join(ctl, "conffiles")).read().split() \
                if os.path.exists(os.path.join(ctl, "conffiles")) else []
            check(conff == exp["conffiles"], f"{pkg}: conffiles {conff}")
            for s in exp["scripts"]:
                p = os.path.join(ctl, s)
                check(os.path.exists(p) and os.access(p, os.X_OK), f"{pkg}: {s} present, executable")
                if os.path.exists(p):
                    check(run(["sh", "-n", p]).returncode == 0, f"{pkg}: {s} passes sh -n")
            if "postinst" in exp["scripts"]:
                body = open(os.path.join(ctl, "postinst")).read()
                check("adduser --system" in body, f"{pkg}: postinst creates the system user")
                script_idempotent(ctl, pkg)
            # The shipped configuration passes the shipped binary's own validation.
            comp = pkg.split("-")[1]
            if comp in ("agent", "central"):
                binary = os.path.join(root, "usr/bin", pkg)
                conf = os.path.join(root, "etc/semilab", f"{comp}.toml")
                env = dict(os.environ,
                           SEMILAB_MODBUS_PROFILES=os.path.join(root, "usr/share/semilab/profiles/modbus"))
                r = run([binary, "check-config", "--config", conf], env=env)
                check(r.returncode == 0, f"{pkg}: shipped {comp}.toml passes check-config "
                      f"({r.stdout.strip()} {r.stderr.strip()})")
            if pkg == "semilab-agent":
                rules = open(os.path.join(root, "lib/udev/rules.d/60-semilab.rules")).read()
                check("fe03" in rules and 'GROUP="semilab"' in rules,
                      "semilab-agent: udev rule grants USBTMC (class fe/03) to group semilab")
    if failures:
        print(f"{len(failures)} failure(s)")
        sys.exit(1)
    print("packages ok:", ", ".join(sorted(debs.values())))


if __name__ == "__main__":
    main()
