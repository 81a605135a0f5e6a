#!/usr/bin/env python3
"""Opens N idle HTTP/2 connections over TLS (ALPN h2) to HOST:PORT for bench/h2.sh: each does the
handshake, sends the preface, SETTINGS and one GET for "/", reads until the response ended, and
then stays open. Touches READY_FILE when all are open; runs until killed.

usage: h2-idle.py HOST PORT N READY_FILE
"""
import signal
import socket
import ssl
import sys
import time

import hpack
from hyperframe import frame as hf

host, port, n, ready = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["h2"])
settings = hf.SettingsFrame(0).serialize()
ack = hf.SettingsFrame(0)
ack.flags.add("ACK")
conns = []
for i in range(n):
    s = ctx.wrap_socket(socket.create_connection((host, port), timeout=10), server_hostname="localhost")
    h = hf.HeadersFrame(1)
    h.data = hpack.Encoder().encode([(":method", "GET"), (":scheme", "https"), (":path", "/"),
                                     (":authority", "%s:%d" % (host, port))])
    h.flags.add("END_HEADERS")
    h.flags.add("END_STREAM")
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + settings + ack.serialize() + h.serialize())
    buf = b""
    deadline = time.time() + 10
    done = False
    while not done and time.time() < deadline:
        buf += s.recv(65536)
        while len(buf) >= 9:
            f, length = hf.Frame.parse_frame_header(memoryview(buf[:9]))
            if len(buf) < 9 + length:
                break
            buf = buf[9 + length:]
            if f.stream_id == 1 and "END_STREAM" in f.flags:
                done = True
    conns.append(s)
open(ready, "w").close()
signal.sigwait([signal.SIGTERM, signal.SIGINT])
