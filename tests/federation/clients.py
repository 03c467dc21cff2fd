"""matrix-nio clients of the two servers and a /sync watcher that waits for what a scenario expects.

Every wait has a deadline and fails with what it was waiting for, what it saw, and the log files
of both servers (federation failures are mostly visible only in the servers' logs).
"""
import asyncio
import json
import time
import urllib.parse
import uuid

import nio

# Federation on a loaded 2-core machine is slow: every wait is generous but bounded.
DEFAULT_WAIT = 45.0

# Timeline only, large enough that no scenario sees a gap ("limited") in one response.
SYNC_FILTER = {
    "room": {"timeline": {"limit": 100}, "state": {"lazy_load_members": True},
             "ephemeral": {"not_types": ["*"]}, "account_data": {"not_types": ["*"]}},
    "presence": {"not_types": ["*"]},
    "account_data": {"not_types": ["*"]},
}


def run(coro, budget=120):
    """Runs one scenario's coroutine under an overall deadline (each scenario aims at 60 s or
    less; the budget only stops a hung one)."""
    async def bounded():
        return await asyncio.wait_for(coro, timeout=budget)
    return asyncio.run(bounded())


def unique(prefix):
    """A fresh localpart or alias part, so that scenarios never share users or rooms."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


async def client_for(server, login):
    """A logged-in nio client of `server` from a login dict of Homeserver.register()."""
    config = nio.AsyncClientConfig(max_limit_exceeded=3, max_timeouts=1, max_timeout_retry_wait_time=2,
                                   store_sync_tokens=False, encryption_enabled=False)
    client = nio.AsyncClient(server.base_url, login["user_id"], device_id=login["device_id"],
                             ssl=server.ssl, config=config)
    client.access_token = login["access_token"]
    client.user_id = login["user_id"]
    client.device_id = login["device_id"]
    client.server = server
    return client


async def new_user(server, prefix):
    """Registers a fresh user on `server` (shared-secret admin API) and returns its nio client."""
    login = await asyncio.to_thread(server.register, unique(prefix))
    return await client_for(server, login)


async def api(client, method, path, body=None, query=None, timeout=30):
    """A raw client-server call with the client's token: (status, JSON or None)."""
    if query:
        path = path + "?" + urllib.parse.urlencode(query)
    headers = {"Authorization": f"Bearer {client.access_token}"}
    data = None
    if body is not None:
        data = json.dumps(body)
        headers["Content-Type"] = "application/json"
    response = await client.send(method, path, data=data, headers=headers, timeout=timeout)
    async with response:
        raw = await response.read()
        try:
            return response.status, (json.loads(raw) if raw else None)
        except ValueError:
            return response.status, {"_raw": raw[:500].decode(errors="replace")}


def q(identifier):
    """Percent-encodes a room ID, alias or user ID for a path segment."""
    return urllib.parse.quote(identifier, safe="")


def check(reply, expected_type, what, client):
    """Fails with the server's error when a nio call did not return `expected_type`."""
    assert isinstance(reply, expected_type), \
        f"{what} on {client.server.describe()} failed: {reply!r}"
    return reply


class Watcher:
    """Follows one user's /sync (nio) and keeps everything scenarios ask about: the timeline
    events of each joined room in the order received, invites, and rooms left."""

    def __init__(self, client, others=()):
        self.client = client
        self.others = list(others)  # servers whose logs a failure message should also name
        self.since = None
        self.timelines = {}  # room_id -> [event source dicts]
        self.invites = {}  # room_id -> invite state events
        self.left = set()
        self.errors = []

    async def sync_once(self, timeout_ms):
        try:
            reply = await asyncio.wait_for(
                self.client.sync(timeout=timeout_ms, sync_filter=SYNC_FILTER, since=self.since),
                timeout=timeout_ms / 1000 + 20)
        except Exception as e:  # a server being restarted refuses connections: keep trying
            self.errors.append(f"{time.strftime('%H:%M:%S')} {type(e).__name__}: {e}")
            await asyncio.sleep(0.5)
            return
        if not isinstance(reply, nio.SyncResponse):
            self.errors.append(f"{time.strftime('%H:%M:%S')} {reply!r}")
            await asyncio.sleep(0.5)
            return
        self.since = reply.next_batch
        for room_id, room in reply.rooms.join.items():
            self.timelines.setdefault(room_id, []).extend(e.source for e in room.timeline.events)
            self.invites.pop(room_id, None)
            self.left.discard(room_id)
        for room_id, room in reply.rooms.invite.items():
            self.invites[room_id] = [getattr(e, "source", None) for e in room.invite_state]
        for room_id, room in reply.rooms.leave.items():
            self.timelines.setdefault(room_id, []).extend(e.source for e in room.timeline.events)
            self.left.add(room_id)
            self.invites.pop(room_id, None)

    async def until(self, condition, what, timeout=DEFAULT_WAIT):
        """Syncs until `condition(self)` holds; fails after `timeout` s saying `what` was awaited."""
        deadline = time.monotonic() + timeout
        while True:
            if condition(self):
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            await self.sync_once(int(min(remaining, 5.0) * 1000))
        raise AssertionError(self.failure(what, timeout))

    def failure(self, what, timeout):
        seen = {room: [f"{e.get('type')}:{e.get('sender')}:{_short(e.get('content'))}" for e in events][-15:]
                for room, events in self.timelines.items()}
        servers = [self.client.server] + [s for s in self.others if s is not self.client.server]
        return (f"{self.client.user_id} on {self.client.server.server_name}: not seen within {timeout:.0f} s: {what}\n"
                f"  invites: {list(self.invites)}; left: {sorted(self.left)}\n"
                f"  timelines (last 15 each): {json.dumps(seen, indent=1)}\n"
                f"  sync errors (last 5): {self.errors[-5:]}\n"
                + "".join(f"  see {s.describe()}\n" for s in servers))

    # Queries over what was seen.
    def messages(self, room_id):
        return [e for e in self.timelines.get(room_id, []) if e.get("type") == "m.room.message"]

    def bodies(self, room_id):
        return [e.get("content", {}).get("body") for e in self.messages(room_id)]

    def membership(self, room_id, user_id):
        """The latest membership of `user_id` seen in the timeline of `room_id`, or None."""
        latest = None
        for e in self.timelines.get(room_id, []):
            if e.get("type") == "m.room.member" and e.get("state_key") == user_id:
                latest = e.get("content", {}).get("membership")
        return latest


def _short(content):
    text = json.dumps(content or {}, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


async def close_all(*clients):
    for c in clients:
        try:
            await c.close()
        except Exception:
            pass


async def shared_room(s, p, ws, wp, room_version=None):
    """A private room created by Synapse user `s` inviting peer user `p`, who joins it by room ID
    alone; returns once both users' /sync (watchers `ws`, `wp`) show the join. `room_version`:
    the server's default unless given."""
    room = check(await s.room_create(invite=[p.user_id], preset=nio.RoomPreset.private_chat, room_version=room_version),
                 nio.RoomCreateResponse, "creating a room", s).room_id
    await wp.until(lambda w: room in w.invites, f"the invite to {room}")
    check(await p.join(room), nio.JoinResponse, f"joining {room}", p)
    await wp.until(lambda w: w.membership(room, p.user_id) == "join", f"{p.user_id}'s own join in {room}")
    await ws.until(lambda w: w.membership(room, p.user_id) == "join", f"{p.user_id}'s join in {room} on Synapse")
    return room
