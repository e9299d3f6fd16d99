#!/usr/bin/python3
"""Installs the .deb packages into a disposable copy of this machine and runs what they installed.

The root is an overlay snapshot of / (overlayfs: / read-only below, a temp directory on top) in a
private mount namespace (`unshare -m`), with /dev, /proc and /sys bound in and a chroot into it:
dpkg, the maintainer scripts (adduser, deb-systemd-helper, ...) and the binaries run against a
real Debian, and every change they make lands in the temp directory, never on this machine.
(debootstrap would need the network and minutes per run; the snapshot takes a second.)

Then, in the snapshot: `dpkg -i` of the three packages (the ones packaging_deb built: reused),
the `semilab` system user and group (home /var/lib/semilab, no login shell, in dialout), the
conffiles registered with dpkg, /etc/semilab/*.toml root:semilab 0640, the udev rule, the units
enabled, the installed binaries run (`version`, `--help`, `check-config` of the shipped configs
as the semilab user), a reinstall (the upgrade path of the scripts), then remove and purge (data
and user kept, conffiles gone on purge). With --lintian-only (test packaging_lintian): lintian
on the packages, no error or warning beyond the overrides shipped in packaging/debian/lintian
(each one says why).
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
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, **kw)


def run_lintian(debs, lintian):
    r = run([lintian, "--tag-display-limit", "0", "--fail-on", "error,warning",
             "--show-overrides"] + list(debs))
    print(r.stdout, r.stderr[-1000:])
    bad = [l for l in r.stdout.splitlines() if l[:2] in ("E:", "W:")]
    # (With --show-overrides lintian's exit status counts overridden tags too: judge the tags.)
    check(not bad, f"lintian: no error or warning ({bad})")
    overridden = [l for l in r.stdout.splitlines() if l.startswith("O:")]
    tags = sorted({l.split()[2] for l in overridden})
    check(tags == ["initial-upload-closes-no-bugs", "no-manual-page"] and len(overridden) == 6,
          f"lintian ran; only the overrides packaging/debian/lintian/ explains: {overridden}")


def inner(debs):
    """Runs inside `unshare -m` (a private mount namespace, as root)."""
    base = tempfile.mkdtemp(prefix="semilab-install-")
    upper, work, root = (os.path.join(base, d) for d in ("upper", "work", "root"))
    for d in (upper, work, root):
        os.makedirs(d)
    try:
        # Nothing mounted here may propagate back to the host namespace.
        subprocess.run(["mount", "--make-rprivate", "/"], check=True)
        r = run(["mount", "-t", "overlay", "overlay", "-o",
                 f"lowerdir=/,upperdir={upper},workdir={work}", root])
        check(r.returncode == 0, f"overlay snapshot of / mounted ({r.stderr.strip()})")
        if r.returncode:
            return
        for fs_dir in ("dev", "proc", "sys"):
            subprocess.run(["mount", "--rbind", f"/{fs_dir}", os.path.join(root, fs_dir)], check=True)
        # A fresh /run and /tmp: no systemd or udev "running" in the snapshot, so the scripts take
        # their chroot path (deb-systemd-helper records, nothing is started).
        for fs_dir in ("run", "tmp"):
            subprocess.run(["mount", "-t", "tmpfs", "tmpfs", os.path.join(root, fs_dir)], check=True)
        os.makedirs(os.path.join(root, "run/lock"), exist_ok=True)
        pkgdir = os.path.join(root, "tmp/debs")
        os.makedirs(pkgdir)
        for d in debs:
            shutil.copy(d, pkgdir)
        names = sorted(os.path.basename(d) for d in debs)

        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root",
               "DEBIAN_FRONTEND": "noninteractive"}
        # Sanitizer builds: the binaries run as in the build tree (leak reports off: CLI exits).
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
            if k in os.environ:
                env[k] = os.environ[k]
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":detect_leaks=0"

        def sh(cmd, user=None):
            argv = ["chroot", root]
            if user:
                argv += ["runuser", "-u", user, "--"]
            return run(argv + ["/bin/sh", "-c", cmd], env=env)

        check(sh("! getent passwd semilab").returncode == 0,
              "snapshot starts without a semilab user (a clean install)")
        r = sh("dpkg -i " + " ".join("/tmp/debs/" + n for n in names))
        print(r.stdout[-2000:], r.stderr[-2000:])
        check(r.returncode == 0, "dpkg -i of the three packages")
        r = sh("dpkg-query -W -f='${Package} ${Status}\\n' semilab-agent semilab-central semilab-sim")
        check(r.stdout.count("install ok installed") == 3, f"installed: {r.stdout.strip()}")

        r = sh("getent passwd semilab")
        fields = r.stdout.strip().split(":")
        check(len(fields) == 7 and int(fields[2]) < 1000 and fields[5] == "/var/lib/semilab"
              and fields[6] == "/usr/sbin/nologin", f"system user semilab: {r.stdout.strip()}")
        r = sh("id -nG semilab")
        check("semilab" in r.stdout.split() and "dialout" in r.stdout.split(),
              f"semilab in groups semilab, dialout: {r.stdout.strip()}")
        r = sh("stat -c '%U:%G %a' /var/lib/semilab /var/lib/semilab/agent /var/lib/semilab/central")
        check(r.stdout.split("\n")[:3] == ["root:semilab 755", "semilab:semilab 750",
                                           "semilab:semilab 750"], f"state dirs: {r.stdout.split()}")
        for comp in ("agent", "central"):
            r = sh(f"dpkg-query -W -f='${{Conffiles}}' semilab-{comp}")
            check(f"/etc/semilab/{comp}.toml " in r.stdout, f"semilab-{comp}: conffile registered "
                  f"({r.stdout.strip()})")
            r = sh(f"stat -c '%U:%G %a' /etc/semilab/{comp}.toml")
            check(r.stdout.strip() == "root:semilab 640", f"{comp}.toml root:semilab 0640 ({r.stdout.strip()})")
            r = sh(f"test -L /etc/systemd/system/multi-user.target.wants/semilab-{comp}.service")
            check(r.returncode == 0, f"semilab-{comp}.service enabled (multi-user.target.wants)")
        r = sh("cat /lib/udev/rules.d/60-semilab.rules")
        check('GROUP="semilab"' in r.stdout, "udev rule installed")
        r = sh("test -f /usr/share/doc/semilab-agent/copyright && "
               "zcat /usr/share/doc/semilab-agent/changelog.Debian.gz | head -1")
        check(r.stdout.startswith("semilab ("), f"copyright and changelog installed ({r.stdout.strip()})")

        # The installed binaries, run by the system user where the service would run them.
        # (No `version` subcommand exists: `models` and `config-reference` run real code offline.)
        r = sh("/usr/bin/semilab-agent models", user="semilab")
        check(r.returncode == 0 and "keithley2450" in r.stdout.lower(),
              f"semilab-agent models lists the drivers ({r.stderr[-300:]})")
        r = sh("/usr/bin/semilab-central config-reference", user="semilab")
        check(r.returncode == 0 and "[ingest]" in r.stdout,
              f"semilab-central config-reference ({r.stderr[-300:]})")
        for b in ("semilab-agent", "semilab-central", "semilab-sim"):
            r = sh(f"/usr/bin/{b} --help", user="semilab")
            check(r.returncode == 0 and "Usage" in r.stdout + r.stderr, f"{b} --help ({r.stderr[-300:]})")
        for comp in ("agent", "central"):
            r = sh(f"/usr/bin/semilab-{comp} check-config --config /etc/semilab/{comp}.toml", user="semilab")
            check(r.returncode == 0, f"semilab-{comp} check-config of the shipped config, as semilab "
                  f"({r.stdout.strip()} {r.stderr.strip()[-400:]})")
        r = sh("/usr/bin/semilab-agent check-config --config /etc/semilab/agent.toml", user="nobody")
        check(r.returncode != 0, "agent.toml unreadable by other users (it may hold secrets)")
        r = sh("systemd-analyze verify /lib/systemd/system/semilab-agent.service "
               "/lib/systemd/system/semilab-central.service")
        check(r.returncode == 0, f"installed units verify in the installed tree ({r.stderr.strip()[-400:]})")

        # A changed conffile survives a reinstall (the upgrade path of the scripts).
        sh("echo '# local edit' >> /etc/semilab/agent.toml")
        r = sh("dpkg -i --force-confold " + " ".join("/tmp/debs/" + n for n in names))
        check(r.returncode == 0, f"reinstall (upgrade path) ({r.stderr[-500:]})")
        r = sh("tail -1 /etc/semilab/agent.toml; stat -c '%U:%G %a' /etc/semilab/agent.toml")
        check(r.stdout.split("\n")[:2] == ["# local edit", "root:semilab 640"],
              f"edited conffile kept, still 0640 ({r.stdout.split()})")

        sh("touch /var/lib/semilab/agent/outbox.db")
        r = sh("dpkg --purge semilab-agent semilab-central semilab-sim")
        check(r.returncode == 0, f"purge ({r.stderr[-500:]})")
        r = sh("test ! -e /etc/semilab/agent.toml && test ! -e /usr/bin/semilab-agent && "
               "test -e /var/lib/semilab/agent/outbox.db && getent passwd semilab >/dev/null")
        check(r.returncode == 0, "purge removes conffiles and binaries, keeps the data and the user")
        r = sh("test ! -e /etc/systemd/system/multi-user.target.wants/semilab-agent.service")
        check(r.returncode == 0, "purge removes the unit's enablement")
    finally:
        subprocess.run(["umount", "-R", root], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)



def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--packages", required=True, help="directory with the three .deb files")
    ap.add_argument("--lintian", default=shutil.which("lintian"))
    ap.add_argument("--lintian-only", action="store_true",
                    help="only lintian (its own test, so it runs beside the others)")
    ap.add_argument("--inner", action="store_true")
    a = ap.parse_args()
    debs = sorted(glob.glob(os.path.join(a.packages, "semilab-*.deb")))
    if a.lintian_only:
        check(len(debs) == 3, f"three packages in {a.packages} (built by packaging_deb): {debs}")
        check(a.lintian is not None, "lintian installed (./dev deps)")
        if not failures:
            run_lintian(debs, a.lintian)
    elif not a.inner:
        check(len(debs) == 3, f"three packages in {a.packages} (built by packaging_deb): {debs}")
        check(os.geteuid() == 0, "runs as root (mount namespace, overlayfs, chroot)")
        if failures:
            sys.exit(1)
        r = subprocess.run(["unshare", "-m", sys.executable, os.path.abspath(__file__),
                            "--packages", a.packages, "--inner"])
        sys.exit(r.returncode)
    else:
        inner(debs)
    if failures:
        print(f"{len(failures)} failure(s)")
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
