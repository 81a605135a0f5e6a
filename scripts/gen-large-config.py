#!/usr/bin/env python3
"""Writes a large ringway config (the metrics-at-scale fixture): N APIs spread over services and
M upstreams, every upstream pointing at ORIGIN (one address, used by all), one listener and the
admin endpoint. Every API answers GET /s<svc>/a<i>, so a client can reach each one.

    python3 scripts/gen-large-config.py --apis 2000 --upstreams 500 --origin 127.0.0.1:8081 \\
        --listen 127.0.0.1:8080 --admin 127.0.0.1:9901 --workers 2 > big.toml
"""
import argparse

ap = argparse.ArgumentParser()
ap.add_argument("--apis", type=int, default=2000)
ap.add_argument("--upstreams", type=int, default=500)
ap.add_argument("--services", type=int, default=50)
ap.add_argument("--origin", default="127.0.0.1:8081")
ap.add_argument("--listen", default="127.0.0.1:0")
ap.add_argument("--admin", default="127.0.0.1:0")
ap.add_argument("--workers", default="2")
ap.add_argument("--driver", default="auto")
a = ap.parse_args()

workers = a.workers if a.workers == "auto" else int(a.workers)
out = [
    "[instance]",
    f"workers = {workers!r}".replace("'", '"'),
    f'io_driver = "{a.driver}"',
    "",
    "[admin]",
    f'listen = "{a.admin}"',
    "",
    "[[listener]]",
    f'listen = "{a.listen}"',
    "",
]
for u in range(a.upstreams):
    out += [f"[upstream.u{u}]", f'endpoints = [{{ addr = "{a.origin}" }}]', ""]
per_service = -(-a.apis // a.services)
for s in range(a.services):
    out += [f"[service.s{s}]", f'base_path = "/s{s}"', ""]
    for i in range(s * per_service, min(a.apis, (s + 1) * per_service)):
        out += [
            f"[[service.s{s}.api]]",
            f'name = "a{i}"',
            'methods = ["GET"]',
            f'path = "/a{i}"',
            f'upstream = "u{i % a.upstreams}"',
            "",
        ]
print("\n".join(out))
