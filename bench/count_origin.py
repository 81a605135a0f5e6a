#!/usr/bin/env python3
"""count_origin.py PORT SECONDS OUT - an HTTP/1.1 origin answering every request with 200 "ok",
counting arrivals per whole second since the first; writes "second count" lines to OUT after
SECONDS and exits. For bench/cluster.sh."""
import asyncio, os, sys, time

PORT, SECONDS, OUT = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
counts, t0 = {}, [None]
REPLY = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n"


async def serve(reader, writer):
    try:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            now = time.monotonic()
            t0[0] = t0[0] or now
            sec = int(now - t0[0])
            counts[sec] = counts.get(sec, 0) + 1
            writer.write(REPLY)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    await asyncio.start_server(serve, "127.0.0.1", PORT)
    await asyncio.sleep(SECONDS)
    with open(OUT, "w") as f:
        for sec in sorted(counts):
            f.write("%d %d\n" % (sec, counts[sec]))
    os._exit(0)


asyncio.run(main())
