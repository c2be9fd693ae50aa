"""A Debian 12 booted with systemd as PID 1, for the packaging tests.

The root file system is made once with debootstrap (minbase plus systemd and
the deb's dependencies, read from packaging/debian/control) and kept in
``$MILTRD_TEST_CACHE`` (default /var/cache/miltrd-tests), since building it
takes a minute or more; a root whose package list changed is made anew.
Each test module boots a throwaway copy of it with ``systemd-nspawn -b``
(``--register=no --keep-unit``: no machined or host systemd needed;
``--private-network``: only its own loopback), runs commands inside with
``nsenter``, and deletes the copy afterwards. Nothing is installed on, or
removed from, the machine running the tests.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("MILTRD_TEST_CACHE", "/var/cache/miltrd-tests"))
SUITE = "bookworm"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
BASE_PACKAGES = ["systemd", "systemd-sysv", "dbus", "passwd", "util-linux"]


def deb_dependencies() -> list[str]:
    """The binary package's Depends and Recommends from debian/control (first of each
    alternative): apt installs both, and the container has no network to fetch them."""
    control = (REPO / "packaging" / "debian" / "control").read_text()
    stanza = control[control.index("\nPackage: miltrd") :]
    fields = re.findall(r"^(?:Depends|Recommends):(.*?)(?=^\S)", stanza, re.S | re.M)
    assert fields, "no Depends in packaging/debian/control"
    names = []
    for item in ",".join(fields).split(","):
        name = item.split("|")[0].split("(")[0].strip()
        if name and not name.startswith("$"):
            names.append(name)
    return names


def debian_mirror() -> str:
    """The host's Debian archive (from apt's sources), so the root is made from the same place."""
    for source in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]:
        try:
            text = source.read_text()
        except OSError:
            continue
        # One-line "deb URI SUITE main" and deb822 "URIs:/Suites:" stanzas alike.
        stanzas = re.split(r"\n\s*\n", text) if "URIs:" in text else text.splitlines()
        for stanza in stanzas:
            uri = re.search(r"(?:^URIs:|^deb)\s+(?:\[[^]]*\]\s+)?(\S+)", stanza, re.M)
            if (
                uri
                and uri[1].rstrip("/").endswith("/debian")
                and re.search(rf"\b{SUITE}\b(?![-/])", stanza)
            ):
                return uri[1]
    return "http://deb.debian.org/debian"


def base_root() -> Path:
    """The cached debootstrapped root, made (once, under a lock) if missing."""
    packages = sorted({*BASE_PACKAGES, *deb_dependencies()})
    key = hashlib.sha256(" ".join([SUITE, *packages]).encode()).hexdigest()[:12]
    root = CACHE / f"{SUITE}-{key}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / "usr" / "lib" / "systemd" / "systemd").exists():
            return root
        building = Path(tempfile.mkdtemp(dir=CACHE, prefix=".building-"))
        building.chmod(0o755)  # the container's "/": mkdtemp's 0700 locks out its daemons
        try:
            env = {"PATH": SYSTEM_PATH, "LANG": "C", "DEBIAN_FRONTEND": "noninteractive"}
            # debootstrap resolves no virtual packages (python3-nacl needs one), so it
            # lays only the base; apt-get inside adds the rest.
            steps = [
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(BASE_PACKAGES)}",
                    SUITE,
                    str(building),
                    debian_mirror(),
                ],
                [
                    *("systemd-nspawn", "--quiet", "--register=no", "--keep-unit"),
                    f"--directory={building}",
                    "sh",
                    "-c",
                    "apt-get update -q && apt-get install -y -q " + " ".join(packages),
                ],
            ]
            for argv in steps:
                result = subprocess.run(argv, capture_output=True, text=True, timeout=1200, env=env)
                assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
            # The caches apt filled are not needed in every copy.
            for cached in (building / "var" / "cache" / "apt" / "archives").glob("*.deb"):
                cached.unlink()
            os.rename(building, root)
        finally:
            shutil.rmtree(building, ignore_errors=True)
    return root


class Container:
    """A booted copy of the cached root; ``run`` executes a command inside it."""

    def __init__(self, workdir: Path, binds: dict[Path, str]) -> None:
        self.dir = workdir / "root"
        self.binds = binds
        self.name = f"miltrd-test-{os.getpid()}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.init_pid = 0
        self.log = workdir / "boot.log"
        subprocess.run(["cp", "-a", "--reflink=auto", str(base_root()), str(self.dir)], check=True)

    def boot(self, timeout: float = 120.0) -> None:
        argv = [
            "systemd-nspawn",
            "--boot",
            f"--directory={self.dir}",
            f"--machine={self.name}",
            "--register=no",
            "--keep-unit",
            "--private-network",
            "--console=passive",
        ]
        argv += [f"--bind-ro={host}:{inside}" for host, inside in self.binds.items()]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        while not self.init_pid:
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "container did not start: " + self.log.read_text()
            with_init = children.read_text().split() if children.exists() else []
            for pid in with_init:
                comm = Path(f"/proc/{pid}/comm")
                if comm.exists() and comm.read_text().strip() == "systemd":
                    self.init_pid = int(pid)
            time.sleep(0.2)
        while True:
            state = self.run("systemctl", "is-system-running", check=False).stdout
            if state.strip() in ("running", "degraded"):
                return
            assert time.monotonic() < deadline, f"container did not boot: {state}"
            time.sleep(0.5)

    def run(
        self, *argv: str, check: bool = True, timeout: float = 300, user: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the container (as ``user``, with its groups, if given)."""
        assert self.init_pid, "container not booted"
        inner = list(argv)
        if user:
            inner = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *inner]
        result = subprocess.run(
            ["nsenter", f"--target={self.init_pid}", "--all", "--", *inner],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"},
        )
        if check:
            assert result.returncode == 0, f"{argv}: {result.stdout}{result.stderr}"
        return result

    def sh(self, script: str, check: bool = True, user: str | None = None) -> str:
        return self.run("sh", "-c", script, check=check, user=user).stdout

    def poweroff(self, timeout: float = 90.0) -> None:
        """Shut the container down as systemd does (SIGTERM to nspawn: a clean poweroff)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.init_pid = 0

    def reboot(self) -> None:
        self.poweroff()
        self.boot()

    def remove(self) -> None:
        self.poweroff()
        shutil.rmtree(self.dir, ignore_errors=True)
