"""One socket write per ready answer (``api.wire``): a head is merged with the body that follows it.

The protocol itself serves every ``mta api`` test in ``test_workers.py`` (keep-alive connections
read answer after answer by their Content-Length)."""

from __future__ import annotations

import asyncio
from typing import Any

from api.wire import HeldHeadTransport

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"


class RecordingTransport:
    """The fake beside ``asyncio.Transport``: records each write as the socket would get it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 4242)}.get(name, default)


def test_a_head_and_its_body_leave_in_one_write() -> None:
    """Tried: a head then its body in one turn of the loop; a head alone (a stream's), then a
    chunk a turn later; a head then close. Asserted: one write for head + body; the lone head
    written on its own at the next turn, before the later chunk; a close writes a held head first;
    other calls reach the real transport. Seen failing with ``write`` passing heads straight on
    (two writes) and with ``flush`` not scheduled (the lone head never written)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        real = RecordingTransport()
        wire = HeldHeadTransport(real, loop)  # type: ignore[arg-type]
        wire.write(HEAD)
        wire.write(b"hello")
        assert real.writes == [HEAD + b"hello"]

        wire.write(HEAD)
        assert real.writes == [HEAD + b"hello"]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert real.writes[-1] == HEAD
        wire.write(b"data: 1\n\n")
        assert real.writes[-2:] == [HEAD, b"data: 1\n\n"]

        wire.write(HEAD)
        wire.close()
        assert real.writes[-1] == HEAD and real.closed
        assert wire.get_extra_info("peername") == ("127.0.0.1", 4242)

    asyncio.run(main())
