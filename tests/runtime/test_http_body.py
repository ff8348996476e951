"""The httptools path hands a request body to the app piece by piece: no copies, flow control."""

from __future__ import annotations

import asyncio
from typing import Any

from meterseal.runtime.http import _BodyPieces


class _Flow:
    def __init__(self) -> None:
        self.paused = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        self.written.append(data)


class _Cycle:
    """The parts of uvicorn's RequestResponseCycle that `_BodyPieces` uses."""

    def __init__(self) -> None:
        self.flow = _Flow()
        self.transport = _Transport()
        self.message_event = asyncio.Event()
        self.waiting_for_100_continue = False
        self.disconnected = False
        self.response_complete = False
        self.more_body = True
        self.receive: Any = None


def test_pieces_go_to_the_app_as_they_came_and_reading_pauses_above_the_buffer() -> None:
    async def scenario() -> None:
        cycle = _Cycle()
        body = _BodyPieces(cycle, limit=100)
        assert cycle.receive == body.receive  # the cycle's ASGI task calls ours
        pieces = [bytes([i]) * 60 for i in range(3)]
        body.add(pieces[0])
        assert not cycle.flow.paused
        body.add(pieces[1])
        assert cycle.flow.paused  # 120 bytes wait for the app
        first = await cycle.receive()
        assert first["body"] is pieces[0]  # the parser's own bytes: not copied
        assert first["more_body"] is True
        assert not cycle.flow.paused  # 60 bytes left
        body.add(pieces[2])
        cycle.more_body = False  # the parser saw the end of the message
        cycle.message_event.set()
        second, third = await cycle.receive(), await cycle.receive()
        assert (second["body"], second["more_body"]) == (pieces[1], True)
        assert (third["body"], third["more_body"]) == (pieces[2], False)

        after = asyncio.ensure_future(cycle.receive())
        for _ in range(5):
            await asyncio.sleep(0)
        assert not after.done()  # the body is out: it waits for the client to leave
        cycle.disconnected = True
        cycle.message_event.set()
        assert await after == {"type": "http.disconnect"}

    asyncio.run(scenario())


def test_an_app_waiting_for_the_body_wakes_on_a_piece_and_on_its_end() -> None:
    async def scenario() -> None:
        cycle = _Cycle()
        cycle.waiting_for_100_continue = True
        body = _BodyPieces(cycle, limit=1 << 20)
        waiting = asyncio.ensure_future(cycle.receive())
        await asyncio.sleep(0)
        assert cycle.transport.written == [b"HTTP/1.1 100 Continue\r\n\r\n"]
        body.add(b"abc")
        assert await waiting == {"type": "http.request", "body": b"abc", "more_body": True}
        waiting = asyncio.ensure_future(cycle.receive())
        await asyncio.sleep(0)
        cycle.more_body = False
        cycle.message_event.set()
        assert await waiting == {"type": "http.request", "body": b"", "more_body": False}

    asyncio.run(scenario())
