"""Remove our unix socket files at shutdown, even after dropping root.

Removing a file needs write permission on its directory. A socket bound as
root in a directory only root may write (``/run``, a chrooted Postfix's
``/var/spool/postfix/...``) could not be removed by the user miltrd drops
to, so shutdown failed and left the socket behind. Before the drop,
``start`` forks a small helper that keeps root and only waits; when the
daemon ends (cleanly or not: the pipe closes either way) it removes exactly
the files the daemon created (same device and inode, so a newer instance's
socket is never touched) and exits. It ignores SIGTERM, SIGINT and SIGHUP,
which systemd and a terminal send to the whole process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat

__all__ = ["Unlinker", "start"]


class Unlinker:
    """The parent's handle on the helper process."""

    def __init__(self, pid: int, pipe: int, paths: list[str]) -> None:
        self.pid = pid
        self.pipe = pipe
        self.paths = paths

    def finish(self) -> None:
        """Have the helper remove the files now, and wait until it has."""
        if self.pipe < 0:
            return
        os.close(self.pipe)
        self.pipe = -1
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def _writable_by(directory: str, uid: int, gid: int) -> bool:
    """Could ``uid``/``gid`` (no supplementary groups) remove a file of its own
    there? Mode bits only; an ACL may allow more, which costs only a helper
    process that was not needed."""
    try:
        st = os.stat(directory)
    except OSError:
        return False
    need = stat.S_IWUSR | stat.S_IXUSR
    if st.st_uid == uid:
        return st.st_mode & need == need
    if st.st_gid == gid:
        return st.st_mode & (need >> 3) == need >> 3
    return st.st_mode & (need >> 6) == need >> 6


def start(paths: list[str], uid: int, gid: int, close_fds: list[int]) -> Unlinker | None:
    """Fork the helper if the user ``uid``/``gid`` could not remove one of
    ``paths`` itself; None if it can. ``close_fds`` (the listening sockets)
    are closed in the helper, which must never hold them."""
    targets: list[tuple[str, int, int]] = []
    for path in paths:
        if _writable_by(os.path.dirname(path) or ".", uid, gid):
            continue
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(path)
            targets.append((path, st.st_dev, st.st_ino))
    if not targets:
        return None
    read, write = os.pipe()
    pid = os.fork()
    if pid:
        os.close(read)
        return Unlinker(pid, write, [t[0] for t in targets])
    try:  # the helper
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        with contextlib.suppress(ValueError):
            signal.set_wakeup_fd(-1)
        os.close(write)
        for fd in close_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        while True:
            try:
                if not os.read(read, 64):
                    break
            except InterruptedError:
                continue
        for path, dev, ino in targets:
            with contextlib.suppress(OSError):
                st = os.lstat(path)
                if (st.st_dev, st.st_ino) == (dev, ino):
                    os.unlink(path)
    finally:
        os._exit(0)
