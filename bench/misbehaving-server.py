#!/usr/bin/env python3
"""A stand-in homeserver on 127.0.0.1 for checking the harness's error paths (not a benchmark).

  bench/misbehaving-server.py PORT unserved   # /versions only; everything else 404 M_UNRECOGNIZED
  bench/misbehaving-server.py PORT garbage    # enough API for set-up, then 4 of 5 syncs and sends
                                              # get a truncated body, a non-HTTP reply, a dropped
                                              # connection or a non-JSON body

Then e.g. `myelin-bench fanout --url http://127.0.0.1:PORT --users 10 --members 10 --senders 2
--duration 8 --concurrency 2`: the run must end with a report whose errors line counts
`malformed`, `connection-lost`, `malformed-body` (and `refused` once this server is stopped),
or, for `unserved`, with the endpoint named. It must never crash.
"""
import http.server, itertools, json, sys, time

PORT, MODE = int(sys.argv[1]), sys.argv[2]
counter = itertools.count()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        path, i = self.path, next(counter)
        if "/versions" in path:
            return self.json(200, {"versions": ["v1.11"]})
        if MODE == "unserved":
            return self.json(404, {"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"})
        if "/register" in path:
            return self.json(200, {"user_id": "@u%d:fake" % i, "access_token": "t%d" % i})
        if "/createRoom" in path:
            return self.json(200, {"room_id": "!r%d:fake" % i})
        if "/join/" in path:
            return self.json(200, {"room_id": "!r:fake"})
        if ("/sync" in path and "timeout=0" not in path) or "/send/" in path:
            kind = i % 5
            if kind == 0:  # truncated body, then close
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc")
                self.close_connection = True
                return
            if kind == 1:  # not HTTP at all
                self.wfile.write(b"GARBAGE\r\n\r\n")
                self.close_connection = True
                return
            if kind == 2:  # drop the connection without a byte
                self.close_connection = True
                return
            if kind == 3:  # 200 with a body that is not JSON
                return self.raw(200, b"not json")
            time.sleep(0.2)
        return self.json(200, {"next_batch": "s%d" % i, "event_id": "$e%d" % i})

    def json(self, code, body):
        self.raw(code, json.dumps(body).encode(), "application/json")

    def raw(self, code, body, ctype="text/plain"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = reply

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # the harness closing connections mid-request is expected here


Server(("127.0.0.1", PORT), Handler).serve_forever()
