"""Keeping WebRTC on the addresses it is allowed to use.

aioice (aiortc's ICE agent) gathers host candidates on every interface and skips 127.0.0.1. A server
bound to loopback must offer loopback candidates only, so nothing is ever sent to another address.
:func:`restrict_host_candidates` replaces aioice's address lookup for this process (it is aioice's
only hook; the server calls it once at start-up, before any peer connection exists).
"""

from __future__ import annotations

from collections.abc import Sequence

from aioice import ice


def restrict_host_candidates(addresses: Sequence[str]) -> None:
    """Gather ICE host candidates on exactly ``addresses`` (e.g. ``["127.0.0.1"]``)."""
    chosen = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    ice.get_host_addresses = host_addresses  # type: ignore[assignment]


def is_loopback(address: str) -> bool:
    return address == "::1" or address.startswith("127.")
