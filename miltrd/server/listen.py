"""Open the listening sockets the config names.

Unix sockets get the configured mode (and owner, when running as root); a
stale socket file (nothing answers on it) is replaced, a live one is an
error. inet sockets bind where told; binding to all addresses is logged
as a warning, because a milter port should not face the internet.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import socket
import stat

from ..config import DaemonConfig, ListenSpec

__all__ = ["ListenError", "open_listener", "Listener"]

log = logging.getLogger("miltrd.server")


class ListenError(Exception):
    """A listener cannot be opened; the message says which and why."""


class Listener:
    def __init__(self, sock: socket.socket, spec: ListenSpec | None, path: str = "") -> None:
        self.sock = sock
        self.spec = spec
        self.path = path  # unix socket file we created, removed at shutdown
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # No Nagle delay on replies (shared/MTA-NOTES.md). Set once here:
            # every accepted socket inherits it (Linux, the BSDs), instead
            # of a system call per connection.
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError as exc:
                log.warning("%s: cannot set TCP_NODELAY: %s", self.name, exc.strerror or exc)

    @property
    def name(self) -> str:
        if self.spec is not None:
            return self.spec.text
        return f"fd {self.sock.fileno()} (systemd)"

    def remove_socket_file(self) -> None:
        """Remove the socket file we created; a failure is logged, not raised
        (shutdown goes on)."""
        if self.path:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.error("cannot remove %s: %s", self.path, exc.strerror or exc)


def _unix(spec: ListenSpec, daemon: DaemonConfig) -> Listener:
    path = spec.path
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise ListenError(f"{spec.text}: {path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1)
        try:
            probe.connect(path)
        except OSError:
            log.info("removing stale socket %s", path)
            os.unlink(path)
        else:
            raise ListenError(f"{spec.text}: {path} is in use by a running process")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # no window where the socket is wider than asked
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise ListenError(f"{spec.text}: cannot bind {path}: {exc.strerror}") from None
    finally:
        os.umask(old_umask)
    os.chmod(path, daemon.socket_mode)
    if os.geteuid() == 0 and (daemon.user or daemon.group):
        # The socket belongs to the user and group miltrd will run as (the
        # user's own group unless `group` names another), as it would if that
        # user had made it: the MTA's user gets in by joining that group.
        pw = pwd.getpwnam(daemon.user) if daemon.user else None
        uid = pw.pw_uid if pw else -1
        gid = grp.getgrnam(daemon.group).gr_gid if daemon.group else (pw.pw_gid if pw else -1)
        os.chown(path, uid, gid)
    sock.listen(daemon.backlog)
    return Listener(sock, spec, path)


def _inet(spec: ListenSpec, backlog: int) -> Listener:
    family = socket.AF_INET6 if spec.kind == "inet6" else socket.AF_INET
    host = spec.host
    if spec.all_addresses:
        host = "::" if family == socket.AF_INET6 else "0.0.0.0"
        log.warning(
            "%s listens on all addresses: restrict it to loopback or a firewall-protected address",
            spec.text,
        )
    else:
        try:
            infos = socket.getaddrinfo(host, spec.port, family, socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ListenError(f"{spec.text}: cannot resolve {host}: {exc.strerror}") from None
        host = str(infos[0][4][0])
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    try:
        sock.bind((host, spec.port))
    except OSError as exc:
        sock.close()
        raise ListenError(
            f"{spec.text}: cannot bind {host} port {spec.port}: {exc.strerror}"
        ) from None
    sock.listen(backlog)
    return Listener(sock, spec)


def open_listener(spec: ListenSpec, daemon: DaemonConfig) -> Listener:
    return _unix(spec, daemon) if spec.kind == "unix" else _inet(spec, daemon.backlog)
