"""Backfill (issue 17, item 1): a peer user joining a Synapse room with 2,000 earlier messages
(history visibility `shared`) pages through all of them with /messages, in Synapse's order, each
once. The peer holds nothing before its join (send_join gives state, not history): every earlier
page comes from GET /backfill on Synapse."""
import asyncio
import time

import nio

from clients import Watcher, api, check, close_all, new_user, q, run

MESSAGES = 2000
# One at a time. Concurrent sends fork Synapse's DAG so widely (it creates up to 5 events of a
# room at once; 25 sends in flight left 710 forward extremities) that an event naming at most 10
# prev events leaves most branches out of anyone's history: a server joining later reaches by
# backfill only the ancestors of its join (Myelin reached 1,282 of 2,000, with no hole left).
# One at a time, the history is linear and its order unambiguous.
CONCURRENT_SENDS = 1
PAGE = 50


def test_peer_user_joining_late_pages_through_synapse_history(synapse, peer):
    run(_history(synapse, peer), budget=170)


async def _send_all(client, room, count):
    """Sends `count` messages concurrently (bounded), each with its own transaction id."""
    gate = asyncio.Semaphore(CONCURRENT_SENDS)

    async def one(i):
        async with gate:
            status, body = await api(client, "PUT", f"/_matrix/client/v3/rooms/{q(room)}/send/m.room.message/h{i}",
                                     {"msgtype": "m.text", "body": f"history {i}"})
            assert status == 200, f"sending message {i} on {client.server.describe()}: {status} {body}"
    await asyncio.gather(*(one(i) for i in range(count)))


async def _page_backwards(client, room, limit, max_pages):
    """Every event /messages serves going backwards from the newest, in the order served."""
    events, start, pages = [], None, 0
    while pages < max_pages:
        query = {"dir": "b", "limit": str(limit)}
        if start:
            query["from"] = start
        status, body = await api(client, "GET", f"/_matrix/client/v3/rooms/{q(room)}/messages", query=query, timeout=60)
        assert status == 200, f"/messages on {client.server.describe()} (page {pages}): {status} {body}"
        events += body.get("chunk", [])
        pages += 1
        end = body.get("end")
        # The end of the room: no `end`, or (as some Synapse versions answer) an empty page
        # that does not move.
        if not end or (not body.get("chunk") and end == start):
            return events
        start = end
    raise AssertionError(f"/messages on {client.server.describe()} did not end within {max_pages} pages "
                         f"({len(events)} events so far)")


async def _history(synapse, peer):
    s = await new_user(synapse, "historian")
    p = await new_user(peer, "reader")
    try:
        created = check(await s.room_create(preset=nio.RoomPreset.public_chat, initial_state=[
            {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "shared"}}]),
            nio.RoomCreateResponse, "creating the room", s)
        room = created.room_id
        began = time.monotonic()
        await _send_all(s, room, MESSAGES)
        sent_s = time.monotonic() - began

        wp = Watcher(p, [synapse])
        await wp.sync_once(0)
        status, body = await api(p, "POST", f"/_matrix/client/v3/join/{q(room)}", {},
                                 query={"server_name": synapse.server_name})
        assert status == 200, f"joining {room} through Synapse: {status} {body}"
        await wp.until(lambda w: w.membership(room, p.user_id) == "join", f"{p.user_id}'s own join in {room}")

        # Synapse's own order of the room (it holds the whole history).
        expected = [e["event_id"] for e in await _page_backwards(s, room, 1000, 10)
                    if e.get("type") == "m.room.message"]
        assert len(expected) == MESSAGES, f"Synapse serves {len(expected)} messages of {MESSAGES}"

        began = time.monotonic()
        served = await _page_backwards(p, room, PAGE, 4 * MESSAGES // PAGE)
        paged_s = time.monotonic() - began
        ids = [e["event_id"] for e in served]
        duplicates = len(ids) - len(set(ids))
        assert duplicates == 0, f"{duplicates} events served twice by the peer's /messages"
        got = [e["event_id"] for e in served if e.get("type") == "m.room.message"]
        bodies = [e["content"].get("body") for e in served if e.get("type") == "m.room.message"]
        assert len(got) == MESSAGES, \
            f"the peer served {len(got)} of {MESSAGES} messages; the oldest it served: {bodies[-3:]}"
        assert got == expected, "the peer's order differs from Synapse's: first difference at " \
            f"{next(i for i, (a, b) in enumerate(zip(got, expected)) if a != b)}"
        if peer.kind == "myelin":
            # Myelin's history goes on to the create event (the state before the first message
            # comes with the last batch); Synapse as the peer stops at the oldest message.
            assert served[-1].get("type") == "m.room.create", f"the history does not end at the create event: {served[-1]}"
        print(f"sent {MESSAGES} messages on Synapse in {sent_s:.1f} s; "
              f"the peer paged them ({PAGE} per page) in {paged_s:.1f} s")
    finally:
        await close_all(s, p)


PEER_MESSAGES = 300


def test_synapse_user_joining_late_pages_through_peer_history(synapse, peer):
    run(_history_on_peer(synapse, peer), budget=170)


async def _history_on_peer(synapse, peer):
    """The other way round: the room and its history are on the peer, which serves GET /backfill
    (and the state and events Synapse asks for around it) to a Synapse user paging /messages."""
    s = await new_user(synapse, "latecomer")
    p = await new_user(peer, "chronicler")
    try:
        created = check(await p.room_create(preset=nio.RoomPreset.public_chat, initial_state=[
            {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "shared"}}]),
            nio.RoomCreateResponse, "creating the room on the peer", p)
        room = created.room_id
        for i in range(PEER_MESSAGES):
            status, body = await api(p, "PUT", f"/_matrix/client/v3/rooms/{q(room)}/send/m.room.message/p{i}",
                                     {"msgtype": "m.text", "body": f"peer history {i}"})
            assert status == 200, f"sending message {i} on {p.server.describe()}: {status} {body}"

        ws = Watcher(s, [peer])
        await ws.sync_once(0)
        status, body = await api(s, "POST", f"/_matrix/client/v3/join/{q(room)}", {}, query={"server_name": peer.server_name})
        assert status == 200, f"joining {room} through the peer: {status} {body}"
        await ws.until(lambda w: w.membership(room, s.user_id) == "join", f"{s.user_id}'s own join in {room}")

        expected = [e["event_id"] for e in await _page_backwards(p, room, 1000, 10) if e.get("type") == "m.room.message"]
        assert len(expected) == PEER_MESSAGES, f"the peer serves {len(expected)} messages of {PEER_MESSAGES}"
        served = await _page_backwards(s, room, PAGE, 4 * PEER_MESSAGES // PAGE + 20)
        ids = [e["event_id"] for e in served]
        assert len(ids) == len(set(ids)), "events served twice by Synapse's /messages"
        got = [e["event_id"] for e in served if e.get("type") == "m.room.message"]
        assert got == expected, f"Synapse served {len(got)} of {PEER_MESSAGES} messages" + (
            "" if len(got) != len(expected) else ", in another order than the peer's")
    finally:
        await close_all(s, p)
