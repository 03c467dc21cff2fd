#!/usr/bin/env python3
"""Federation request storm (issue 17): a remote server sends 10,000 PDUs in 200 transactions
into a room of the server under test while local users long-poll /sync in another room.

The storm peer is this program: a minimal homeserver on 127.0.0.4:8448 (TLS, certificate from
the harness's throwaway CA) that serves its signing key (`/_matrix/key/v2/server`), joins a
public room of the server under test as @storm:127.0.0.4:8448 through make_join/send_join, then
sends 200 `PUT /send/{txnId}` of 50 signed m.room.message PDUs each (room version 10, one linear
prev_events chain, auth_events create/power levels/its join, content hashes, ed25519
signatures), one transaction at a time as fast as the server answers (server-server API,
"Transactions": one in flight per destination); `--concurrency K` keeps K in flight, as a
hostile peer would (the peer then also answers get_missing_events and /event).

Meanwhile a child process holds `--users` long-polls of local users in another room of the same
server while one local user sends there at `--rate` messages/s (open loop); every delivery's
latency is the time from just before the sender's PUT to the receiver's /sync response carrying
it. The run reports the delivery p50/p99/max while the storm is absorbed (from the first
transaction until the last storm PDU is visible to a local user in the storm room) and in a
quiet phase before it. Finally that local user pages through /messages and checks all 10,000
storm PDUs arrived, each once, in the order sent.

The server under test runs on 127.0.0.5:8448: Myelin ($MYELIN_BIN, the harness's configuration)
and then Synapse (from the harness's venv), one after the other in the same run.

    MYELIN_BIN=$PWD/.build/release/myelin .build/federation-venv/bin/python bench/federation_storm.py
    ... --servers myelin --transactions 20 --users 20   # a quick look

Exit status 1 when any storm PDU is lost or out of order on any server.
"""
import argparse
import json
import math
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "federation"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from federation_storm_peer import PEER_HOST, StormPeer, q  # noqa: E402

TARGET_HOST = "127.0.0.5"
FILTER = json.dumps({"room": {"timeline": {"limit": 100}, "state": {"lazy_load_members": True},
                              "ephemeral": {"types": []}, "account_data": {"types": []}},
                     "presence": {"types": []}, "account_data": {"types": []}}, separators=(",", ":"))


def percentile(sorted_values, p):
    """Nearest-rank percentile."""
    if not sorted_values:
        return float("nan")
    return sorted_values[max(1, math.ceil(p / 100 * len(sorted_values))) - 1]


# --- The local load (a child process) -----------------------------------------------------------

def load_main(config_path, out_path):
    """Long-polls of the receivers and the open-loop sender; runs until stdin says stop."""
    import asyncio
    import aiohttp
    with open(config_path) as f:
        cfg = json.load(f)
    ctx = ssl.create_default_context(cafile=cfg["ca"])
    base, room = cfg["base_url"], cfg["room"]
    sent = {}        # seq -> send start (epoch s)
    acked = {}       # seq -> ack (epoch s)
    deliveries = []  # (seq, receiver index, arrival epoch s)
    errors = {"sync": 0, "send": 0}

    async def poll(session, index, token):
        headers = {"Authorization": f"Bearer {token}"}
        params = {"timeout": "0", "filter": FILTER}
        since = None
        while True:
            if since:
                params = {"timeout": "30000", "filter": FILTER, "since": since}
            try:
                async with session.get(base + "/_matrix/client/v3/sync", params=params, headers=headers) as r:
                    body = await r.json(content_type=None)
                now = time.time()
            except asyncio.CancelledError:
                raise
            except Exception:
                errors["sync"] += 1
                await asyncio.sleep(0.2)
                continue
            if "next_batch" not in body:
                errors["sync"] += 1
                await asyncio.sleep(0.2)
                continue
            if since:
                joined = body.get("rooms", {}).get("join", {}).get(room)
                for event in (joined or {}).get("timeline", {}).get("events", []):
                    text = event.get("content", {}).get("body", "")
                    if isinstance(text, str) and text.startswith("load "):
                        deliveries.append((int(text[5:]), index, now))
            since = body["next_batch"]
            ready.add(index)

    async def send(session, seq):
        sent[seq] = time.time()
        url = f"{base}/_matrix/client/v3/rooms/{q(room)}/send/m.room.message/load{seq}"
        try:
            async with session.put(url, json={"msgtype": "m.text", "body": f"load {seq}"},
                                   headers={"Authorization": f"Bearer {cfg['sender']}"}) as r:
                await r.read()
                if r.status == 200:
                    acked[seq] = time.time()
                else:
                    errors["send"] += 1
        except Exception:
            errors["send"] += 1

    ready = set()

    async def run():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        threading.Thread(target=lambda: (sys.stdin.readline(), loop.call_soon_threadsafe(stop.set)), daemon=True).start()
        connector = aiohttp.TCPConnector(limit=0, ssl=ctx)
        timeout = aiohttp.ClientTimeout(total=90)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            polls = [asyncio.create_task(poll(session, i, t)) for i, t in enumerate(cfg["receivers"])]
            while len(ready) < len(polls):
                await asyncio.sleep(0.1)
            await asyncio.sleep(1)  # every receiver's first long-poll outstanding
            print("READY", flush=True)
            sends, seq, t0 = [], 0, time.monotonic()
            while not stop.is_set():
                sends.append(asyncio.create_task(send(session, seq)))
                seq += 1
                delay = t0 + seq / cfg["rate"] - time.monotonic()
                try:
                    await asyncio.wait_for(stop.wait(), max(0, delay))
                except asyncio.TimeoutError:
                    pass
            await asyncio.gather(*sends)
            # Grace: until every delivery is in or 30 s.
            want = len(acked) * len(polls)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len({(s, i) for s, i, _ in deliveries if s in acked}) < want:
                await asyncio.sleep(0.2)
            for p in polls:
                p.cancel()
            await asyncio.gather(*polls, return_exceptions=True)

    asyncio.run(run())
    with open(out_path, "w") as f:
        json.dump({"sent": sent, "acked": acked, "deliveries": deliveries, "errors": errors,
                   "receivers": len(cfg["receivers"])}, f)


# --- One server under test ----------------------------------------------------------------------

def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")


def client(server, method, path, token, body=None):
    status, reply = server.request(method, path, body=body, token=token, timeout=120)
    assert status == 200, f"{server.describe()}: {method} {path} -> {status} {reply}"
    return reply


def storm_messages(server, token, room, tag, count):
    """Storm bodies visible to the local user, oldest first, paging /messages backwards."""
    bodies, start = [], None
    prefix = f"storm {tag} "
    for _ in range(count // 50 + 100):
        path = f"/_matrix/client/v3/rooms/{q(room)}/messages?dir=b&limit=1000"
        if start:
            path += "&from=" + q(start)
        reply = client(server, "GET", path, token)
        for event in reply.get("chunk", []):
            body = event.get("content", {}).get("body", "")
            if isinstance(body, str) and body.startswith(prefix):
                bodies.append(int(body[len(prefix):]))
        start = reply.get("end")
        if not reply.get("chunk") or not start:
            break
    bodies.reverse()
    return bodies


def visible_storm(server, token, room, tag, count):
    try:
        return storm_messages(server, token, room, tag, count)
    except (OSError, AssertionError) as e:
        print(f"  /messages: {e}", file=sys.stderr)
        return []


def last_visible(server, token, room, tag, last):
    try:
        reply = client(server, "GET", f"/_matrix/client/v3/rooms/{q(room)}/messages?dir=b&limit=5", token)
    except (OSError, AssertionError):  # a timeout (Synapse backfilling) counts as not yet
        return False
    return any(e.get("content", {}).get("body") == f"storm {tag} {last}" for e in reply.get("chunk", []))


def setup_load(server, args, workdir, tag):
    sender = server.register(f"loadsend{tag}")
    room = client(server, "POST", "/_matrix/client/v3/createRoom", sender["access_token"],
                  {"preset": "public_chat", "name": "local load"})["room_id"]
    receivers = []
    for i in range(args.users):
        user = server.register(f"load{tag}u{i}")
        client(server, "POST", f"/_matrix/client/v3/join/{q(room)}", user["access_token"], {})
        receivers.append(user["access_token"])
    path = os.path.join(workdir, f"load-{tag}.json")
    with open(path, "w") as f:
        json.dump({"ca": server.pki.ca, "base_url": server.base_url, "room": room, "sender": sender["access_token"],
                   "receivers": receivers, "rate": args.rate}, f)
    return path


def run_one(kind, args, pki, peer, workdir):
    import servers
    tag = f"{kind}{int(time.time()) % 100000}"
    cls = servers.MyelinServer if kind == "myelin" else servers.SynapseServer
    server = cls(TARGET_HOST, pki, workdir)
    server.prepare()
    server.start()
    print(f"{kind}: started on {server.base_url}", file=sys.stderr)
    try:
        watch = server.register(f"watch{tag}")
        token = watch["access_token"]
        room = client(server, "POST", "/_matrix/client/v3/createRoom", token,
                      {"preset": "public_chat", "room_version": "10", "name": "storm"})["room_id"]
        user_id = f"@storm{tag}:{peer.server_name}"
        join_id, depth, auth = peer.join(server, room, user_id)
        count = args.transactions * args.per_txn
        pdus = peer.build_storm(room, user_id, join_id, depth, auth, count, tag)
        txns = peer.transactions(pdus, args.per_txn, server.server_name, tag)
        print(f"{kind}: registering {args.users} local users", file=sys.stderr)
        config = setup_load(server, args, workdir, tag)
        out = os.path.join(workdir, f"load-{tag}.out.json")
        load = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--load-child", config, out],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = load.stdout.readline()
        assert line.strip() == "READY", f"load child: {line!r}"
        quiet_start = time.time()
        time.sleep(args.quiet)
        print(f"{kind}: storm of {len(txns)} transactions, {count} PDUs", file=sys.stderr)
        cpu0, storm_start = cpu_seconds(server.proc.pid), time.time()
        latencies, rejected, failed = peer.storm(server, txns, args.concurrency, args.storm_seconds)
        storm_sent = time.time()
        # With a time budget, the storm is what was sent within it (whole transactions, in order).
        count = min(count, len(latencies) * args.per_txn)
        deadline = storm_sent + args.absorb_timeout
        while not last_visible(server, token, room, tag, count - 1) and time.time() < deadline:
            time.sleep(0.05)
        # The last PDU visible is not all of them: a server may process a transaction's PDUs out
        # of order, or drop a queue and backfill it on demand (Synapse prunes its inbound queue
        # of a room beyond 100 events and backfills from the origin when /messages reaches the
        # gap). Absorbed = every storm PDU visible to the local user's /messages.
        while len(set(visible_storm(server, token, room, tag, count))) < count and time.time() < deadline:
            time.sleep(1)
        absorbed = time.time()
        cpu1 = cpu_seconds(server.proc.pid)
        time.sleep(2)
        load.stdin.write("stop\n")
        load.stdin.flush()
        load.wait(timeout=120)
        with open(out) as f:
            local = json.load(f)
        bodies = visible_storm(server, token, room, tag, count)
        return summarize(kind, args, local, bodies, count, latencies, rejected, failed,
                         quiet_start, storm_start, storm_sent, absorbed, cpu1 - cpu0)
    finally:
        server.stop()


def summarize(kind, args, local, bodies, count, latencies, rejected, failed, quiet_start, storm_start, storm_sent,
              absorbed, cpu):
    sent = {int(k): v for k, v in local["sent"].items()}
    acked = {int(k) for k in local["acked"]}
    seen = {}
    for seq, index, arrival in local["deliveries"]:
        seen.setdefault((seq, index), arrival)

    def window(lo, hi):
        lat = sorted((arrival - sent[seq]) * 1000 for (seq, _), arrival in seen.items() if lo <= sent[seq] < hi)
        expected = sum(1 for seq in acked if lo <= sent[seq] < hi) * local["receivers"]
        return lat, expected

    storm_lat, storm_expected = window(storm_start, absorbed)
    quiet_lat, _ = window(quiet_start, storm_start)
    lost_storm_pdus = count - len(set(bodies))
    in_order = bodies == list(range(count))
    txn = sorted(latencies)
    return {
        "server": kind, "transactions": count // args.per_txn, "pdus": count, "concurrency": args.concurrency,
        "txn_failed": len(failed), "pdus_rejected": len(rejected), "failures": failed[:5], "rejections": rejected[:5],
        "storm_send_s": round(storm_sent - storm_start, 2), "absorbed_s": round(absorbed - storm_start, 2),
        "pdus_per_s": round(count / max(absorbed - storm_start, 1e-9), 1),
        "txn_p50_ms": round(percentile(txn, 50), 1), "txn_p99_ms": round(percentile(txn, 99), 1),
        "storm_pdus_seen": len(bodies), "storm_pdus_lost": lost_storm_pdus, "in_order": in_order,
        "duplicates": len(bodies) - len(set(bodies)),
        "server_cpu_s": round(cpu, 2),
        "local_users": local["receivers"], "local_rate": args.rate,
        "local_sends": len(sent), "local_acked": len(acked), "local_errors": local["errors"],
        "storm_deliveries": len(storm_lat), "storm_deliveries_expected": storm_expected,
        "storm_p50_ms": round(percentile(storm_lat, 50), 1), "storm_p99_ms": round(percentile(storm_lat, 99), 1),
        "storm_max_ms": round(storm_lat[-1], 1) if storm_lat else None,
        "quiet_p50_ms": round(percentile(quiet_lat, 50), 1), "quiet_p99_ms": round(percentile(quiet_lat, 99), 1),
    }


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--load-child":
        return load_main(sys.argv[2], sys.argv[3])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default="myelin,synapse", help="comma-separated: myelin, synapse (in order)")
    parser.add_argument("--transactions", type=int, default=200)
    parser.add_argument("--per-txn", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=1, help="transactions in flight (1 = as the spec says)")
    parser.add_argument("--users", type=int, default=100, help="local long-polling users")
    parser.add_argument("--rate", type=float, default=2.0, help="local messages per second")
    parser.add_argument("--quiet", type=float, default=10.0, help="seconds of local load before the storm")
    parser.add_argument("--absorb-timeout", type=float, default=900.0)
    parser.add_argument("--storm-seconds", type=float, default=None,
                        help="stop sending after this many seconds (for a server that takes far longer)")
    parser.add_argument("--json", help="append the results as one JSON line to this file")
    args = parser.parse_args()
    if not (1 <= args.transactions <= 10_000 and 1 <= args.per_txn <= 50 and 1 <= args.concurrency <= 50
            and 1 <= args.users <= 2000 and 0.1 <= args.rate <= 100):
        parser.error("out of range")
    os.environ.setdefault("SYNAPSE_LOG_LEVEL", "WARNING")
    os.environ.setdefault("MYELIN_LOG_LEVEL", "warning")
    # A SIGTERM (timeout, Ctrl-C) unwinds through the `finally`s that stop the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    import servers
    workdir = tempfile.mkdtemp(prefix="myelin-storm-")
    print(f"work directory {workdir}", file=sys.stderr)
    pki = servers.PKI(os.path.join(workdir, "pki"), [PEER_HOST, TARGET_HOST])
    peer = StormPeer(pki)
    peer.start()
    results = []
    try:
        for kind in [s.strip() for s in args.servers.split(",") if s.strip()]:
            results.append(run_one(kind, args, pki, peer, workdir))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    finally:
        peer.stop()
        if os.environ.get("FEDERATION_KEEP") != "1":
            import shutil
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(results)
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps({"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": results}) + "\n")
    print(json.dumps(results))
    return 0 if all(r["storm_pdus_lost"] == 0 and r["in_order"] and r["txn_failed"] == 0 for r in results) else 1


def print_table(results):
    rows = [("storm PDUs seen / lost / in order", lambda r: f"{r['storm_pdus_seen']} / {r['storm_pdus_lost']} / {r['in_order']}"),
            ("transactions failed, PDUs rejected", lambda r: f"{r['txn_failed']}, {r['pdus_rejected']}"),
            ("storm sent in (s)", lambda r: r["storm_send_s"]),
            ("storm absorbed in (s)", lambda r: r["absorbed_s"]),
            ("PDUs absorbed per s", lambda r: r["pdus_per_s"]),
            ("transaction p50 / p99 (ms)", lambda r: f"{r['txn_p50_ms']} / {r['txn_p99_ms']}"),
            ("server CPU during storm (s)", lambda r: r["server_cpu_s"]),
            ("local deliveries in storm / expected", lambda r: f"{r['storm_deliveries']} / {r['storm_deliveries_expected']}"),
            ("local delivery p50 / p99 / max in storm (ms)",
             lambda r: f"{r['storm_p50_ms']} / {r['storm_p99_ms']} / {r['storm_max_ms']}"),
            ("local delivery p50 / p99 before (ms)", lambda r: f"{r['quiet_p50_ms']} / {r['quiet_p99_ms']}"),
            ("local sends acked / errors", lambda r: f"{r['local_acked']}/{r['local_sends']} {r['local_errors']}")]
    head = f"{'':<46}" + "".join(f"{r['server']:>24}" for r in results)
    print(head)
    for label, fn in rows:
        print(f"{label:<46}" + "".join(f"{fn(r)!s:>24}" for r in results))
    if len(results) == 2:
        a, b = results
        print(f"absorption time {a['server']}/{b['server']}: {a['absorbed_s'] / max(b['absorbed_s'], 1e-9):.3f}; "
              f"local p99 in storm {a['server']}/{b['server']}: {a['storm_p99_ms'] / max(b['storm_p99_ms'], 1e-9):.3f}")


if __name__ == "__main__":
    sys.exit(main() or 0)
