"""Serial devices as asyncio streams: a meter's port (/dev/ttyS*, /dev/ttyUSB*), a pseudo-terminal.

NBR 14522 readers talk to a meter's serial or optical port at 9600 baud, 8 data bits, no
parity, one stop bit (the public descriptions' line settings). `open_device` opens such a
device raw (no echo, no line editing: frames are binary) at that speed; `open_pty` makes a
pseudo-terminal pair whose master side an emulated meter serves and whose slave path a
reader opens like any serial device.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import termios
import tty
from collections.abc import Callable

BAUD = termios.B9600

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter, Callable[[], None]]


async def fd_streams(fd: int) -> Streams:
    """A reader and a writer on file descriptor `fd` (taken over), and how to close both."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    protocol = asyncio.StreamReaderProtocol(reader)
    read_transport, _ = await loop.connect_read_pipe(
        lambda: protocol, os.fdopen(fd, "rb", buffering=0)
    )
    write_transport, write_protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(os.dup(fd), "wb", buffering=0)
    )
    writer = asyncio.StreamWriter(write_transport, write_protocol, reader, loop)

    def close() -> None:
        read_transport.close()
        write_transport.close()

    return reader, writer, close


def _raw(fd: int) -> None:
    tty.setraw(fd)
    attributes = termios.tcgetattr(fd)
    attributes[4] = attributes[5] = BAUD  # input and output speed
    termios.tcsetattr(fd, termios.TCSANOW, attributes)


async def open_device(path: str) -> Streams:
    """The serial device at `path`, raw at 9600 baud (OSError if it cannot be opened)."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        _raw(fd)
        return await fd_streams(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise


def open_pty() -> tuple[int, int, str]:
    """(master fd, slave fd, slave path) of a new raw pseudo-terminal pair.

    Keep the slave fd open while serving: a master whose slave nobody holds reads EIO.
    """
    master, slave = os.openpty()
    _raw(slave)
    return master, slave, os.ttyname(slave)
