#!/usr/bin/env python3
"""egress_sink.py PORT SECONDS OUT - an HTTP/1.1 origin that reads request bodies (Content-Length)
and answers 200, counting the body bytes it receives in each whole second; after SECONDS it
writes one count per line to OUT and exits. For bench/egress.sh."""
import asyncio, os, sys, time

PORT, SECONDS, OUT = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
counts = {}
t0 = None


async def serve(reader, writer):
    global t0
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            while length > 0:
                chunk = await reader.read(min(length, 262144))
                if not chunk:
                    return
                length -= len(chunk)
                now = time.monotonic()
                t0 = t0 or now
                sec = int(now - t0)
                counts[sec] = counts.get(sec, 0) + len(chunk)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
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
    os._exit(0)  # connections may still be open: no orderly shutdown needed


asyncio.run(main())
