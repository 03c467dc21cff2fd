"""The voice-message extension seen by matrix-nio (PyPI): a speech sample espeak-ng makes is
uploaded through /_matrix/client/r0/voice/upload with a room; the other member's nio sync
parses the room message as RoomMessageAudio carrying the MSC3245 voice and MSC1767 audio
fields, and nio downloads the same bytes from its mxc URI."""
import json
import os
import subprocess
import tempfile
import urllib.parse
import urllib.request
import uuid

import nio

from nio_users import run, user


def _speech_wav(seconds=4):
    directory = tempfile.mkdtemp(prefix="myelin-voice-")
    raw, padded = os.path.join(directory, "raw.wav"), os.path.join(directory, "speech.wav")
    subprocess.run(["espeak-ng", "-w", raw, "-s", "150", "A voice message for matrix nio."], check=True)
    subprocess.run(["sox", raw, padded, "pad", "0", str(seconds), "trim", "0", str(seconds)], check=True)
    with open(padded, "rb") as f:
        return f.read()


def _upload(server, token, room, audio):
    query = urllib.parse.urlencode({"room_id": room})
    request = urllib.request.Request(f"{server}/_matrix/client/r0/voice/upload?{query}", data=audio, method="POST",
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "audio/wav"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def test_voice_message_with_nio(open_server):
    async def flow():
        tag = uuid.uuid4().hex[:6]
        alice = await user(open_server, "alice" + tag)
        bob = await user(open_server, "bob" + tag)
        try:
            created = await alice.room_create(name="Voice", preset=nio.RoomPreset.public_chat)
            assert isinstance(created, nio.RoomCreateResponse), created
            room = created.room_id
            assert isinstance(await bob.join(room), nio.JoinResponse)

            audio = _speech_wav()
            uploaded = _upload(open_server, alice.access_token, room, audio)
            assert abs(uploaded["duration_ms"] - 4000) <= 100, uploaded
            assert len(uploaded["waveform"]) == 100

            synced = await bob.sync(timeout=0, full_state=True)
            assert isinstance(synced, nio.SyncResponse), synced
            events = synced.rooms.join[room].timeline.events
            voice = [e for e in events if getattr(e, "event_id", None) == uploaded["event_id"]]
            assert voice, [type(e).__name__ for e in events]
            event = voice[0]
            assert isinstance(event, nio.RoomMessageAudio), type(event)
            assert event.url == uploaded["content_uri"]
            content = event.source["content"]
            assert content["org.matrix.msc3245.voice"] == {}
            assert content["org.matrix.msc1767.audio"]["duration"] == uploaded["duration_ms"]
            assert len(content["org.matrix.msc1767.audio"]["waveform"]) == 100
            assert content["info"]["mimetype"] == "audio/wav"
            assert content["info"]["size"] == len(audio)

            downloaded = await bob.download(mxc=event.url)
            assert isinstance(downloaded, nio.DownloadResponse), downloaded
            assert downloaded.body == audio
        finally:
            await alice.close()
            await bob.close()

    run(flow())
