"""Room upgrades followed across the two servers (issue 17, item 5, `m.room.tombstone`): a room
upgraded on one server, with a member on the other; that member sees the tombstone naming the
replacement, joins the replacement through the upgrading server, and finds the replacement's
create event naming the old room as its predecessor; a message then crosses in the new room."""

import nio
import pytest

from clients import Watcher, api, check, close_all, new_user, q, run


@pytest.mark.parametrize("where,old,new", [("synapse", "10", "11"), ("synapse", "11", "12"),
                                           ("peer", "10", "11"), ("peer", "11", "12")])
def test_upgrade_followed_from_the_other_server(synapse, peer, where, old, new):
    run(_upgrade(synapse, peer, where, old, new))


async def _upgrade(synapse, peer, where, old, new):
    home, away = (synapse, peer) if where == "synapse" else (peer, synapse)
    owner = await new_user(home, "up")
    member = await new_user(away, "fol")
    try:
        wo, wm = Watcher(owner, [away]), Watcher(member, [home])
        await wo.sync_once(0)
        await wm.sync_once(0)
        room = check(await owner.room_create(room_version=old, preset=nio.RoomPreset.public_chat, name=f"upgrade {old}"),
                     nio.RoomCreateResponse, f"creating a version {old} room", owner).room_id
        status, body = await api(member, "POST", f"/_matrix/client/v3/join/{q(room)}", body={},
                                 query={"server_name": home.server_name, "via": home.server_name})
        assert status == 200, f"joining {room} on {where} from the other server: {status} {body}"
        await wo.until(lambda w: w.membership(room, member.user_id) == "join", f"{member.user_id}'s join in {room}")

        status, body = await api(owner, "POST", f"/_matrix/client/v3/rooms/{q(room)}/upgrade", body={"new_version": new})
        assert status == 200 and body.get("replacement_room"), f"upgrading {room} to {new} on {where}: {status} {body}"
        replacement = body["replacement_room"]

        def tombstone(w):
            return next((e for e in w.timelines.get(room, []) if e.get("type") == "m.room.tombstone"), None)
        await wm.until(lambda w: tombstone(w) is not None, f"the tombstone of {room} for {member.user_id}")
        assert tombstone(wm)["content"].get("replacement_room") == replacement, tombstone(wm)

        status, body = await api(member, "POST", f"/_matrix/client/v3/join/{q(replacement)}", body={},
                                 query={"server_name": home.server_name, "via": home.server_name})
        assert status == 200 and body.get("room_id") == replacement, \
            f"joining the replacement {replacement} (version {new}, on {where}): {status} {body}"
        status, create = await api(member, "GET", f"/_matrix/client/v3/rooms/{q(replacement)}/state/m.room.create")
        assert status == 200, f"the replacement's create event for {member.user_id}: {status} {create}"
        assert create.get("predecessor", {}).get("room_id") == room, f"the replacement's create content: {create}"
        assert create.get("room_version") == new, create

        check(await member.room_send(replacement, "m.room.message", {"msgtype": "m.text", "body": "followed"}),
              nio.RoomSendResponse, "sending in the replacement", member)
        await wo.until(lambda w: "followed" in w.bodies(replacement), f"the follower's message in {replacement}")
    finally:
        await close_all(owner, member)
