#!/usr/bin/env python3
"""An independent loader for sync fan-out (issue 22, scenario (a)), not sharing code with
myelin-bench: plain asyncio sockets and HTTP/1.1 keep-alive, the standard library only.

    python3 bench/sync_loader.py --url http://127.0.0.1:18010 \
        --users 1000 --rooms 10 --members 100 --senders 10 --rate 1 --duration 60

It registers users (UIA m.login.dummy; run the server with rate limits off and open
registration), creates the rooms (room r holds users r*members .. r*members+members-1,
wrapping), joins them, does an initial sync per user, then holds one long-poll per user while
`senders` users (one per room, round robin) send `rate` messages per second each. Each
message carries an id; the time from the send's start to the sync response that carries it to
each member (the sender included) is a delivery. After the sends, it waits `--grace` seconds
and counts the deliveries never seen as lost.

Prints delivery latency p50/p99/max, send latency p50/p99/max and the counts, and with
--json FILE appends one JSON line.
"""
import argparse
import asyncio
import json
import os
import random
import string
import sys
import time
import urllib.parse


class HTTPError(Exception):
    pass


class Connection:
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def request(self, method, path, body=None, token=None, timeout=120.0):
        for attempt in (0, 1):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 24)
            data = b"" if body is None else json.dumps(body).encode()
            head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Length: {len(data)}\r\n"
            if body is not None:
                head += "Content-Type: application/json\r\n"
            if token:
                head += f"Authorization: Bearer {token}\r\n"
            try:
                self.writer.write(head.encode() + b"\r\n" + data)
                return await asyncio.wait_for(self._response(), timeout)
            except (ConnectionError, asyncio.IncompleteReadError) as error:
                self.close()
                if attempt == 1:
                    raise HTTPError(f"{method} {path}: {error!r}")
        raise HTTPError("unreachable")

    async def _response(self):
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("closed")
        status = int(status_line.split()[1])
        length, chunked, close = 0, False, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "connection" and value.lower() == "close":
                close = True
        if chunked:
            parts = []
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readline()
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            payload = b"".join(parts)
        else:
            payload = await self.reader.readexactly(length) if length else b""
        if close:
            self.close()
        return status, payload

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def percentile(values, q):
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(round(q * len(ordered) + 0.4999))))
    return ordered[rank - 1]


async def call(conn, method, path, body=None, token=None, ok=(200,), timeout=120.0):
    status, payload = await conn.request(method, path, body, token, timeout)
    if status not in ok:
        raise HTTPError(f"{method} {path} -> {status}: {payload[:200]!r}")
    return json.loads(payload) if payload else {}


async def pool_map(count, concurrency, host, port, job):
    """Runs job(i, conn) for i in 0..<count with `concurrency` connections."""
    queue = list(range(count))
    queue.reverse()

    async def worker():
        conn = Connection(host, port)
        try:
            while queue:
                i = queue.pop()
                await job(i, conn)
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def register(conn, localpart, password):
    body = {"username": localpart, "password": password, "auth": {"type": "m.login.dummy"},
            "initial_device_display_name": "sync_loader"}
    status, payload = await conn.request("POST", "/_matrix/client/v3/register", body)
    if status == 401:
        session = json.loads(payload).get("session")
        body["auth"]["session"] = session
        status, payload = await conn.request("POST", "/_matrix/client/v3/register", body)
    if status != 200:
        raise HTTPError(f"register {localpart} -> {status}: {payload[:200]!r}")
    return json.loads(payload)["access_token"]


FILTER = json.dumps({
    "presence": {"types": []}, "account_data": {"types": []},
    "room": {"timeline": {"limit": 50}, "state": {"types": []}, "ephemeral": {"types": []},
             "account_data": {"types": []}},
}, separators=(",", ":"))


async def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:18010")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--senders", type=int, default=10)
    parser.add_argument("--rate", type=float, default=1.0, help="messages per second per sender")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of sending")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds to wait for deliveries after the sends")
    parser.add_argument("--poll-timeout", type=int, default=30000, help="long-poll timeout (ms)")
    parser.add_argument("--concurrency", type=int, default=16, help="connections used for set-up")
    parser.add_argument("--json", help="append one JSON line of results to this file")
    parser.add_argument("--metrics-path", help="the server's metrics page (e.g. /_myelin/metrics): saved "
                        "right before and right after the measured phase")
    parser.add_argument("--metrics-out", default="metrics", help="prefix of the saved pages (PREFIX-before.txt, -after.txt)")
    parser.add_argument("--server-pid", type=int, help="report this process's CPU time over the measured phase")
    args = parser.parse_args()

    url = urllib.parse.urlsplit(args.url)
    host, port = url.hostname, url.port or 80
    run = "".join(random.choice(string.ascii_lowercase) for _ in range(6))
    password = "loader-" + run
    members = min(args.members, args.users)
    plans = [[(r * members + k) % args.users for k in range(members)] for r in range(args.rooms)]
    rooms_of = [[] for _ in range(args.users)]
    for r, plan in enumerate(plans):
        for u in plan:
            rooms_of[u].append(r)

    t = time.monotonic()
    tokens = [None] * args.users

    async def do_register(i, conn):
        tokens[i] = await register(conn, f"ld{run}u{i}", password)
    await pool_map(args.users, args.concurrency, host, port, do_register)
    print(f"registered {args.users} users in {time.monotonic() - t:.1f} s", flush=True)

    t = time.monotonic()
    room_ids = [None] * args.rooms

    async def do_create(r, conn):
        body = {"preset": "public_chat", "name": f"loader {run} {r}", "visibility": "private"}
        room_ids[r] = (await call(conn, "POST", "/_matrix/client/v3/createRoom", body, tokens[plans[r][0]]))["room_id"]
    await pool_map(args.rooms, min(args.rooms, args.concurrency), host, port, do_create)
    joins = [(r, plans[r][k]) for k in range(1, members) for r in range(args.rooms)]

    async def do_join(j, conn):
        r, u = joins[j]
        await call(conn, "POST", "/_matrix/client/v3/join/" + urllib.parse.quote(room_ids[r], safe=""), {}, tokens[u])
    await pool_map(len(joins), args.concurrency, host, port, do_join)
    print(f"created {args.rooms} rooms, {len(joins)} joins in {time.monotonic() - t:.1f} s", flush=True)

    t = time.monotonic()
    since = [None] * args.users
    query = "/_matrix/client/v3/sync?filter=" + urllib.parse.quote(FILTER, safe="")

    async def do_initial(i, conn):
        body = await call(conn, "GET", query + "&timeout=0", token=tokens[i], timeout=300)
        body = await call(conn, "GET", query + "&timeout=0&since=" + urllib.parse.quote(body["next_batch"], safe=""),
                          token=tokens[i], timeout=300)
        since[i] = body["next_batch"]
    await pool_map(args.users, args.concurrency, host, port, do_initial)
    print(f"initial syncs in {time.monotonic() - t:.1f} s", flush=True)

    # --- the measured phase ----------------------------------------------------------------
    sent_at = {}          # message id -> monotonic send start
    expected = {}         # message id -> room
    seen = set()          # (message id, user)
    delivery_ms = []
    send_ms = []
    send_errors = 0
    sync_errors = 0
    stopping = False

    async def poller(u):
        nonlocal sync_errors
        conn = Connection(host, port)
        token = since[u]
        while not stopping:
            try:
                body = await call(conn, "GET", f"{query}&timeout={args.poll_timeout}&since="
                                  + urllib.parse.quote(token, safe=""), token=tokens[u],
                                  timeout=args.poll_timeout / 1000 + 30)
            except (HTTPError, OSError, asyncio.TimeoutError):
                sync_errors += 1
                conn.close()
                await asyncio.sleep(0.5)
                continue
            now = time.monotonic()
            token = body.get("next_batch", token)
            for room in body.get("rooms", {}).get("join", {}).values():
                for event in room.get("timeline", {}).get("events", []):
                    mid = event.get("content", {}).get("loader_id")
                    if mid is None or mid not in sent_at or (mid, u) in seen:
                        continue
                    seen.add((mid, u))
                    delivery_ms.append((now - sent_at[mid]) * 1000)
        conn.close()

    async def save_metrics(which):
        if not args.metrics_path:
            return
        conn = Connection(host, port)
        status, payload = await conn.request("GET", args.metrics_path)
        conn.close()
        with open(f"{args.metrics_out}-{which}.txt", "wb") as out:
            out.write(payload if status == 200 else b"")

    def server_cpu():
        if not args.server_pid:
            return None
        with open(f"/proc/{args.server_pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    pollers = [asyncio.create_task(poller(u)) for u in range(args.users)]
    await asyncio.sleep(3)  # the long-polls reach the server
    await save_metrics("before")
    server_cpu_before = server_cpu()

    async def sender(s):
        nonlocal send_errors
        r = s % args.rooms
        u = plans[r][s // args.rooms % members]
        conn = Connection(host, port)
        interval = 1.0 / args.rate
        start = time.monotonic()
        n = 0
        while True:
            due = start + n * interval + (s / max(1, args.senders)) * interval
            if due - start >= args.duration:
                break
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            mid = f"{run}-{s}-{n}"
            sent_at[mid] = time.monotonic()
            expected[mid] = r
            try:
                await call(conn, "PUT", f"/_matrix/client/v3/rooms/{urllib.parse.quote(room_ids[r], safe='')}"
                           f"/send/m.room.message/{mid}", {"msgtype": "m.text", "body": mid, "loader_id": mid},
                           tokens[u])
                send_ms.append((time.monotonic() - sent_at[mid]) * 1000)
            except (HTTPError, OSError, asyncio.TimeoutError):
                send_errors += 1
            n += 1
        conn.close()

    cpu_before = os.times()
    t = time.monotonic()
    await asyncio.gather(*(sender(s) for s in range(args.senders)))
    sending = time.monotonic() - t
    deadline = time.monotonic() + args.grace
    total_expected = sum(len(plans[r]) for r in expected.values())
    while time.monotonic() < deadline and len(seen) < total_expected:
        await asyncio.sleep(0.2)
    cpu_after = os.times()
    server_cpu_after = server_cpu()
    await save_metrics("after")
    stopping = True
    for task in pollers:
        task.cancel()
    await asyncio.gather(*pollers, return_exceptions=True)

    lost = total_expected - len(seen)

    def summary(values):
        return {"p50": percentile(values, 0.50), "p99": percentile(values, 0.99), "max": max(values) if values else None}
    d, s = summary(delivery_ms), summary(send_ms)
    fmt = lambda v: "-" if v is None else f"{v:.1f}"
    print(f"sent {len(expected)} messages in {sending:.1f} s ({send_errors} failed), "
          f"{len(delivery_ms)} deliveries of {total_expected} expected, {lost} lost, {sync_errors} sync errors")
    print(f"delivery ms: p50 {fmt(d['p50'])}  p99 {fmt(d['p99'])}  max {fmt(d['max'])}")
    print(f"send ms:     p50 {fmt(s['p50'])}  p99 {fmt(s['p99'])}  max {fmt(s['max'])}")
    loader_cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    server_cpu_s = None if server_cpu_before is None else server_cpu_after - server_cpu_before
    print(f"loader CPU {loader_cpu:.1f} s over the measured phase"
          + ("" if server_cpu_s is None else f"; server CPU {server_cpu_s:.2f} s "
             f"({server_cpu_s * 1e6 / max(1, len(delivery_ms)):.0f} µs per delivery)"))
    if args.json:
        with open(args.json, "a") as out:
            out.write(json.dumps({"users": args.users, "rooms": args.rooms, "members": members,
                                  "senders": args.senders, "rate": args.rate, "duration": args.duration,
                                  "messages": len(expected), "send_errors": send_errors,
                                  "deliveries": len(delivery_ms), "expected": total_expected, "lost": lost,
                                  "sync_errors": sync_errors, "delivery_ms": d, "send_ms": s,
                                  "loader_cpu_s": loader_cpu, "server_cpu_s": server_cpu_s,
                                  "load": open("/proc/loadavg").read().split()[:3]}) + "\n")
    return 0 if lost == 0 and send_errors == 0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
