"""The byte streams under the upstream client (client.py): what it does to a connection, and how one is opened.

Like httpcore's `_backends`, this is the seam between the HTTP/1.1 exchange and the I/O under it, so that the
client's tests can run it over an in-memory stream (tests/proxy/memory_stream.py). It adds no layer of its own:
asyncio's transports are `Transport`s as they are, and the client's connection is the asyncio.Protocol that the
event loop calls, so the proxy's hot path makes the same calls as before the seam.

A backend's side of the contract is asyncio's, less `connection_made` (the client takes the transport from
`Connect`'s return; bytes that come before it returns are ones nobody asked for, and close the connection): it
calls the protocol's `data_received` with the bytes that come, stops doing so between `pause_reading()` and
`resume_reading()`, calls `pause_writing()`/`resume_writing()` as its send buffer fills and drains, and calls
`connection_lost()` once, after `close()` or when the peer goes away (`eof_received()` first, in that case; the
client answers False: the transport closes).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Protocol


class Transport(Protocol):
    """What the client does to an open connection; nothing else of asyncio.Transport is used."""

    def write(self, data: bytes) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def close(self) -> None: ...

    def is_closing(self) -> bool: ...


Connect = Callable[[asyncio.Protocol, str, int, ssl.SSLContext | None], Awaitable[Transport]]
"""Opens a connection to (host, port), TLS when given a context, and attaches the protocol to it. OSError when
the peer cannot be reached; cancelled by the client's connect timeout."""


async def tcp_connect(protocol: asyncio.Protocol, host: str, port: int, tls: ssl.SSLContext | None) -> Transport:
    """The default backend: a TCP (or TLS) connection of the running event loop."""
    transport, _ = await asyncio.get_running_loop().create_connection(lambda: protocol, host, port, ssl=tls)
    return transport
