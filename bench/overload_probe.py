#!/usr/bin/env python3
"""New-connection probe and accept-queue sampler for bench/overload.sh. Every INTERVAL seconds
for DUR seconds: opens a new TCP connection to HOST:PORT, sends `GET / HTTP/1.1` with
`Connection: close`, reads to EOF and records the time from connect() to the last byte (a probe
that gets no answer within 10 s counts as 10 s); and reads the listening socket's accept queue
(Recv-Q of `ss -ltn` for the port). Prints one JSON object: probe_ms (sorted), queue (samples).
usage: overload_probe.py HOST PORT DUR INTERVAL"""
import json
import socket
import subprocess
import sys
import time

host, port, dur, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
probe_ms, queue = [], []
end = time.monotonic() + dur
while time.monotonic() < end:
    tick = time.monotonic()
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
    queue.extend(int(line.split()[1]) for line in out.splitlines() if line.strip())
    t0 = time.monotonic()
    try:
        s = socket.create_connection((host, port), timeout=10)
        s.settimeout(max(0.1, 10 - (time.monotonic() - t0)))
        s.sendall(b"GET / HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
        got = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            got += b
        s.close()
        ok = got.startswith(b"HTTP/1.1 200")
    except OSError:
        ok = False
    probe_ms.append((time.monotonic() - t0) * 1e3 if ok else 10_000.0)
    time.sleep(max(0.0, interval - (time.monotonic() - tick)))
print(json.dumps({"probe_ms": sorted(probe_ms), "queue": queue}))
