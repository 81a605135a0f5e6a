#!/usr/bin/env python3
"""Raw HTTP/2 client for ringway's tests (tests/http2.rs): sends exactly the frames a scenario
names (hyperframe + hpack from the Python `h2` project, so malformed and abusive sequences can
be sent too) and reports, as one JSON object, everything the server answered:

  {"goaway": {"code": 11, "last_stream": 0} | null, "closed": true|false,
   "streams": {"1": {"status": 200, "headers": {...}, "body": "...", "body_len": 3,
                     "ended": true, "reset": null}}, "order": [1, 3, ...]}

usage: h2-probe.py SCENARIO HOST PORT [--tls CA_FILE] [--path /x] [--count N] [--wait S]
                   [--pause S]

Scenarios: get, get_pause_get, concurrent, cookies, host_mismatch, connection_header, te_gzip,
length_mismatch, post_chunks, rapid_reset, continuation_flood, hpack_bomb, settings_flood,
ping_flood, empty_data_flood, zero_window_update_flood, stream_reuse, oversized_frame,
bad_preface, garbage_preface, reset_after_headers, idle.
"""
import argparse
import json
import socket
import ssl
import sys
import time

try:
    import hpack
    from hyperframe import frame as hf
except ImportError:
    print("MISSING COMPONENT: Python h2 (pip install h2) for hyperframe/hpack", file=sys.stderr)
    sys.exit(3)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ERRORS = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
          5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM", 8: "CANCEL",
          9: "COMPRESSION_ERROR", 11: "ENHANCE_YOUR_CALM"}


class Probe:
    def __init__(self, host, port, ca):
        raw = socket.create_connection((host, port), timeout=5)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ca:
            ctx = ssl.create_default_context(cafile=ca)
            ctx.set_alpn_protocols(["h2"])
            raw = ctx.wrap_socket(raw, server_hostname="localhost")
            if raw.selected_alpn_protocol() != "h2":
                raise SystemExit("ALPN did not select h2: %r" % raw.selected_alpn_protocol())
        self.sock = raw
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.dec.max_allowed_table_size = 65536
        self.buf = b""
        self.out = {"goaway": None, "closed": False, "streams": {}, "order": [], "host": host, "port": port}
        self.authority = "%s:%d" % (host, port)
        # send windows (RFC 9113 §6.9): the connection's and each stream's
        self.conn_window = 65535
        self.initial_window = 65535
        self.windows = {}

    # --- sending -------------------------------------------------------------------------------
    def send(self, *frames):
        self.sock.sendall(b"".join(f if isinstance(f, bytes) else f.serialize() for f in frames))

    def start(self, settings=None):
        s = hf.SettingsFrame(0)
        for k, v in (settings or {}).items():
            s.settings[k] = v
        self.send(PREFACE, s)

    def block(self, path, method="GET", extra=(), authority=True):
        fields = [(":method", method), (":scheme", "https" if isinstance(self.sock, ssl.SSLSocket) else "http"),
                  (":path", path)]
        if authority:
            fields.append((":authority", self.authority))
        return self.enc.encode(fields + list(extra))

    def headers(self, stream, path, end_stream=True, **kw):
        f = hf.HeadersFrame(stream)
        f.data = self.block(path, **kw)
        f.flags.add("END_HEADERS")
        if end_stream:
            f.flags.add("END_STREAM")
        return f

    def data(self, stream, payload, end_stream=False):
        f = hf.DataFrame(stream)
        f.data = payload
        if end_stream:
            f.flags.add("END_STREAM")
        return f

    def rst(self, stream, code=8):
        f = hf.RstStreamFrame(stream)
        f.error_code = code
        return f

    # --- receiving -----------------------------------------------------------------------------
    def stream(self, sid):
        return self.out["streams"].setdefault(str(sid), {"status": None, "headers": {}, "body": "", "body_len": 0,
                                                          "ended": False, "reset": None})

    def read_until(self, done, wait):
        """Reads frames until done(out) is true, GOAWAY + close, or `wait` seconds pass."""
        deadline = time.time() + wait
        while time.time() < deadline and not done(self.out):
            self.sock.settimeout(max(0.01, deadline - time.time()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                break
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
                self.out["closed"] = True
                break
            if not chunk:
                self.out["closed"] = True
                break
            self.buf += chunk
            self.parse()
        return self.out

    def parse(self):
        while len(self.buf) >= 9:
            f, length = hf.Frame.parse_frame_header(memoryview(self.buf[:9]))
            if len(self.buf) < 9 + length:
                return
            f.parse_body(memoryview(self.buf[9:9 + length]))
            self.buf = self.buf[9 + length:]
            self.frame(f)

    def frame(self, f):
        sid = f.stream_id
        if isinstance(f, hf.GoAwayFrame):
            self.out["goaway"] = {"code": f.error_code, "name": ERRORS.get(f.error_code, "?"),
                                  "last_stream": f.last_stream_id}
        elif isinstance(f, hf.HeadersFrame):
            s = self.stream(sid)
            for k, v in self.dec.decode(f.data, raw=False):
                if k == ":status":
                    if int(v) >= 200:
                        s["status"] = int(v)
                else:
                    s["headers"][k] = v
            if "END_STREAM" in f.flags:
                self.end(sid)
        elif isinstance(f, hf.DataFrame):
            s = self.stream(sid)
            s["body_len"] += len(f.data)
            if len(s["body"]) < 2000:
                s["body"] += f.data.decode("latin-1")
            if f.flow_controlled_length:
                self.send(*[wu(0, f.flow_controlled_length), wu(sid, f.flow_controlled_length)])
            if "END_STREAM" in f.flags:
                self.end(sid)
        elif isinstance(f, hf.RstStreamFrame):
            s = self.stream(sid)
            s["reset"] = ERRORS.get(f.error_code, str(f.error_code))
            self.out["order"].append(sid)
        elif isinstance(f, hf.WindowUpdateFrame):
            if sid == 0:
                self.conn_window += f.window_increment
            else:
                self.windows[sid] = self.windows.get(sid, self.initial_window) + f.window_increment
        elif isinstance(f, hf.SettingsFrame) and "ACK" not in f.flags:
            iw = f.settings.get(hf.SettingsFrame.INITIAL_WINDOW_SIZE)
            if iw is not None:
                self.initial_window = iw
            ack = hf.SettingsFrame(0)
            ack.flags.add("ACK")
            try:
                self.send(ack)
            except OSError:
                pass
        elif isinstance(f, hf.PingFrame) and "ACK" not in f.flags:
            pong = hf.PingFrame(0)
            pong.opaque_data = f.opaque_data
            pong.flags.add("ACK")
            try:
                self.send(pong)
            except OSError:
                pass

    def send_data_flow(self, sid, payload, end_stream, wait):
        """Sends DATA within the send windows, reading the server's WINDOW_UPDATEs as needed."""
        need = len(payload)
        deadline = time.time() + wait
        while min(self.conn_window, self.windows.get(sid, self.initial_window)) < need:
            if time.time() > deadline or self.out["closed"]:
                raise SystemExit("no window for stream %d" % sid)
            self.read_until(lambda out: False, 0.05)
        self.conn_window -= need
        self.windows[sid] = self.windows.get(sid, self.initial_window) - need
        self.send(self.data(sid, payload, end_stream))

    def end(self, sid):
        self.stream(sid)["ended"] = True
        self.out["order"].append(sid)


def wu(sid, n):
    f = hf.WindowUpdateFrame(sid)
    f.window_increment = n
    return f


def finished(n):
    return lambda out: len(out["order"]) >= n or out["goaway"] is not None and out["closed"]


def gone(out):
    return out["closed"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario")
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--tls")
    ap.add_argument("--path", default="/")
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--wait", type=float, default=5.0)
    ap.add_argument("--pause", type=float, default=0.0)
    a = ap.parse_args()
    p = Probe(a.host, a.port, a.tls)
    sc, path, wait = a.scenario, a.path, a.wait
    try:
        run(p, sc, path, a.count, wait, a.pause)
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
        # the server closed while we were still sending: read what it said before
        p.out["send_failed"] = True
        p.read_until(gone, wait)
    print(json.dumps(p.out))


def run(p, sc, path, count, wait, pause):
    if sc == "get":
        p.start()
        p.send(p.headers(1, path))
        p.read_until(finished(1), wait)
    elif sc == "get_pause_get":
        # a stream, `pause` seconds of silence on the connection, then another stream
        p.start()
        p.send(p.headers(1, path))
        p.read_until(finished(1), wait)
        time.sleep(pause)
        p.send(p.headers(3, path + "/again"))
        p.read_until(finished(2), wait)
    elif sc == "concurrent":
        # `count` streams on one connection: stream 1 asks for `path` (slow), the rest for /fast/N
        p.start()
        frames = [p.headers(1, path)] + [p.headers(2 * i + 1, "/fast/%d" % i) for i in range(1, count)]
        p.send(*frames)
        p.read_until(finished(count), wait)
    elif sc == "cookies":
        p.start()
        p.send(p.headers(1, path, extra=[("cookie", "a=1"), ("x-other", "y"), ("cookie", "b=2")]))
        p.read_until(finished(1), wait)
    elif sc == "host_mismatch":
        p.start()
        p.send(p.headers(1, path, extra=[("host", "elsewhere.example")]))
        p.read_until(finished(1), wait)
    elif sc == "connection_header":
        p.start()
        p.send(p.headers(1, path, extra=[("connection", "keep-alive")]))
        p.read_until(finished(1), wait)
    elif sc == "te_gzip":
        p.start()
        p.send(p.headers(1, path, extra=[("te", "gzip")]))
        p.read_until(finished(1), wait)
    elif sc == "te_trailers":
        p.start()
        p.send(p.headers(1, path, extra=[("te", "trailers")]))
        p.read_until(finished(1), wait)
    elif sc == "length_mismatch":
        # content-length 10, 4 bytes of DATA, end of stream
        p.start()
        p.send(p.headers(1, path, end_stream=False, method="POST", extra=[("content-length", "10")]),
               p.data(1, b"abcd", end_stream=True))
        p.read_until(finished(1), wait)
    elif sc == "post_chunks":
        # a body of `count` DATA frames of 1000 bytes without content-length
        p.start()
        p.send(p.headers(1, path, end_stream=False, method="POST"))
        for i in range(count):
            p.send_data_flow(1, bytes([65 + i % 26]) * 1000, i == count - 1, wait)
        p.read_until(finished(1), wait)
    elif sc == "reset_after_headers":
        # a request and its reset in one write: it must never reach the upstream
        p.start()
        p.send(p.headers(1, path), p.rst(1))
        p.send(p.headers(3, "/fast/after"))
        p.read_until(finished(1), wait)
    elif sc == "rapid_reset":
        p.start()
        sid = 1
        for _ in range(max(count, 1) // 50):
            frames = []
            for _ in range(50):
                frames += [p.headers(sid, path), p.rst(sid)]
                sid += 2
            p.send(*frames)
        p.read_until(gone, wait)
    elif sc == "continuation_flood":
        # one header block that never ends: HEADERS without END_HEADERS, then CONTINUATION frames
        # each carrying another literal field
        p.start()
        h = hf.HeadersFrame(1)
        h.data = p.block(path)
        h.flags.add("END_STREAM")
        p.send(h)
        for i in range(count or 10000):
            c = hf.ContinuationFrame(1)
            c.data = hpack.Encoder().encode([("x-flood-%d" % i, "v" * 100)])
            p.send(c)
        p.read_until(gone, wait)
    elif sc == "hpack_bomb":
        # one 4 000-byte field into the dynamic table, then a block referencing it 1 000 times
        # (4 MB decoded from ~1 KB on the wire)
        p.start()
        first = p.headers(1, path, extra=[("x-bomb", "b" * 4000)])
        p.send(first)
        h = hf.HeadersFrame(3)
        h.data = p.block(path) + bytes([0x80 | 62]) * 1000
        h.flags.add("END_HEADERS")
        h.flags.add("END_STREAM")
        p.send(h)
        p.read_until(lambda out: gone(out) or len(out["order"]) >= 2, wait)
    elif sc == "settings_flood":
        p.start()
        p.send(*[hf.SettingsFrame(0) for _ in range(count or 1000)])
        p.read_until(gone, wait)
    elif sc == "ping_flood":
        p.start()
        frames = []
        for i in range(count or 1000):
            f = hf.PingFrame(0)
            f.opaque_data = i.to_bytes(8, "big")
            frames.append(f)
        p.send(*frames)
        p.read_until(gone, wait)
    elif sc == "empty_data_flood":
        p.start()
        p.send(p.headers(1, path, end_stream=False, method="POST"))
        p.send(*[p.data(1, b"") for _ in range(count or 1000)])
        p.read_until(gone, wait)
    elif sc == "zero_window_update_flood":
        p.start()
        frames = []
        for i in range(count or 1000):
            sid = 2 * i + 1
            frames += [p.headers(sid, path, end_stream=False, method="POST"), wu(sid, 0)]
        p.send(*frames[:400])
        p.send(*frames[400:])
        p.read_until(gone, wait)
    elif sc == "stream_reuse":
        p.start()
        p.send(p.headers(3, path))
        p.read_until(finished(1), wait)
        p.send(p.headers(1, path))
        p.read_until(gone, wait)
    elif sc == "oversized_frame":
        p.start()
        p.send(p.headers(1, path, end_stream=False, method="POST"))
        f = p.data(1, b"x" * 20000)
        p.send(f)
        p.read_until(gone, wait)
    elif sc == "idle":
        p.start()
        p.read_until(gone, wait)
    elif sc == "garbage_preface":
        # ALPN said h2, then HTTP/1.1 bytes instead of the preface
        p.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        p.read_until(gone, wait)
    elif sc == "bad_preface":
        p.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x01")
        p.read_until(gone, wait)
    else:
        raise SystemExit("unknown scenario " + sc)


if __name__ == "__main__":
    main()
