"""The server's published key verifies with an independent ed25519 implementation
(pyca/cryptography) over the canonical JSON of the response without `signatures`."""
import base64
import json
import time
import urllib.request

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def unpadded_b64decode(text):
    return base64.b64decode(text + "=" * (-len(text) % 4))


def canonical(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")


def test_key_response_verifies(server):
    with urllib.request.urlopen(server + "/_matrix/key/v2/server") as response:
        assert response.status == 200
        body = json.loads(response.read())
    assert body["server_name"] == "interop.test"
    assert body["valid_until_ts"] > time.time() * 1000
    (key_id, key), = body["verify_keys"].items()
    assert key_id.startswith("ed25519:")
    public = Ed25519PublicKey.from_public_bytes(unpadded_b64decode(key["key"]))
    signature = unpadded_b64decode(body["signatures"]["interop.test"][key_id])
    unsigned = {k: v for k, v in body.items() if k not in ("signatures", "unsigned")}
    public.verify(signature, canonical(unsigned))  # raises InvalidSignature on failure


def test_versions_and_unknown_endpoint(server):
    with urllib.request.urlopen(server + "/_matrix/client/versions") as response:
        versions = json.loads(response.read())["versions"]
    assert "v1.11" in versions
    try:
        urllib.request.urlopen(server + "/_matrix/client/v3/not/an/endpoint")
        raise AssertionError("expected 404")
    except urllib.error.HTTPError as error:
        assert error.code == 404
        assert json.loads(error.read())["errcode"] == "M_UNRECOGNIZED"
