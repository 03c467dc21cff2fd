#!/usr/bin/env python3
"""Federation latency (issue 16): the time from a client's send on one server to the event's
arrival in the long-poll /sync of a user on the other server, both ways, over loopback with TLS.

Starts the same pair as the interop test (tests/federation/servers.py): Synapse on 127.0.0.2:8448
and the peer on 127.0.0.3:8448 (Myelin from $MYELIN_BIN, or Synapse with --peer synapse). One
room created on Synapse, the peer's user invited and joined; then, in each direction, N messages
sent one at a time: each send is timed from just before the client's PUT until the receiving
user's /sync (kept outstanding the whole time) returns with it.

    .build/federation-venv/bin/python bench/federation_latency.py --peer synapse --messages 200
    MYELIN_BIN=.build/debug/myelin .build/federation-venv/bin/python bench/federation_latency.py

Prints p50/p99/mean/max per direction (milliseconds) and a JSON line.
"""
import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "federation"))

import nio  # noqa: E402

from clients import SYNC_FILTER, Watcher, check, close_all, client_for  # noqa: E402
from servers import Federation  # noqa: E402


def percentile(sorted_values, p):
    """Nearest-rank percentile."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


class Arrivals:
    """Keeps one long-poll /sync of the receiving user outstanding and notes when each
    benchmark message arrives."""

    def __init__(self, client, room):
        self.client, self.room = client, room
        self.since = None
        self.seen = {}  # body -> perf_counter at arrival
        self.waiters = {}
        self.errors = 0

    async def prime(self):
        reply = await self.client.sync(timeout=0, sync_filter=SYNC_FILTER)
        assert isinstance(reply, nio.SyncResponse), reply
        self.since = reply.next_batch

    async def loop(self):
        while True:
            try:
                reply = await self.client.sync(timeout=30000, sync_filter=SYNC_FILTER, since=self.since)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.errors += 1
                await asyncio.sleep(0.2)
                continue
            now = time.perf_counter()
            if not isinstance(reply, nio.SyncResponse):
                self.errors += 1
                await asyncio.sleep(0.2)
                continue
            self.since = reply.next_batch
            room = reply.rooms.join.get(self.room)
            for event in (room.timeline.events if room else []):
                body = event.source.get("content", {}).get("body")
                if isinstance(body, str) and body not in self.seen:
                    self.seen[body] = now
                    waiter = self.waiters.pop(body, None)
                    if waiter:
                        waiter.set()

    async def wait(self, body, timeout):
        if body in self.seen:
            return self.seen[body]
        event = self.waiters.setdefault(body, asyncio.Event())
        await asyncio.wait_for(event.wait(), timeout)
        return self.seen[body]


async def direction(label, sender, receiver, room, count, timeout):
    arrivals = Arrivals(receiver, room)
    await arrivals.prime()
    task = asyncio.create_task(arrivals.loop())
    latencies, sends, lost = [], [], 0
    try:
        for i in range(count):
            body = f"lat {label} {i}"
            start = time.perf_counter()
            check(await sender.room_send(room, "m.room.message", {"msgtype": "m.text", "body": body}),
                  nio.RoomSendResponse, "sending", sender)
            sends.append((time.perf_counter() - start) * 1000)
            try:
                arrived = await arrivals.wait(body, timeout)
                latencies.append((arrived - start) * 1000)
            except asyncio.TimeoutError:
                lost += 1
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
    latencies.sort()
    sends.sort()
    return {"direction": label, "messages": count, "delivered": len(latencies), "lost": lost,
            "p50_ms": round(percentile(latencies, 50), 1), "p99_ms": round(percentile(latencies, 99), 1),
            "mean_ms": round(statistics.fmean(latencies), 1) if latencies else None,
            "max_ms": round(latencies[-1], 1) if latencies else None, "sync_errors": arrivals.errors,
            # The sender's own PUT, acknowledged: the local part of each latency.
            "send_p50_ms": round(percentile(sends, 50), 1), "send_p99_ms": round(percentile(sends, 99), 1)}


async def measure(pair, count, timeout):
    synapse, peer = pair.synapse, pair.peer
    s = await client_for(synapse, await asyncio.to_thread(synapse.register, "benchsyn"))
    p = await client_for(peer, await asyncio.to_thread(peer.register, "benchpeer"))
    try:
        room = check(await s.room_create(invite=[p.user_id], preset=nio.RoomPreset.private_chat),
                     nio.RoomCreateResponse, "creating the room", s).room_id
        wp = Watcher(p, [synapse])
        await wp.until(lambda w: room in w.invites, f"the invite to {room}", timeout=60)
        check(await p.join(room), nio.JoinResponse, "joining", p)
        ws = Watcher(s, [peer])
        await ws.until(lambda w: w.membership(room, p.user_id) == "join", "the peer user's join", timeout=60)
        there, here = f"{peer.kind}@{peer.host}", f"synapse@{synapse.host}"
        results = []
        results.append(await direction(f"{there} -> {here}", p, s, room, count, timeout))
        results.append(await direction(f"{here} -> {there}", s, p, room, count, timeout))
        return results
    finally:
        await close_all(s, p)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer", choices=["myelin", "synapse"], default=os.environ.get("FEDERATION_PEER", "myelin"))
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before a message counts as lost")
    args = parser.parse_args()
    if not 1 <= args.messages <= 100_000:
        parser.error("--messages must be between 1 and 100000")
    # Benchmark defaults: Synapse logs at WARNING unless the caller asks otherwise.
    os.environ.setdefault("SYNAPSE_LOG_LEVEL", "WARNING")
    os.environ.setdefault("MYELIN_LOG_LEVEL", "warning")
    pair = Federation(peer=args.peer)
    print(f"work directory {pair.workdir}", file=sys.stderr)
    pair.start()
    try:
        results = asyncio.run(measure(pair, args.messages, args.timeout))
    finally:
        pair.stop()
        pair.cleanup()
    print(f"{'direction':<36} {'sent':>5} {'lost':>5} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'max ms':>8} {'send p50':>9}")
    for r in results:
        print(f"{r['direction']:<36} {r['messages']:>5} {r['lost']:>5} {r['p50_ms']:>8} {r['p99_ms']:>8} "
              f"{r['mean_ms']!s:>8} {r['max_ms']!s:>8} {r['send_p50_ms']!s:>9}")
    print(json.dumps({"peer": args.peer, "results": results}))
    return 0 if all(r["lost"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
