"""matrix-nio (PyPI) against the real server: two users create and join rooms by id and by
alias, exchange messages, paginate history both ways in exact order, redact, kick and ban
(the banned user cannot rejoin), typing and receipts -- the rooms issue's "Judged by" flow,
with nio's own parsing of every response."""
import asyncio
import uuid

import nio

from nio_users import run, user


def test_rooms_with_nio(open_server):
    async def flow():
        tag = uuid.uuid4().hex[:6]
        alice = await user(open_server, "alice" + tag)
        bob = await user(open_server, "bob" + tag)
        try:
            created = await alice.room_create(name="Nio room", alias="nio" + tag, preset=nio.RoomPreset.public_chat)
            assert isinstance(created, nio.RoomCreateResponse), created
            room = created.room_id

            # By alias, and by id.
            joined = await bob.join(f"#nio{tag}:interop.test")
            assert isinstance(joined, nio.JoinResponse), joined
            assert joined.room_id == room
            assert isinstance(await bob.join(room), nio.JoinResponse)

            sent = []
            for i in range(30):
                sender = alice if i % 2 == 0 else bob
                reply = await sender.room_send(room, "m.room.message", {"msgtype": "m.text", "body": f"n{i}"})
                assert isinstance(reply, nio.RoomSendResponse), reply
                sent.append(reply.event_id)

            # Backwards from the end, pages of 7, in exact order.
            bodies, token = [], None
            while True:
                page = await bob.room_messages(room, start=token or "", limit=7, direction=nio.MessageDirection.back,
                                               message_filter={"types": ["m.room.message"]})
                assert isinstance(page, nio.RoomMessagesResponse), page
                if not page.chunk:
                    break
                bodies += [e.body for e in page.chunk]
                token = page.end
                if token is None:
                    break
            assert bodies == [f"n{i}" for i in reversed(range(30))]

            # Forwards from the beginning.
            forward, token = [], "t0"
            while token:
                page = await alice.room_messages(room, start=token, limit=9, direction=nio.MessageDirection.front)
                assert isinstance(page, nio.RoomMessagesResponse), page
                forward += [e.body for e in page.chunk if isinstance(e, nio.RoomMessageText)]
                token = page.end if page.chunk else None
            assert forward == [f"n{i}" for i in range(30)]

            # Redaction: the content is gone for everyone.
            redacted = await alice.room_redact(room, sent[0], reason="typo")
            assert isinstance(redacted, nio.RoomRedactResponse), redacted
            page = await bob.room_messages(room, start="", limit=50, direction=nio.MessageDirection.back)
            gone = [e for e in page.chunk if e.event_id == sent[0]]
            assert gone and isinstance(gone[0], nio.RedactedEvent), gone

            # Typing and receipts are accepted.
            assert isinstance(await bob.room_typing(room, True, timeout=5000), nio.RoomTypingResponse)
            assert isinstance(await bob.room_read_markers(room, sent[-1], sent[-1]), nio.RoomReadMarkersResponse)
            assert isinstance(await bob.update_receipt_marker(room, sent[-1]), nio.UpdateReceiptMarkerResponse)

            # Kick, then ban: the banned user cannot rejoin.
            assert isinstance(await alice.room_kick(room, bob.user_id, reason="out"), nio.RoomKickResponse)
            assert isinstance(await bob.join(room), nio.JoinResponse)
            assert isinstance(await alice.room_ban(room, bob.user_id, reason="gone"), nio.RoomBanResponse)
            refused = await bob.join(room)
            assert isinstance(refused, nio.JoinError), refused
            assert refused.status_code == "M_FORBIDDEN"
            assert isinstance(await alice.room_unban(room, bob.user_id), nio.RoomUnbanResponse)
            assert isinstance(await bob.join(room), nio.JoinResponse)
        finally:
            await alice.close()
            await bob.close()

    run(flow())
