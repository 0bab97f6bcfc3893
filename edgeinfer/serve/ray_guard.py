"""The listener guard: no listener of the Ray process tree answers plaintext beyond loopback.

Why a guard and not only configuration: the replica's gRPC server address is hard-coded in
Ray (``"[::]:0"``) and its protection depends on Ray honouring ``RAY_USE_TLS`` for it; a
Ray upgrade may add a listener or drop that wiring without a word. So after the app is up
(and again while it runs, for replicas that replace dead ones) every TCP listener of this
process and its descendants is read from ``/proc`` (no dependency; Linux only, as Ray's
loopback mode is) and judged:

- bound to loopback (127.0.0.0/8, ::1): reachable from this machine only, accepted;
- bound to a wildcard (0.0.0.0, ::): reachable from the network, so it must refuse a client
  without the cluster's certificate. It is probed on loopback with a plaintext HTTP/2
  client preface and an empty SETTINGS frame, what an unauthenticated gRPC client sends
  first: an answer that is not a TLS alert (a SETTINGS frame, any other bytes, or silence)
  fails it. Probing the wildcard listener on loopback reaches the same socket a network
  peer would, without sending a byte to another address;
- bound to any other address: fails outright (nothing here should bind one).

:class:`ExposedListenerError` (a ``ConfigError``: one line, exit 2) names the process and
address; ``edgeinfer serve --ray`` then shuts the app down instead of serving.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from edgeinfer.errors import ConfigError

#: What a plaintext gRPC client sends first: the HTTP/2 preface and an empty SETTINGS frame.
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"

_WILDCARDS = {"0.0.0.0", "::"}


class ExposedListenerError(ConfigError):
    """A listener of the Ray tree is reachable beyond loopback and answers plaintext."""


@dataclass(frozen=True)
class Listener:
    pid: int
    name: str  # the process name (``ray::ServeReplica:...``, ``raylet``, ...)
    ip: str  # as bound, IPv4-mapped addresses unmapped (``::ffff:127.0.0.1`` -> 127.0.0.1)
    port: int

    def __str__(self) -> str:
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{self.name} (pid {self.pid}) on {host}:{self.port}"


def _hex_ip(text: str) -> str:
    """/proc/net/tcp{,6} address: host-order 32-bit words in hex."""
    raw = bytes.fromhex(text)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    addr = ipaddress.ip_address(words)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return str(addr)


def _listening_inodes() -> dict[int, tuple[str, int]]:
    """{socket inode: (ip, port)} for every TCP socket in LISTEN state on this machine."""
    out: dict[int, tuple[str, int]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                f = line.split()
                if len(f) > 9 and f[3] == "0A":  # TCP_LISTEN
                    ip, port = f[1].rsplit(":", 1)
                    out[int(f[9])] = (_hex_ip(ip), int(port, 16))
    return out


def process_tree(root: int) -> dict[int, str]:
    """{pid: name} of ``root`` and every process below it (from /proc/*/stat)."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (d / "stat").read_text()
            parents[int(d.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
            names[int(d.name)] = (d / "cmdline").read_bytes().split(b"\0")[0].decode(
                errors="replace") or stat[stat.index("(") + 1:stat.rindex(")")]
    tree, todo = {}, [root]
    while todo:
        p = todo.pop()
        if p in tree or p not in names:
            continue
        tree[p] = names[p]
        todo += [c for c, parent in parents.items() if parent == p]
    return tree


def listeners(root: int | None = None) -> list[Listener]:
    """Every TCP listener of ``root`` (default: this process) and its descendants."""
    if not Path("/proc/net/tcp").exists():
        raise ConfigError("listing listeners needs Linux /proc: edgeinfer serve --ray guards "
                          "its network exposure on Linux only")
    inodes = _listening_inodes()
    found = set()
    for pid, name in process_tree(os.getpid() if root is None else root).items():
        with contextlib.suppress(OSError):
            for fd in os.scandir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(fd.path)
                    if target.startswith("socket:["):
                        inode = int(target[8:-1])
                        if inode in inodes:
                            found.add(Listener(pid, name, *inodes[inode]))
    return sorted(found, key=lambda x: (x.pid, x.port))


def is_loopback(ip: str) -> bool:
    return ipaddress.ip_address(ip).is_loopback


def probe(host: str, port: int, timeout: float = 3.0) -> str:
    """Send a plaintext HTTP/2 preface to ``host:port``; what came back, in a word:
    ``refused`` (not reachable there), ``closed`` (no bytes, connection ended), ``tls-alert``,
    ``h2-settings`` (a plaintext HTTP/2 server), ``silent`` or ``other``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(H2_PREFACE)
            data = s.recv(64)
    except TimeoutError:
        return "silent"
    except OSError as e:
        if e.errno in (errno.ECONNREFUSED, errno.EADDRNOTAVAIL, errno.ENETUNREACH):
            return "refused"
        return "closed"  # reset by the peer: a TLS server dropping garbage
    if not data:
        return "closed"
    if data[0] == 0x15:  # TLS record type alert
        return "tls-alert"
    if len(data) >= 9 and data[3] == 0x04:
        return "h2-settings"
    return "other"


#: Probe answers that mean "refuses a client without the cluster's certificate".
REFUSING = frozenset({"refused", "closed", "tls-alert"})


def exposed(found: list[Listener], judged: dict[tuple[int, int], str] | None = None
            ) -> list[tuple[Listener, str]]:
    """The listeners of ``found`` that are reachable beyond loopback and do not refuse a
    plaintext client, with why. ``judged`` caches verdicts by (pid, port) across calls."""
    judged = {} if judged is None else judged
    bad = []
    for ln in found:
        if is_loopback(ln.ip):
            continue
        key = (ln.pid, ln.port)
        if key not in judged:
            if ln.ip not in _WILDCARDS:
                judged[key] = f"bound to non-loopback address {ln.ip}"
            else:
                hosts = ["127.0.0.1"] + (["::1"] if ln.ip == "::" else [])
                answers = {probe(h, ln.port) for h in hosts}
                judged[key] = "" if answers <= REFUSING else (
                    "answers a plaintext client: " + ", ".join(sorted(answers - REFUSING)))
        if judged[key]:
            bad.append((ln, judged[key]))
    return bad


def check(root: int | None = None, judged: dict[tuple[int, int], str] | None = None) -> int:
    """Raise :class:`ExposedListenerError` if a listener of the tree is exposed; else the
    number of listeners checked."""
    found = listeners(root)
    bad = exposed(found, judged)
    if bad:
        ln, why = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ExposedListenerError(
            f"refusing to serve: {ln} is reachable beyond loopback and {why}{more}; Ray's "
            "mutual TLS is not protecting it (a Ray version edgeinfer does not know?)")
    return len(found)
