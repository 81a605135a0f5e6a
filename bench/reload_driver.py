#!/usr/bin/env python3
"""reload_driver.py - posts N live reloads (or, with --control, N GET /healthz) spread over a
window, from one process: no fork/exec per call, so the control run and the reload run load the
machine the same way. For reloads it swaps the config file between the given alternatives
(written to a temp file and renamed) before each POST. Prints the answers' status codes and the
reload round trip in ms (what POST /reload took until every worker had switched)."""
import argparse, http.client, os, shutil, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--admin", required=True, help="host:port of the admin listener")
ap.add_argument("--config", required=True, help="the file the gateway was started with")
ap.add_argument("--alt", nargs="+", default=[], help="config files to alternate between")
ap.add_argument("--count", type=int, default=20)
ap.add_argument("--window", type=float, default=8.0, help="seconds to spread the calls over")
ap.add_argument("--delay", type=float, default=1.0, help="seconds before the first call")
ap.add_argument("--control", action="store_true", help="GET /healthz instead of reloading")
a = ap.parse_args()
host, port = a.admin.rsplit(":", 1)
time.sleep(a.delay)
gap = a.window / a.count
codes, took = [], []
start = time.monotonic()
for i in range(a.count):
    if not a.control:
        tmp = a.config + ".tmp"
        shutil.copyfile(a.alt[i % len(a.alt)], tmp)
        os.replace(tmp, a.config)
    c = http.client.HTTPConnection(host, int(port), timeout=5)
    t0 = time.monotonic()
    if a.control:
        c.request("GET", "/healthz")
    else:
        c.request("POST", "/reload", body=b"")
    r = c.getresponse()
    r.read()
    took.append((time.monotonic() - t0) * 1000)
    codes.append(r.status)
    c.close()
    nxt = start + (i + 1) * gap
    time.sleep(max(0.0, nxt - time.monotonic()))
took.sort()
print("answers: %s; round trip median %.2f ms, max %.2f ms" % (
    " ".join(str(c) for c in codes), took[len(took) // 2], took[-1]))
sys.exit(0 if all(c == 200 for c in codes) else 1)
