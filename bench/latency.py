"""A TCP proxy that delays every chunk by a fixed time each way: a distant
server on a loopback port.

    .venv/bin/python -m bench.latency --port 2526 --to 2525 --delay-ms 5

Bytes keep their order and arrive `delay-ms` after they were sent, however
many are in flight: what a network round trip of twice that does to SMTP.
It prints "ready" once it listens and stops on SIGTERM.
"""

import argparse
import asyncio
import signal


async def _pump(reader, writer, delay: float) -> None:
    loop = asyncio.get_running_loop()
    chunks = asyncio.Queue()

    async def deliver():
        while True:
            due, data = await chunks.get()
            if data is None:
                writer.close()
                return
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()

    delivering = asyncio.create_task(deliver())
    try:
        while data := await reader.read(65536):
            chunks.put_nowait((loop.time() + delay, data))
    except ConnectionError:
        pass
    chunks.put_nowait((0, None))
    try:
        await delivering
    except ConnectionError:
        pass


async def serve(port: int, target: int, delay: float) -> None:
    async def connected(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(
                "127.0.0.1", target
            )
        except OSError:
            client_writer.close()
            return
        try:
            await asyncio.gather(
                _pump(client_reader, server_writer, delay),
                _pump(server_reader, client_writer, delay),
            )
        except asyncio.CancelledError:
            pass  # the proxy is stopping

    server = await asyncio.start_server(connected, "127.0.0.1", port, backlog=1024)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    print("ready", flush=True)
    async with server:
        await stopped.wait()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--to", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=5)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port, args.to, args.delay_ms / 1000))


if __name__ == "__main__":
    main()
