"""Keeping WebRTC on the addresses it is allowed to use.

aioice (aiortc's ICE agent) gathers host candidates on every interface and skips 127.0.0.1. A server
bound to loopback must offer loopback candidates only, so nothing is ever sent to another address.
:func:`restrict_host_candidates` replaces aioice's address lookup for this process (it is aioice's
only hook; the server calls it once at start-up, before any peer connection exists).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

from aioice import ice

from ..errors import PirenderError


def restrict_host_candidates(addresses: Sequence[str]) -> None:
    """Gather ICE host candidates on exactly ``addresses`` (e.g. ``["127.0.0.1"]``)."""
    chosen = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    ice.get_host_addresses = host_addresses


def is_loopback(address: str) -> bool:
    """Whether an IP address literal is a loopback address (127.0.0.0/8, ::1, ::ffff:127.x.x.x).

    Names are not resolved here (see :func:`bind_is_loopback`); a name or anything unparsable is
    not loopback.
    """
    try:
        ip = ipaddress.ip_address(address.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def bind_is_loopback(host: str) -> bool:
    """Whether a bind address reaches loopback only, decided on what it resolves to (not how it is
    spelled): ``localhost``, ``127.0.0.2``, ``::1``, ``0:0:0:0:0:0:0:1``, ``[::1]`` and
    ``::ffff:127.0.0.1`` are loopback; ``0.0.0.0``, ``::``, a LAN address or a name that resolves to
    any non-loopback address are not.

    Raises:
        PirenderError: the name does not resolve.
    """
    name = host.strip("[]")
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise PirenderError(f"--host {host}: cannot be resolved ({exc.strerror})") from None
    addresses = {str(info[4][0]) for info in infos}
    return bool(addresses) and all(is_loopback(address) for address in addresses)
