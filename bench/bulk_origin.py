#!/usr/bin/env python3
"""Origin for bench/bulk.sh (HTTP/1.1 keep-alive, one thread per connection). GET /<file> sends
that file from DIR with Content-Length by sendfile(2); PUT/POST reads the whole request body
(Content-Length framed) into a reused buffer and discards it, then answers 200 with the byte
count, so an upload's response comes only after every byte went through the proxy.
usage: bulk_origin.py PORT DIR"""
import http.server
import os
import socketserver
import sys

port, root = int(sys.argv[1]), sys.argv[2]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = os.path.join(root, os.path.basename(self.path))
        try:
            f = open(path, "rb")
        except OSError:
            self.send_error(404)
            return
        with f:
            size = os.fstat(f.fileno()).st_size
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self.wfile.flush()
            self.connection.sendfile(f)

    def do_PUT(self):
        left = int(self.headers.get("Content-Length", "0"))
        buf = memoryview(bytearray(1 << 20))
        got = 0
        while left > 0:
            n = self.rfile.readinto(buf[: min(left, len(buf))])
            if not n:
                return
            left -= n
            got += n
        body = b"%d\n" % got
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 1024


Server(("127.0.0.1", port), Handler).serve_forever()
