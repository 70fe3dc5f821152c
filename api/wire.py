"""One socket write per ready answer: its head and its body leave together.

uvicorn writes the status line and headers when the app sends ``http.response.start`` and the
body on ``http.response.body``: two ``send`` system calls per answer, and on each one the event
loop gives up the GIL. Under a crowd of small ready answers those writes were the largest part of
a server process's work (py-spy). The protocol here gives uvicorn a transport that holds a head
back until the next write, made in the same turn of the event loop for a ready answer (the fast
path sends both messages without waiting), and writes both at once; a head whose body does not
follow at once (a stream) goes out on its own at the loop's next turn. Order is kept: anything
written later goes after a held head.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeldHeadTransport:
    """``transport`` that merges a response head with the write that follows it (see above)."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._head: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            self._transport.write(head + bytes(data))
            return
        if isinstance(data, bytes) and data.startswith(b"HTTP/") and data.endswith(b"\r\n\r\n"):
            self._head = data
            self._loop.call_soon(self.flush)
            return
        self._transport.write(data)

    def flush(self) -> None:
        """Write a held head now (its body did not follow in the same turn)."""
        if self._head is not None:
            head, self._head = self._head, None
            if not self._transport.is_closing():
                self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class OneWriteHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a ``HeldHeadTransport``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(HeldHeadTransport(transport, self.loop))  # type: ignore[arg-type]


__all__ = ["HeldHeadTransport", "OneWriteHttpProtocol"]
