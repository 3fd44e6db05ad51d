"""The conformance kit's forwarder: the clients dial 169.254.169.254:80 inside the suite's
network namespace; this carries each connection to an IMDS at http://HOST:PORT outside it.

  forward.py listen IP:PORT SOCKET    inside the namespace: TCP in, to the unix SOCKET
  forward.py connect SOCKET URL       outside: the unix SOCKET in, TCP to URL's host:port

A unix socket lives in the file system, which both sides share, so nothing is routed between
namespaces. Bytes pass through unchanged (the target sees the forwarder's source address).
"""

import asyncio
import os
import sys
import urllib.parse


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:  # noqa: BLE001 - already closed
            pass


async def relay(client_reader, client_writer, open_upstream):
    try:
        upstream_reader, upstream_writer = await open_upstream()
    except OSError as error:
        print(f"forward.py: cannot reach the target: {error}", file=sys.stderr, flush=True)
        client_writer.close()
        return
    await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))


async def main() -> None:
    mode, first, second = sys.argv[1:4]
    if mode == "listen":
        host, port = first.rsplit(":", 1)
        server = await asyncio.start_server(
            lambda r, w: relay(r, w, lambda: asyncio.open_unix_connection(second)), host, int(port))
    elif mode == "connect":
        url = urllib.parse.urlsplit(second)
        if url.scheme != "http" or not url.hostname:
            sys.exit(f"forward.py: expected http://HOST[:PORT], got {second}")
        if os.path.exists(first):
            os.unlink(first)
        server = await asyncio.start_unix_server(
            lambda r, w: relay(r, w, lambda: asyncio.open_connection(url.hostname, url.port or 80)),
            first)
    else:
        sys.exit(f"forward.py: unknown mode {mode}")
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
