"""Media with real clients against the real server: matrix-nio (PyPI) uploads, downloads
(authenticated, and legacy where the server allows it), sets an avatar end to end; mautrix
(PyPI) uploads and downloads through its own client API. Both thumbnail an image (libvips
on the server; the answer's PNG header read back here). The file name and content type
survive the round trip."""
import asyncio
import struct
import urllib.error
import urllib.request
import uuid
import zlib

import nio
import pytest

from conftest import _start


def run(coro):
    return asyncio.run(coro)


def tiny_png(width=3, height=2):
    """A valid RGB PNG made here (no file in the repository)."""
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    rows = b"".join(b"\x00" + b"".join(bytes([(x * 80) % 256, (y * 120) % 256, 200]) for x in range(width))
                    for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def png_size(data):
    """(width, height) from a PNG's IHDR."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:16]
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def legacy_server():
    """A server with `media.enable_authenticated_media` off: the legacy paths serve all."""
    yield from _start("server_name: interop.test\nrate_limits:\n  enabled: false\nmedia:\n"
                      "  enable_authenticated_media: false\nlogging:\n  access_log: false\n")


async def registered(base, prefix):
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    client = nio.AsyncClient(base, name)
    reg = await client.register(name, "media-pass-1")
    assert isinstance(reg, nio.RegisterResponse), reg
    return client


def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def test_nio_upload_download_and_avatar(open_server):
    png = tiny_png()

    async def flow():
        client = await registered(open_server, "niomedia")
        try:
            up, _keys = await client.upload(lambda *_: png, content_type="image/png", filename="tiny avatar.png",
                                            filesize=len(png))
            assert isinstance(up, nio.UploadResponse), up
            assert up.content_uri.startswith("mxc://interop.test/")

            down = await client.download(up.content_uri)
            assert isinstance(down, nio.DownloadResponse), down
            assert down.body == png
            assert down.content_type == "image/png"
            assert down.filename == "tiny avatar.png"

            renamed = await client.download(up.content_uri, filename="renamed.png")
            assert isinstance(renamed, nio.DownloadResponse), renamed
            assert renamed.filename == "renamed.png" and renamed.body == png

            # The avatar, end to end: set it, read it back from the profile, fetch its bytes.
            assert isinstance(await client.set_avatar(up.content_uri), nio.ProfileSetAvatarResponse)
            profile = await client.get_profile()
            assert isinstance(profile, nio.ProfileGetResponse), profile
            assert profile.avatar_url == up.content_uri
            avatar = await client.download(profile.avatar_url)
            assert isinstance(avatar, nio.DownloadResponse) and avatar.body == png

            # Media uploaded under authenticated media is not served by the legacy path.
            server_name, media_id = up.content_uri[len("mxc://"):].split("/", 1)
            status, _, _ = http_get(f"{open_server}/_matrix/media/v3/download/{server_name}/{media_id}")
            assert status == 404

            # A thumbnail: a 200x150 image cropped to 32x32 and scaled into 64x64.
            picture = tiny_png(200, 150)
            up, _keys = await client.upload(lambda *_: picture, content_type="image/png", filename="picture.png",
                                            filesize=len(picture))
            assert isinstance(up, nio.UploadResponse), up
            server_name, media_id = up.content_uri[len("mxc://"):].split("/", 1)
            crop = await client.thumbnail(server_name, media_id, 32, 32, method=nio.ResizingMethod.crop)
            assert isinstance(crop, nio.ThumbnailResponse), crop
            assert crop.content_type == "image/png" and png_size(crop.body) == (32, 32)
            scale = await client.thumbnail(server_name, media_id, 64, 64)
            assert isinstance(scale, nio.ThumbnailResponse), scale
            width, height = png_size(scale.body)
            assert 64 <= max(width, height) and width <= 200 and abs(width / height - 4 / 3) < 0.1

            missing = await client.download("mxc://interop.test/doesnotexist")
            assert isinstance(missing, nio.DownloadError), missing
        finally:
            await client.close()

    run(flow())


def test_legacy_download_when_authenticated_media_is_off(legacy_server):
    data = b"plain text body\n"

    async def flow():
        client = await registered(legacy_server, "niolegacy")
        try:
            up, _ = await client.upload(lambda *_: data, content_type="text/plain", filename="notes.txt",
                                        filesize=len(data))
            assert isinstance(up, nio.UploadResponse), up
            return up.content_uri
        finally:
            await client.close()

    uri = run(flow())
    server_name, media_id = uri[len("mxc://"):].split("/", 1)
    status, body, headers = http_get(f"{legacy_server}/_matrix/media/v3/download/{server_name}/{media_id}")
    assert status == 200 and body == data
    assert headers["Content-Type"] == "text/plain"
    assert headers["Content-Disposition"] == 'inline; filename="notes.txt"'
    assert headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert headers["Content-Security-Policy"].startswith("sandbox;")


def test_mautrix_upload_and_download(open_server):
    from mautrix.api import HTTPAPI
    from mautrix.client import Client
    from mautrix.types import UserID

    png = tiny_png(5, 4)

    async def flow():
        nio_client = await registered(open_server, "mautrixmedia")
        try:
            api = HTTPAPI(base_url=open_server, token=nio_client.access_token)
            client = Client(mxid=UserID(nio_client.user_id), device_id=nio_client.device_id, api=api)
            try:
                uri = await client.upload_media(png, mime_type="image/png", filename="from mautrix.png")
                assert str(uri).startswith("mxc://interop.test/")
                assert await client.download_media(uri) == png
                picture = tiny_png(120, 90)
                picture_uri = await client.upload_media(picture, mime_type="image/png", filename="picture.png")
                thumbnail = await client.download_thumbnail(picture_uri, width=32, height=32, resize_method="crop")
                assert png_size(thumbnail) == (32, 32)
                config = await client.get_media_repo_config()
                assert config.upload_size == 50 * 1024 * 1024
            finally:
                await api.session.close()
        finally:
            await nio_client.close()

    run(flow())
