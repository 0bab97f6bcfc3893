"""Ray's mutual TLS for ``edgeinfer serve --ray``: a CA, node certificates, the environment.

Why: Ray Serve 2.60 starts a gRPC server in every replica on ``[::]:0`` (every interface,
a new port per replica, no setting for its address) whose handler unpickles request
metadata; Ray's GCS, raylets and workers speak unauthenticated gRPC too. The one protection
Ray offers is its mutual TLS: with ``RAY_USE_TLS=1`` and the three files below, every gRPC
server of the cluster (``ray._common.tls_utils.add_port_to_grpc_server``, the C++ servers)
requires a client certificate signed by ``RAY_TLS_CA_CERT``, and every client presents one.
Ray reads these variables from the environment of each process it starts, so setting them
in the driver before ``ray.init`` covers the whole local cluster.

Two uses:

- :func:`cluster_tls`: a throw-away CA and one certificate for a local cluster, generated
  at start in a private directory (mode 0700, files 0600), the CA key kept in memory only
  and never written, everything removed at exit. Nothing is logged but the directory.
- :func:`write_node_certs` (``edgeinfer ray-certs``): a CA and one certificate per machine
  of a multi-machine cluster, with an env file per node for ``ray start`` and the driver.

Keys are ECDSA P-256: a TLS handshake with it costs a fraction of RSA-2048's on a small
CPU, and gRPC (BoringSSL) accepts it. Node certificates carry both serverAuth and
clientAuth, because in mutual TLS every Ray process is a server to some and a client of
others.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgeinfer.errors import ConfigError, require

#: The variables Ray reads (``ray/_common/tls_utils.py`` and the C++ RayConfig).
TLS_VARS = ("RAY_USE_TLS", "RAY_TLS_SERVER_CERT", "RAY_TLS_SERVER_KEY", "RAY_TLS_CA_CERT")
#: Ray's token authentication (on by default for a local cluster in Ray 2.60): one token
#: per cluster, in a 0600 file beside the key. Why set it: left alone, Ray writes the token
#: to ~/.ray/auth_token (mode 0644, shared by every cluster of the user), and a node that
#: joins with ``ray start --address`` does not turn token mode on (seen: the worker node was
#: refused with InvalidAuthToken, "RAY_AUTH_MODE is currently 'disabled'").
AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")

#: Addresses every certificate names: Ray dials its own processes on loopback.
LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")

INSECURE_FLAG = "--ray-insecure"


def tls_enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether Ray's mutual TLS is on in ``env`` (default: this process), as Ray decides it."""
    env = os.environ if env is None else env
    return env.get("RAY_USE_TLS", "0").lower() in ("1", "true")


def require_tls(insecure: bool, env: Mapping[str, str] | None = None,
                what: str = "--ray-address") -> None:
    """Refuse to join an existing cluster without mutual TLS unless told the network is trusted.

    Why: a cluster without TLS accepts unauthenticated gRPC from anyone who reaches a node,
    and Serve replicas listen on every interface. The check is on this process's environment:
    Ray requires every member of a TLS cluster to use it, so a driver with TLS cannot join a
    cluster without it (and the reverse), which makes the driver's setting the cluster's.
    """
    env = os.environ if env is None else env
    if not tls_enabled(env):
        if insecure:
            return
        raise ConfigError(
            f"{what}: RAY_USE_TLS is not set, so this Ray cluster speaks unauthenticated "
            "gRPC and its Serve replicas listen on every interface; start every node and this "
            "command with Ray's mutual TLS (edgeinfer ray-certs DIR --node NAME=IP, then "
            f"source DIR/NAME/ray-tls.env), or pass {INSECURE_FLAG} if the network is trusted")
    missing = [v for v in TLS_VARS[1:] if not os.path.isfile(env.get(v, ""))]
    if missing:
        raise ConfigError(f"RAY_USE_TLS is set but {', '.join(missing)} "
                          f"{'is' if len(missing) == 1 else 'are'} not set to a readable "
                          "file: source the node's ray-tls.env from edgeinfer ray-certs")


@dataclass(frozen=True)
class _CA:
    cert: object  # cryptography x509.Certificate
    key: object  # cryptography private key


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _new_ca(days: int, name: str = "edgeinfer ray CA") -> _CA:
    require("cryptography", "ray", "Ray's mutual TLS")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5))
            .not_valid_after(_now() + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return _CA(cert, key)


def _issue(ca: _CA, name: str, hosts: Sequence[str], days: int) -> tuple[bytes, bytes]:
    """A node certificate and key (PEM) for ``hosts`` (IP addresses or DNS names)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    sans: list[x509.GeneralName] = []
    for h in dict.fromkeys([*hosts, *LOOPBACK_NAMES]):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca.cert.subject).public_key(key.public_key())  # type: ignore[attr-defined]
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5))
            .not_valid_after(_now() + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca.key, hashes.SHA256()))  # type: ignore[arg-type]
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), pem_key


def _pem(cert: object) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)  # type: ignore[attr-defined]


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 from the start (never briefly world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _node_files(directory: Path, ca_pem: bytes, cert: bytes, key: bytes,
                token: str) -> dict[str, str]:
    """Write ca.crt, node.crt, node.key, auth_token into ``directory``; the Ray variables
    naming them."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    (directory / "ca.crt").write_bytes(ca_pem)
    (directory / "node.crt").write_bytes(cert)
    _write_private(directory / "node.key", key)
    _write_private(directory / "auth_token", token.encode())
    return {"RAY_USE_TLS": "1", "RAY_TLS_SERVER_CERT": str(directory / "node.crt"),
            "RAY_TLS_SERVER_KEY": str(directory / "node.key"),
            "RAY_TLS_CA_CERT": str(directory / "ca.crt"), "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(directory / "auth_token")}


@contextlib.contextmanager
def cluster_tls(days: int = 3650) -> Iterator[Path]:
    """Ray's mutual TLS for a cluster on this machine, for the life of the block.

    A fresh CA signs one certificate for 127.0.0.1/::1/localhost; both live in a private
    temporary directory (0700; key and Ray's auth token 0600) named by the ``RAY_TLS_*`` and
    ``RAY_AUTH_*`` variables (:data:`AUTH_VARS`), which are set
    in ``os.environ`` so the Ray processes started inside the block inherit them. The CA key
    stays in memory: nobody can sign another certificate for this cluster. On exit the
    variables are restored and the directory removed. If TLS is already configured (the
    caller's own certificates), it is used as is and nothing is generated.
    """
    if tls_enabled():
        require_tls(False)
        yield Path(os.environ["RAY_TLS_CA_CERT"]).parent
        return
    ca = _new_ca(days)
    cert, key = _issue(ca, "edgeinfer ray node", (), days)
    directory = Path(tempfile.mkdtemp(prefix="edgeinfer-ray-tls-"))  # mode 0700
    saved = {v: os.environ.get(v) for v in TLS_VARS + AUTH_VARS}
    try:
        env = _node_files(directory, _pem(ca.cert), cert, key, secrets.token_hex(32))
        if "RAY_AUTH_MODE" in os.environ:  # the caller chose a token mode: theirs
            env = {k: v for k, v in env.items() if k not in AUTH_VARS}
        os.environ.update(env)
        del ca, key
        _refresh_ray_config()
        yield directory
    finally:
        for v, old in saved.items():
            if old is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = old
        _refresh_ray_config()
        shutil.rmtree(directory, ignore_errors=True)


def _refresh_ray_config() -> None:
    """Make an already imported Ray read ``RAY_USE_TLS`` & co. again.

    Why: Ray's C++ side caches its configuration from the environment when ``ray`` is
    imported; a driver that imported ray before the variables were set dials its own TLS
    cluster in plaintext and waits for ever (seen: GCS log "WRONG_VERSION_NUMBER", the
    driver "Failed to connect to GCS"). ``Config.initialize("")`` is what Ray itself calls
    after it turns token authentication on for the same reason. Processes Ray starts read
    the variables fresh and need nothing.
    """
    import sys

    if "ray._raylet" not in sys.modules:
        return
    raylet = sys.modules["ray._raylet"]
    config = getattr(raylet, "Config", None)
    if config is None or not hasattr(config, "initialize"):
        raise ConfigError("this Ray version has no ray._raylet.Config.initialize: edgeinfer "
                          "cannot turn Ray's TLS on after ray was imported; set RAY_USE_TLS "
                          "and the RAY_TLS_* variables before starting (edgeinfer ray-certs)")
    config.initialize("")


def parse_nodes(specs: Sequence[str]) -> dict[str, list[str]]:
    """``["head=10.0.0.1", "cam2=10.0.0.2,cam2.lan"]`` -> {name: [address, ...]}."""
    nodes: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, hosts = spec.partition("=")
        name = name.strip()
        addrs = [h.strip() for h in hosts.split(",") if h.strip()]
        if not sep or not name or not addrs:
            raise ConfigError(f"--node {spec!r} must look like NAME=IP[,IP or DNS name...]")
        if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ConfigError(f"--node {spec!r}: NAME may hold letters, digits, '-', '_', '.'")
        if name in nodes or name == "ca":
            raise ConfigError(f"--node {spec!r}: node name {name!r} is taken")
        nodes[name] = addrs
    if not nodes:
        raise ConfigError("name at least one node: --node NAME=IP")
    return nodes


def write_node_certs(directory: str | os.PathLike, nodes: Mapping[str, Sequence[str]],
                     days: int = 365) -> dict[str, Path]:
    """A CA and one certificate per node under ``directory`` (created 0700, must be empty).

    Layout: ``ca.crt``, ``ca.key`` (0600: keep it off the nodes, it signs new members) and
    ``NAME/{ca.crt,node.crt,node.key,auth_token,ray-tls.env}`` per node (one Ray auth token
    for the cluster, see :data:`AUTH_VARS`); copy ``NAME/`` to that machine
    (same path, or edit the env file) and ``set -a; . NAME/ray-tls.env`` before ``ray start``
    or ``edgeinfer serve --ray --ray-address``. Returns {name: env file}.
    """
    if days < 1:
        raise ConfigError(f"--days must be at least 1, got {days}")
    root = Path(directory).absolute()
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ConfigError(f"{root} exists and is not an empty directory: choose a new one "
                          "(an existing CA is never overwritten)")
    ca = _new_ca(days)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    ca_pem = _pem(ca.cert)
    token = secrets.token_hex(32)
    (root / "ca.crt").write_bytes(ca_pem)
    from cryptography.hazmat.primitives import serialization

    _write_private(root / "ca.key", ca.key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    out = {}
    for name, hosts in nodes.items():
        cert, key = _issue(ca, name, hosts, days)
        env = _node_files(root / name, ca_pem, cert, key, token)
        env_file = root / name / "ray-tls.env"
        _write_private(env_file, "".join(f"{k}={v}\n" for k, v in env.items()).encode())
        out[name] = env_file
    return out
