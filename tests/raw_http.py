"""Raw bytes over a socket, for tests of what a client library would tidy up: the attacker's own requests."""

from __future__ import annotations

import asyncio


async def send_raw(host: str, port: int, data: bytes, *, idle: float = 5.0, half_close: bool = False) -> bytes:
    """Send `data` as it is and read until the peer closes or `idle` seconds pass without a byte.

    `half_close` shuts our side for writing after sending (a client that has said all it will).
    """
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        await writer.drain()
        if half_close and writer.can_write_eof():
            writer.write_eof()
        chunks: list[bytes] = []
        while True:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), idle)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass


def statuses(raw: bytes) -> list[int]:
    """The status codes of every HTTP/1.1 answer head in `raw`, in order (a count of answers on one connection)."""
    found: list[int] = []
    for line in raw.split(b"\r\n"):
        if line.startswith(b"HTTP/1.") and len(line) >= 12 and line[9:12].isdigit():
            found.append(int(line[9:12]))
    return found
