"""Ray cluster addresses, and the environment Ray must see before it is imported (no Ray import here).

Two of Ray's settings are read when Ray is imported, so a front end decides them from the address
before importing ``stream.ray_render``: a cluster bound to the loopback (``make ray-up``) is reached
only when Ray also takes 127.0.0.1 as this machine's node address (:data:`LOOPBACK_ENV`), and a Ray
Client driver sends the cluster's token only when token authentication is switched on
(:data:`AUTH_MODE_ENV`; Ray does that by itself for every other kind of driver when a token exists).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import tempfile
from pathlib import Path

from ..errors import PirenderError

#: makes Ray use 127.0.0.1 as the node address, so that it reaches (or starts) a cluster whose
#: services bind the loopback only (Ray's setting for one-machine clusters; ``0`` on)
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
#: Ray's token authentication switch (``token`` or ``disabled``)
AUTH_MODE_ENV = "RAY_AUTH_MODE"
#: where ``ray start`` writes the GCS address of this machine's cluster (Ray's default temp folder)
CURRENT_CLUSTER_FILE = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"


def cluster_endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) that ``address`` reaches first: the Ray Client server of ``ray://HOST:PORT``, the
    GCS of ``HOST:PORT`` or of ``auto`` (the cluster ``ray start`` made on this machine); None for
    ``local`` (a new cluster).

    Raises:
        PirenderError: not a Ray address, or ``auto`` without a cluster on this machine.
    """
    if address == "local":
        return None
    target = address.removeprefix("ray://")
    if address == "auto":
        try:
            target = CURRENT_CLUSTER_FILE.read_text().strip()
        except OSError:
            raise PirenderError(
                "--render auto: no Ray cluster on this machine (start one: make ray-up)"
            ) from None
    host, colon, port = target.rpartition(":")
    if not colon or not host or not port.isdigit():
        raise PirenderError(
            f"{address!r} is not a Ray address: ray://HOST:PORT (Ray Client), HOST:PORT (the GCS), auto"
        )
    return host.strip("[]"), int(port)


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` names this machine's loopback (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def needs_loopback_node(address: str) -> bool:
    """Whether joining ``address`` makes this machine a node of a cluster bound to the loopback (a
    GCS address on 127.0.0.1 or ``auto`` for such a cluster, or ``local``; a Ray Client driver is no
    node), so that Ray must take 127.0.0.1 as the node address (:data:`LOOPBACK_ENV`).

    Raises:
        PirenderError: as :func:`cluster_endpoint`.
    """
    endpoint = cluster_endpoint(address)
    return endpoint is None or (is_loopback_host(endpoint[0]) and not address.startswith("ray://"))


def prepare_environment(address: str) -> None:
    """Set Ray's import-time settings for ``address`` (call before Ray is imported): 127.0.0.1 as
    the node address when the cluster is on the loopback (or ``local``), and token authentication for a
    Ray Client driver when this machine has a token. Settings already in the environment are kept.

    Raises:
        PirenderError: as :func:`cluster_endpoint`.
    """
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():  # this process joined a cluster already: kept
        return
    if needs_loopback_node(address):
        os.environ.setdefault(LOOPBACK_ENV, "0")
    if address.startswith("ray://"):
        enable_client_token_auth()


def enable_client_token_auth() -> None:
    """Switch token authentication on when Ray finds a token here (``RAY_AUTH_TOKEN``,
    ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``) and nobody chose: Ray's own rule for
    ``ray start`` and GCS drivers, which it does not apply to Ray Client drivers (a cluster with
    token authentication then refuses their requests)."""
    if AUTH_MODE_ENV in os.environ:
        return
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or os.path.isfile(path):
        os.environ[AUTH_MODE_ENV] = "token"


def check_reachable(address: str, timeout_s: float = 3.0) -> None:
    """Fail fast when nothing listens at ``address`` (Ray itself waits a minute or more).

    Raises:
        PirenderError: the port does not accept a connection within ``timeout_s``.
    """
    endpoint = cluster_endpoint(address)
    if endpoint is None:
        return
    host, port = endpoint
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise PirenderError(
            f"no Ray cluster answers at {host}:{port} ({address}): {exc.strerror or exc} "
            "(start one: make ray-up)"
        ) from None
