#!/usr/bin/env python3
"""origin_counter.py [--bytes] PORT SECONDS OUT - an HTTP/1.1 origin for the benches that
answers every request 200 (reading Content-Length bodies) and counts, per whole second since the
first arrival, requests (default) or received body bytes (--bytes). After SECONDS it writes
"second count" lines to OUT and exits. Used by bench/cluster.sh and bench/egress.sh."""
import asyncio, os, sys, time

args = sys.argv[1:]
BYTES = args[0] == "--bytes"
if BYTES:
    args = args[1:]
PORT, SECONDS, OUT = int(args[0]), float(args[1]), args[2]
counts, t0 = {}, [None]
REPLY = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n"


def count(n):
    now = time.monotonic()
    t0[0] = t0[0] or now
    sec = int(now - t0[0])
    counts[sec] = counts.get(sec, 0) + n


async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if not BYTES:
                count(1)
            while length > 0:
                chunk = await reader.read(min(length, 262144))
                if not chunk:
                    return
                length -= len(chunk)
                if BYTES:
                    count(len(chunk))
            writer.write(REPLY)
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
