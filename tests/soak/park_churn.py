#!/usr/bin/env python3
"""Keep-alive clients that speak right around ringway's park delay (tests/soak/park_churn.sh):
N connections, each sending its next GET after a pause drawn from just under, at and just over
1 s (the default idle_park_ms) or at once, 30% of them split across two writes, for DUR
seconds. Every response must be a complete 200 and no connection may be closed on us.
Prints "ok N bad M"; exit status 1 when anything went wrong.
usage: park_churn.py PORT N DUR"""
import random
import selectors
import socket
import sys
import time

port, n, dur = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
sel = selectors.DefaultSelector()
t0 = time.time()
ok = bad = 0
state = {}
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.setblocking(False)
    state[s] = {"next": t0 + random.uniform(0, 1.3), "buf": b"", "waiting": False, "i": i, "k": 0}
    sel.register(s, selectors.EVENT_READ)
while time.time() - t0 < dur:
    now = time.time()
    for s, st in state.items():
        if not st["waiting"] and now >= st["next"]:
            st["k"] += 1
            req = f"GET /c{st['i']}/{st['k']} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            if random.random() < 0.3:
                s.send(req[:7])
                time.sleep(0.0005)
                s.send(req[7:])
            else:
                s.send(req)
            st["waiting"] = True
    for key, _ in sel.select(timeout=0.01):
        s = key.fileobj
        st = state[s]
        d = s.recv(65536)
        if not d:
            print("closed on us: connection", st["i"])
            bad += 1
            sel.unregister(s)
            st["waiting"], st["next"] = True, float("inf")
            continue
        st["buf"] += d
        head, sep, body = st["buf"].partition(b"\r\n\r\n")
        if not sep:
            continue
        cl = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")]
        if cl and len(body) >= cl[0]:
            if head.startswith(b"HTTP/1.1 200"):
                ok += 1
            else:
                bad += 1
                print("unexpected:", head[:40])
            st["buf"] = body[cl[0]:]
            st["waiting"] = False
            pause = random.choice([random.uniform(0.9, 1.2), random.uniform(0, 0.05), random.uniform(1.0, 1.1)])
            st["next"] = time.time() + pause
print("ok", ok, "bad", bad)
sys.exit(1 if bad or not ok else 0)
