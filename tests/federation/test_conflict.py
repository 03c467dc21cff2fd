"""Two servers cut off from each other change the power levels and the join rules of a shared
room in conflicting ways; once they are back and the DAG merges, both hold the same current
state, the one state resolution picks (issue 17, item 2; server-server API "Room State
Resolution", "Soft failure").

In a version 10 room, Synapse's user (creator) hands the peer's user power 100 and keeps 50 with
the power to change power levels and join rules. Synapse is stopped: the peer's user demotes the Synapse user to 0
and makes the room public. The peer is stopped and Synapse started: the Synapse user, still at
50 as far as Synapse knows, changes the power levels too and sets the join rule to knock. The
peer comes back, each user sends a message (it cites its own branch, or both), and both
servers must end with the same state. Resolution v2 orders power events by their sender's power
first, so the peer user's changes apply first, demote the Synapse user, and the Synapse user's
two changes fail their auth checks: the peer user's power levels and join rule win. Synapse's
answer is the reference: the peer must hold exactly Synapse's state.

In a version 12 room (state resolution v2.1) the creator's power is infinite: the peer user
(100) only adds to the power levels while the Synapse user demotes them to 0, and Synapse's
side wins.
"""
import asyncio
import time

import nio
import pytest

from clients import DEFAULT_WAIT, Watcher, api, check, close_all, new_user, q, run, shared_room


@pytest.mark.parametrize("version", ["10", "12"])
def test_conflicting_power_levels_and_join_rules_resolve_to_the_same_state(federation, synapse, peer, version):
    run(_conflict(federation, synapse, peer, version), budget=300)


def _state_events(w, room, event_type):
    return [e for e in w.timelines.get(room, []) if e.get("type") == event_type and e.get("state_key") == ""]


async def _put_state(client, room, event_type, content, what):
    reply = check(await client.room_put_state(room, event_type, content), nio.RoomPutStateResponse, what, client)
    return reply.event_id


async def _state_map(client, room):
    """{(type, state_key): event_id} of the room's current state on the client's server."""
    status, body = await api(client, "GET", f"/_matrix/client/v3/rooms/{q(room)}/state")
    assert status == 200 and isinstance(body, list), \
        f"GET /rooms/{room}/state on {client.server.describe()}: {status} {body}"
    return {(e["type"], e["state_key"]): e["event_id"] for e in body}


async def _conflict(federation, synapse, peer, version):
    s = await new_user(synapse, "sam")
    p = await new_user(peer, "pia")
    try:
        ws, wp = Watcher(s, [peer]), Watcher(p, [synapse])
        await ws.sync_once(0)
        await wp.sync_once(0)
        room = await shared_room(s, p, ws, wp, room_version=version)
        # From version 12 the creator's power is infinite (MSC4289): the Synapse user, creator,
        # cannot be demoted and outranks the peer user, so the roles of the two sides swap.
        privileged_creator = version == "12"

        # The starting point: the peer user at 100, the Synapse user at 50 with the power to
        # change power levels and join rules.
        status, levels = await api(s, "GET", f"/_matrix/client/v3/rooms/{q(room)}/state/m.room.power_levels")
        assert status == 200, f"power levels of {room} on Synapse: {status} {levels}"
        levels["users"] = {p.user_id: 100} if privileged_creator else {s.user_id: 50, p.user_id: 100}
        levels.setdefault("events", {}).update({"m.room.power_levels": 50, "m.room.join_rules": 50})
        start_pl = await _put_state(s, room, "m.room.power_levels", levels, "sharing power")
        await wp.until(lambda w: any(e["event_id"] == start_pl for e in _state_events(w, room, "m.room.power_levels")),
                       "the power levels giving the peer user 100")

        # Cut off, the peer's side: the Synapse user demoted, the room made public.
        await asyncio.to_thread(synapse.stop)
        if privileged_creator:
            peer_levels = {**levels, "events": {**levels["events"], "org.example.peer": 100}}
        else:
            peer_levels = {**levels, "users": {s.user_id: 0, p.user_id: 100}}
        peer_pl = await _put_state(p, room, "m.room.power_levels", peer_levels, "demoting the Synapse user on the peer")
        peer_jr = await _put_state(p, room, "m.room.join_rules", {"join_rule": "public"}, "making the room public on the peer")

        # Cut off, Synapse's side: the peer is down before Synapse comes back, so neither side
        # has seen the other's changes.
        await asyncio.to_thread(peer.stop)
        await asyncio.to_thread(synapse.start)
        # (A real change: Synapse answers a PUT of the same content with the existing event.)
        if privileged_creator:
            synapse_levels = {**levels, "users": {p.user_id: 0}}
        else:
            synapse_levels = {**levels, "events": {**levels["events"], "org.example.conflict": 50}}
        synapse_pl = await _put_state(s, room, "m.room.power_levels", synapse_levels, "changing power levels on Synapse")
        synapse_jr = await _put_state(s, room, "m.room.join_rules", {"join_rule": "knock"}, "setting knock on Synapse")
        assert len({start_pl, peer_pl, synapse_pl}) == 3 and peer_jr != synapse_jr, "a change made no new event"
        await asyncio.to_thread(peer.start)

        # Both back: a message on each side merges the branches of the DAG.
        check(await p.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "merge from the peer"}),
              nio.RoomSendResponse, "sending after the reunion", p)
        check(await s.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "merge from Synapse"}),
              nio.RoomSendResponse, "sending after the reunion", s)
        both = {"merge from the peer", "merge from Synapse"}
        await ws.until(lambda w: both <= set(w.bodies(room)), "both merge messages on Synapse")
        await wp.until(lambda w: both <= set(w.bodies(room)), "both merge messages on the peer")

        deadline = time.monotonic() + DEFAULT_WAIT
        while True:
            on_synapse, on_peer = await _state_map(s, room), await _state_map(p, room)
            if on_synapse == on_peer or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        names = {peer_pl: "peer's power levels", peer_jr: "peer's join rule", synapse_pl: "Synapse's power levels",
                 synapse_jr: "Synapse's join rule", start_pl: "the starting power levels"}
        differ = {f"{k}": (names.get(on_synapse.get(k), on_synapse.get(k)), names.get(on_peer.get(k), on_peer.get(k)))
                  for k in set(on_synapse) | set(on_peer) if on_synapse.get(k) != on_peer.get(k)}
        assert on_synapse == on_peer, \
            f"current states differ (key: (Synapse, peer)): {differ}\n  see {synapse.describe()}\n  see {peer.describe()}"
        # The answer of state resolution (checked by Synapse holding it too): the higher-powered
        # side's changes apply first and demote the other side, whose changes then fail.
        winner_pl, winner_jr, winner = (synapse_pl, synapse_jr, "Synapse's") if privileged_creator \
            else (peer_pl, peer_jr, "the peer's")
        assert on_synapse[("m.room.power_levels", "")] == winner_pl, \
            f"power levels: {names.get(on_synapse[('m.room.power_levels', '')])}, expected {winner}"
        assert on_synapse[("m.room.join_rules", "")] == winner_jr, \
            f"join rules: {names.get(on_synapse[('m.room.join_rules', '')])}, expected {winner}"
    finally:
        await close_all(s, p)
