"""The storm peer of bench/federation_storm.py: a remote homeserver under the bench's control
(its own ed25519 key, TLS on loopback with a certificate from the federation harness's CA) that
joins a room of the server under test, builds signed room version 10 PDUs in one linear chain
and sends them in transactions; it answers the key, get_missing_events, /event, /state,
/state_ids and /backfill requests a receiving server makes of an origin.
"""
import base64
import hashlib
import http.client
import http.server
import json
import queue
import ssl
import sys
import threading
import time
import urllib.parse

PEER_HOST = "127.0.0.4"
PORT = 8448


def b64(data, urlsafe=False):
    return (base64.urlsafe_b64encode(data) if urlsafe else base64.b64encode(data)).decode().rstrip("=")


def q(text):
    return urllib.parse.quote(text, safe="")


# --- Events (room version 10) -------------------------------------------------------------------

# Redaction, room versions 1-10 (client-server API, "Redactions"): the top-level keys kept, and
# the content keys kept per type (only the types this program builds).
KEPT_KEYS = {"event_id", "type", "room_id", "sender", "state_key", "content", "hashes", "signatures", "depth",
             "prev_events", "auth_events", "origin_server_ts", "origin", "membership", "prev_state"}
KEPT_CONTENT = {"m.room.member": {"membership", "join_authorised_via_users_server"}}


def redacted(event):
    out = {k: v for k, v in event.items() if k in KEPT_KEYS}
    keep = KEPT_CONTENT.get(event.get("type"), set())
    out["content"] = {k: v for k, v in event.get("content", {}).items() if k in keep}
    return out


def canonical(obj):
    from canonicaljson import encode_canonical_json
    return encode_canonical_json(obj)


def finish_event(event, server_name, key):
    """Adds the content hash and this server's signature; returns (event_id, event)
    (server-server API, "Signing Events" and "Calculating the reference hash")."""
    import signedjson.sign
    event = {k: v for k, v in event.items() if k not in ("hashes", "signatures", "unsigned", "event_id")}
    event["hashes"] = {"sha256": b64(hashlib.sha256(canonical(event)).digest())}
    signed = signedjson.sign.sign_json(redacted(event), server_name, key)
    event["signatures"] = signed["signatures"]
    reference = {k: v for k, v in redacted(event).items() if k not in ("signatures", "unsigned")}
    return "$" + b64(hashlib.sha256(canonical(reference)).digest(), urlsafe=True), event


# --- The storm peer -----------------------------------------------------------------------------

class StormPeer:
    """A remote homeserver under this program's control: it serves its key over TLS, signs its
    requests (X-Matrix), joins a room and sends transactions."""

    def __init__(self, pki, host=PEER_HOST):
        import signedjson.key
        self.host, self.pki = host, pki
        self.server_name = f"{host}:{PORT}"
        self.key = signedjson.key.generate_signing_key("storm")
        self.key_id = f"ed25519:{self.key.version}"
        self.events = {}  # event id -> PDU, for get_missing_events and /event
        self.order = {}   # event id -> index in the chain
        self.httpd = None
        self.inbound_txns = 0
        # room id -> (state after this peer's join, its auth chain), each {event id: PDU}: the
        # state before every storm PDU (messages change no state), served by /state and
        # /state_ids to a server that fetched a gap and needs the state at it (Synapse does).
        self.room_state = {}

    # Serving ---------------------------------------------------------------------------------

    def key_response(self):
        import signedjson.key
        import signedjson.sign
        body = {"server_name": self.server_name, "valid_until_ts": int(time.time() * 1000) + 86_400_000,
                "verify_keys": {self.key_id: {"key": signedjson.key.encode_verify_key_base64(self.key.verify_key)}},
                "old_verify_keys": {}}
        return signedjson.sign.sign_json(body, self.server_name, self.key)

    def start(self):
        peer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def reply(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def body(self):
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length)) if length else {}

            def do_GET(self):
                path = urllib.parse.urlsplit(self.path).path
                if path.startswith("/_matrix/key/v2/server"):
                    return self.reply(200, peer.key_response())
                if path == "/_matrix/federation/v1/version":
                    return self.reply(200, {"server": {"name": "federation_storm.py", "version": "1"}})
                if path.startswith("/_matrix/federation/v1/state_ids/") or path.startswith("/_matrix/federation/v1/state/"):
                    room = urllib.parse.unquote(path.rsplit("/", 1)[1])
                    if room in peer.room_state:
                        state, chain = peer.room_state[room]
                        if "/state_ids/" in path:
                            return self.reply(200, {"pdu_ids": list(state), "auth_chain_ids": list(chain)})
                        return self.reply(200, {"pdus": list(state.values()), "auth_chain": list(chain.values())})
                if path.startswith("/_matrix/federation/v1/backfill/"):
                    query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                    limit = min(int((query.get("limit") or ["10"])[0]), 100)
                    return self.reply(200, {"origin": peer.server_name, "origin_server_ts": int(time.time() * 1000),
                                            "pdus": peer.backfill(query.get("v") or [], limit)})
                if path.startswith("/_matrix/federation/v1/event/"):
                    event = peer.events.get(urllib.parse.unquote(path.rsplit("/", 1)[1]))
                    if event:
                        return self.reply(200, {"origin": peer.server_name, "origin_server_ts": int(time.time() * 1000),
                                                "pdus": [event]})
                self.reply(404, {"errcode": "M_NOT_FOUND", "error": "Not served by the storm peer"})

            def do_PUT(self):
                self.body()
                if self.path.startswith("/_matrix/federation/v1/send/"):
                    peer.inbound_txns += 1
                    return self.reply(200, {"pdus": {}})
                self.reply(404, {"errcode": "M_UNRECOGNIZED", "error": "Not served by the storm peer"})

            def do_POST(self):
                body = self.body()
                if self.path.startswith("/_matrix/federation/v1/get_missing_events/"):
                    return self.reply(200, {"events": peer.missing_events(body)})
                self.reply(404, {"errcode": "M_UNRECOGNIZED", "error": "Not served by the storm peer"})

        self.httpd = http.server.ThreadingHTTPServer((self.host, PORT), Handler)
        self.httpd.daemon_threads = True
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*self.pki.certs[self.host])
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()

    def missing_events(self, body):
        """Walks back the chain from `latest_events` to `earliest_events` (bounded by limit)."""
        earliest = set(body.get("earliest_events") or [])
        limit = min(int(body.get("limit") or 10), 100)
        found = []
        for latest in body.get("latest_events") or []:
            index = self.order.get(latest)
            if index is None:
                continue
            for i in range(index - 1, max(-1, index - 1 - limit), -1):
                event_id = self.chain[i]
                if event_id in earliest or len(found) >= limit:
                    break
                found.append(self.events[event_id])
        found.sort(key=lambda e: e["depth"])
        return found

    def backfill(self, latest, limit):
        """The chain walked back from each of `latest`, inclusive, at most `limit` PDUs."""
        found = {}
        for event_id in latest:
            index = self.order.get(event_id)
            if index is None:
                continue
            for i in range(index, max(-1, index - limit), -1):
                if len(found) >= limit:
                    break
                found[self.chain[i]] = self.events[self.chain[i]]
        return list(found.values())

    # Requests --------------------------------------------------------------------------------

    def authorization(self, method, uri, destination, content=None):
        import signedjson.sign
        request = {"method": method, "uri": uri, "origin": self.server_name, "destination": destination}
        if content is not None:
            request["content"] = content
        sig = signedjson.sign.sign_json(request, self.server_name, self.key)["signatures"][self.server_name][self.key_id]
        return f'X-Matrix origin="{self.server_name}",destination="{destination}",key="{self.key_id}",sig="{sig}"'

    def connect(self, host):
        return http.client.HTTPSConnection(host, PORT, context=self.pki.client_context(), timeout=600)

    def call(self, conn, destination, method, uri, content=None, body=None, auth=None):
        if body is None and content is not None:
            body = json.dumps(content).encode()
        headers = {"Authorization": auth or self.authorization(method, uri, destination, content)}
        if body is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, uri, body=body, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        try:
            return response.status, json.loads(raw) if raw else None
        except ValueError:
            return response.status, {"_raw": raw[:300]}

    def join(self, target, room_id, user_id):
        """make_join/send_join (v2); returns (join event id, depth, auth events of a message)."""
        conn = self.connect(target.host)
        uri = f"/_matrix/federation/v1/make_join/{q(room_id)}/{q(user_id)}?ver=10"
        status, reply = self.call(conn, target.server_name, "GET", uri)
        assert status == 200, f"make_join -> {status} {reply}"
        template = reply["event"]
        template["origin_server_ts"] = int(time.time() * 1000)
        template.setdefault("origin", self.server_name)
        join_id, join = finish_event(template, self.server_name, self.key)
        uri = f"/_matrix/federation/v2/send_join/{q(room_id)}/{q(join_id)}"
        status, reply = self.call(conn, target.server_name, "PUT", uri, join)
        assert status == 200, f"send_join -> {status} {reply}"
        conn.close()
        state = {(e["type"], e.get("state_key")): e for e in reply["state"]}
        create, power = state[("m.room.create", "")], state[("m.room.power_levels", "")]
        create_id = create.get("event_id") or reference_id(create)
        power_id = power.get("event_id") or reference_id(power)
        after = {reference_id(e): e for e in reply["state"] if (e["type"], e.get("state_key")) != ("m.room.member", user_id)}
        after[join_id] = join
        chain = {reference_id(e): e for e in reply.get("auth_chain", [])}
        self.room_state[room_id] = (after, chain)
        self.events.update(after)
        self.events.update(chain)
        return join_id, join["depth"], [create_id, power_id, join_id]

    def build_storm(self, room_id, user_id, prev, depth, auth, count, tag):
        """`count` messages in one linear chain after `prev`."""
        self.chain = []
        started = time.time()
        for i in range(count):
            depth += 1
            event = {"type": "m.room.message", "room_id": room_id, "sender": user_id, "origin": self.server_name,
                     "origin_server_ts": int(time.time() * 1000), "depth": depth, "prev_events": [prev],
                     "auth_events": auth, "content": {"msgtype": "m.text", "body": f"storm {tag} {i}"}}
            prev, event = finish_event(event, self.server_name, self.key)
            self.events[prev] = event
            self.order[prev] = i
            self.chain.append(prev)
        print(f"  built {count} PDUs in {time.time() - started:.1f} s", file=sys.stderr)
        return [self.events[e] for e in self.chain]

    def transactions(self, pdus, per_txn, destination, tag):
        """(uri, body bytes, Authorization) of each transaction, signed in advance."""
        out = []
        for n in range(0, len(pdus), per_txn):
            content = {"origin": self.server_name, "origin_server_ts": int(time.time() * 1000),
                       "pdus": pdus[n:n + per_txn], "edus": []}
            uri = f"/_matrix/federation/v1/send/storm-{tag}-{n // per_txn}"
            out.append((uri, json.dumps(content).encode(), self.authorization("PUT", uri, destination, content)))
        return out

    def storm(self, target, txns, concurrency, budget=None):
        """Sends the transactions, `concurrency` in flight (1: one at a time, in order); returns
        (per-transaction latencies ms, PDUs the server answered with an error, failed requests)."""
        work = queue.Queue()
        for txn in txns:
            work.put(txn)
        latencies, rejected, failed = [], [], []
        lock = threading.Lock()
        stop_at = time.monotonic() + budget if budget else None

        def worker():
            conn = self.connect(target.host)
            while stop_at is None or time.monotonic() < stop_at:
                try:
                    uri, body, auth = work.get_nowait()
                except queue.Empty:
                    break
                start = time.perf_counter()
                try:
                    status, reply = self.call(conn, target.server_name, "PUT", uri, body=body, auth=auth)
                except (OSError, http.client.HTTPException) as e:
                    conn.close()
                    conn = self.connect(target.host)
                    with lock:
                        failed.append(f"{uri}: {e}")
                    continue
                elapsed = (time.perf_counter() - start) * 1000
                with lock:
                    latencies.append(elapsed)
                    if status != 200:
                        failed.append(f"{uri}: {status} {reply}")
                    else:
                        for event_id, result in (reply.get("pdus") or {}).items():
                            if result.get("error"):
                                rejected.append((event_id, result["error"]))
            conn.close()

        threads = [threading.Thread(target=worker) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return latencies, rejected, failed


def reference_id(event):
    """The event id of another server's event (its redaction by Synapse's own rules, any type)."""
    from synapse.api.room_versions import RoomVersions
    from synapse.crypto.event_signing import compute_event_reference_hash
    from synapse.events import make_event_from_dict
    _, digest = compute_event_reference_hash(make_event_from_dict(dict(event), RoomVersions.V10))
    return "$" + b64(digest, urlsafe=True)
