"""WebSocket echo server that the Autobahn cases are run against.

Binds 127.0.0.1 on a port the kernel picks (or --port), prints `PORT <n>` on
stdout once it accepts connections, and echoes every message back until it is
terminated.

The protocol is websockets' own (its sans-I/O `ServerProtocol`: handshake,
framing rules, permessage-deflate, Ping/Pong, closing handshake, size limits);
this file only moves bytes and echoes. It does not use websockets' asyncio
server because that server's outcome for some cases depends on how TCP cut the
client's bytes: it parses everything one read holds before its handler gets to
echo, so in 4.1.5 (a message, then a reserved opcode, written an octet at a
time) the echo is sent or not depending on whether the two frames arrived in
one segment. Any proxy regroups segments, so that would be a difference the
proxy did not make. Here the parser is never given bytes of a frame before the
previous frame's events are handled: the outcome depends on the frames alone.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import signal
import sys

from websockets.extensions.permessage_deflate import enable_server_permessage_deflate
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

# The 9.x cases send messages of up to 16 MiB.
MAX_MESSAGE_BYTES = 2**25
# How long to wait for the client to close the TCP connection after the closing
# handshake, as websockets' own servers do.
CLOSE_TIMEOUT_SECONDS = 10.0
SERVER_HEADER = "switchyard-autobahn-echo (websockets)"


class FrameBoundaries:
    """Cuts a byte stream into pieces that never hold bytes of two frames."""

    def __init__(self) -> None:
        self.header = bytearray()
        self.payload_left = 0

    def split(self, data: bytes) -> list[memoryview]:
        pieces = []
        view = memoryview(data)
        while view:
            if self.payload_left:
                take = min(self.payload_left, len(view))
                self.payload_left -= take
            else:
                take = min(self.header_bytes_missing(), len(view))
                self.header += view[:take]
                if self.header_bytes_missing() == 0:
                    self.payload_left = self.payload_length()
                    self.header.clear()
            pieces.append(view[:take])
            view = view[take:]
        return pieces

    def header_bytes_missing(self) -> int:
        if len(self.header) < 2:
            return 2 - len(self.header)
        length_code = self.header[1] & 0x7F
        extended = {126: 2, 127: 8}.get(length_code, 0)
        mask = 4 if self.header[1] & 0x80 else 0
        return 2 + extended + mask - len(self.header)

    def payload_length(self) -> int:
        length_code = self.header[1] & 0x7F
        if length_code == 126:
            return int.from_bytes(self.header[2:4], "big")
        if length_code == 127:
            return int.from_bytes(self.header[2:10], "big")
        return length_code


class EchoConnection(asyncio.Protocol):
    """One client: websockets' protocol, fed frame by frame, echoing each message."""

    def __init__(self) -> None:
        self.protocol = ServerProtocol(
            extensions=enable_server_permessage_deflate(None),
            max_size=MAX_MESSAGE_BYTES,
        )
        self.transport: asyncio.Transport | None = None
        self.open = False
        self.frames = FrameBoundaries()
        self.message: list[bytes] = []
        self.message_is_text = False
        self.utf8 = codecs.getincrementaldecoder("utf-8")()
        self.close_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        # The request head comes alone: the client waits for the 101 before it
        # sends a frame.
        pieces = self.frames.split(data) if self.open else [memoryview(data)]
        for piece in pieces:
            self.protocol.receive_data(piece)
            self.handle_events()
        self.flush()

    def eof_received(self) -> bool:
        self.protocol.receive_eof()
        self.flush()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.close_timer is not None:
            self.close_timer.cancel()

    def handle_events(self) -> None:
        for event in self.protocol.events_received():
            if isinstance(event, Request):
                response = self.protocol.accept(event)
                response.headers["Server"] = SERVER_HEADER
                self.protocol.send_response(response)
                self.open = response.status_code == 101
            elif isinstance(event, Frame) and self.protocol.state is State.OPEN:
                self.handle_data_frame(event)

    def handle_data_frame(self, frame: Frame) -> None:
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
            self.message_is_text = frame.opcode is Opcode.TEXT
            self.message.clear()
            self.utf8.reset()
        elif frame.opcode is not Opcode.CONT:
            return  # Ping, Pong and Close are the protocol's own business.
        if self.message_is_text:
            try:
                # Checked frame by frame, so invalid text fails before the rest
                # of its message arrives.
                self.utf8.decode(frame.data, final=frame.fin)
            except UnicodeDecodeError as err:
                self.protocol.fail(1007, f"invalid UTF-8: {err.reason}")
                return
        self.message.append(bytes(frame.data))
        if frame.fin:
            payload = b"".join(self.message)
            self.message.clear()
            if self.message_is_text:
                self.protocol.send_text(payload)
            else:
                self.protocol.send_binary(payload)

    def flush(self) -> None:
        assert self.transport is not None
        for data in self.protocol.data_to_send():
            if data:
                self.transport.write(data)
            elif self.transport.can_write_eof():
                self.transport.write_eof()
        if self.protocol.close_expected() and self.close_timer is None:
            loop = asyncio.get_running_loop()
            self.close_timer = loop.call_later(CLOSE_TIMEOUT_SECONDS, self.transport.close)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    args = parser.parse_args()

    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set_result, None)

    server = await loop.create_server(EchoConnection, args.host, args.port)
    async with server:
        port = server.sockets[0].getsockname()[1]
        print(f"PORT {port}", flush=True)
        await stop


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
