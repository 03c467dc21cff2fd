"""Remote media over federation (issue 18, item 5): a file uploaded on one server is downloaded
by a client of the other, which fetches it over `GET /_matrix/federation/v1/media/download` (the
multipart answer) and caches it; unknown ids are 404 across servers."""
import os
import struct
import urllib.parse
import zlib

import nio

from clients import check, close_all, new_user, run, unique


async def upload(client, data, content_type, filename):
    """Uploads with matrix-nio; returns the mxc:// URI."""
    reply, _ = await client.upload(lambda *_: data, content_type=content_type, filename=filename, filesize=len(data))
    check(reply, nio.UploadResponse, f"uploading {filename}", client)
    return reply.content_uri


async def download(client, mxc, authenticated=True, thumbnail=None, timeout=60):
    """(status, headers, bytes) of the client's own server's download of `mxc`, on the
    authenticated path (`/_matrix/client/v1/media`) or the legacy one."""
    server, media_id = mxc[len("mxc://"):].split("/", 1)
    kind = "thumbnail" if thumbnail else "download"
    base = "/_matrix/client/v1/media" if authenticated else "/_matrix/media/v3"
    path = f"{base}/{kind}/{urllib.parse.quote(server, safe=':')}/{media_id}"
    if thumbnail:
        path += "?" + urllib.parse.urlencode(thumbnail)
    headers = {"Authorization": f"Bearer {client.access_token}"} if authenticated else {}
    response = await client.send("GET", path, headers=headers, timeout=timeout)
    async with response:
        return response.status, response.headers, await response.read()


def png(width, height):
    """A real RGB PNG of `width` x `height` (a gradient), made here."""
    raw = b"".join(b"\x00" + bytes((x * 7 + y * 3) % 256 for x in range(width) for _ in range(3)) for y in range(height))

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def assert_same_media(status, headers, body, data, content_type, filename, where):
    assert status == 200, f"{where}: {status} {body[:300]!r}"
    assert body == data, f"{where}: {len(body)} bytes differ from the {len(data)} uploaded"
    assert headers.get("Content-Type", "").split(";")[0].strip() == content_type, f"{where}: {dict(headers)}"
    disposition = headers.get("Content-Disposition", "")
    assert filename in urllib.parse.unquote(disposition), f"{where}: Content-Disposition {disposition!r} lacks {filename!r}"


def test_synapse_upload_downloaded_by_peer_client(synapse, peer):
    run(_synapse_to_peer(synapse, peer))


async def _synapse_to_peer(synapse, peer):
    s = await new_user(synapse, "media_up")
    p = await new_user(peer, "media_down")
    try:
        data = os.urandom(300_000) + b"\r\n--" + os.urandom(1000)
        name = f"report {unique('')}.bin"
        mxc = await upload(s, data, "application/octet-stream", name)
        assert mxc.startswith(f"mxc://{synapse.server_name}/"), mxc
        # The peer fetches it over federation (authenticated path), then serves its cached copy.
        for attempt in ("first", "cached"):
            status, headers, body = await download(p, mxc)
            assert_same_media(status, headers, body, data, "application/octet-stream", name,
                              f"{attempt} peer download of {mxc} ({peer.describe()}, {synapse.describe()})")
        # An image, with its type.
        image = png(64, 48)
        mxc = await upload(s, image, "image/png", "picture.png")
        status, headers, body = await download(p, mxc)
        assert_same_media(status, headers, body, image, "image/png", "picture.png", f"peer download of {mxc}")
    finally:
        await close_all(s, p)


def test_peer_upload_downloaded_by_synapse_client(synapse, peer):
    run(_peer_to_synapse(synapse, peer))


async def _peer_to_synapse(synapse, peer):
    p = await new_user(peer, "media_up")
    s = await new_user(synapse, "media_down")
    try:
        data = os.urandom(1_500_000)
        name = f"notes {unique('')}.txt"
        mxc = await upload(p, data, "text/plain", name)
        assert mxc.startswith(f"mxc://{peer.server_name}/"), mxc
        # Synapse fetches it from the peer's federation media endpoint (multipart).
        status, headers, body = await download(s, mxc)
        assert status == 200, f"Synapse download of {mxc}: {status} {body[:300]!r}\n  see {synapse.describe()}\n  see {peer.describe()}"
        assert body == data, f"Synapse served {len(body)} bytes, not the {len(data)} uploaded on the peer"
        assert headers.get("Content-Type", "").startswith("text/plain"), dict(headers)
        assert name in urllib.parse.unquote(headers.get("Content-Disposition", "")), dict(headers)
        # An image, and a thumbnail of it made by Synapse from the copy it fetched.
        image = png(200, 150)
        mxc = await upload(p, image, "image/png", "big.png")
        status, headers, body = await download(s, mxc)
        assert status == 200 and body == image, f"Synapse download of {mxc}: {status}"
        status, headers, body = await download(s, mxc, thumbnail={"width": 32, "height": 32, "method": "crop"})
        assert status == 200, f"Synapse thumbnail of {mxc}: {status} {body[:300]!r}"
        assert headers.get("Content-Type", "").startswith("image/"), dict(headers)
        assert body[:8] == b"\x89PNG\r\n\x1a\n" or body[:2] == b"\xff\xd8", "the thumbnail is not an image"
    finally:
        await close_all(p, s)


def test_unknown_remote_media_is_404_both_ways(synapse, peer):
    run(_unknown(synapse, peer))


async def _unknown(synapse, peer):
    p = await new_user(peer, "media_none")
    s = await new_user(synapse, "media_none")
    try:
        missing = unique("nosuchmedia")
        status, _, body = await download(p, f"mxc://{synapse.server_name}/{missing}")
        assert status == 404, f"peer download of unknown Synapse media: {status} {body[:300]!r}"
        status, _, body = await download(s, f"mxc://{peer.server_name}/{missing}")
        assert status == 404, f"Synapse download of unknown peer media: {status} {body[:300]!r}"
    finally:
        await close_all(p, s)
