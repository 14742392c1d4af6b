"""WebSocket echo server that the Autobahn cases are run against.

Binds 127.0.0.1 on a port the kernel picks (or --port), prints `PORT <n>` on
stdout once it accepts connections, and echoes every message back until it is
terminated. Its limits are set so that the suite exercises the protocol, not the
server's defaults: the 9.x cases send messages of up to 16 MiB and of up to
65,536 fragments, and keepalive pings of its own would add frames the cases do
not expect.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

# websockets reads its fragment limit (4,096 by default, closing with 1009 past
# it) when imported; 9.3.1 and 9.4.1 send 4 MiB in 64-byte fragments.
os.environ.setdefault("WEBSOCKETS_MAX_FRAGMENTS", str(2**17))

from websockets.asyncio.server import ServerConnection, serve  # noqa: E402
from websockets.exceptions import WebSocketException  # noqa: E402

# Largest message the 9.x cases send is 16 MiB; leave headroom.
MAX_MESSAGE_BYTES = 2**25


async def echo(connection: ServerConnection) -> None:
    try:
        async for message in connection:
            await connection.send(message)
    except WebSocketException:
        # A case that breaks the protocol on purpose ends here; the library has
        # already sent its Close frame, which is what the case judges.
        pass


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    args = parser.parse_args()

    logging.basicConfig(level=logging.CRITICAL)
    stop = asyncio.get_running_loop().create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set_result, None)

    async with serve(
        echo,
        args.host,
        args.port,
        max_size=MAX_MESSAGE_BYTES,
        ping_interval=None,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"PORT {port}", flush=True)
        await stop


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(130)
