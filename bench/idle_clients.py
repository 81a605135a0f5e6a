#!/usr/bin/env python3
"""Opens N keep-alive HTTP/1.1 connections to HOST:PORT (bench/idle.sh): each sends one GET for
"/" and reads its response (Content-Length framed), then stays open and silent. Touches
READY_FILE when all are open; runs until killed. usage: idle_clients.py [--tls] [--silent] HOST
PORT N READY_FILE (--tls: TLS without certificate checks, the benchmark's self-signed
certificate; --silent: no request, the connections stay as opened, after the TLS handshake)"""
import signal
import socket
import ssl
import sys

args = sys.argv[1:]
tls = "--tls" in args
silent = "--silent" in args
args = [a for a in args if a not in ("--tls", "--silent")]
if tls:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
host, port, n, ready = args[0], int(args[1]), int(args[2]), args[3]
conns = []
for _ in range(n):
    s = socket.create_connection((host, port), timeout=10)
    if tls:
        s = ctx.wrap_socket(s, server_hostname="localhost")
    if silent:
        conns.append(s)
        continue
    s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, _, body = buf.partition(b"\r\n\r\n")
    length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
    while len(body) < length:
        body += s.recv(65536)
    conns.append(s)
open(ready, "w").close()
signal.sigwait([signal.SIGTERM, signal.SIGINT])
