"""Fixtures of the federation interop test (docs/federation.md): one throwaway CA, Synapse on
127.0.0.2:8448 and the peer (Myelin, or Synapse with FEDERATION_PEER=synapse) on 127.0.0.3:8448,
started once for the whole session. Scenarios create their own users and rooms."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from servers import Federation  # noqa: E402


@pytest.fixture(scope="session")
def federation():
    pair = Federation()
    print(f"\nfederation work directory: {pair.workdir} (FEDERATION_KEEP=1 keeps it)", file=sys.stderr)
    try:
        pair.start()
    except Exception:
        pair.stop()
        raise
    yield pair
    pair.stop()
    pair.cleanup()


@pytest.fixture
def synapse(federation):
    """The Synapse on 127.0.0.2:8448, restarted first if a scenario left it down."""
    if federation.synapse.proc is None or federation.synapse.proc.poll() is not None:
        federation.synapse.start()
    return federation.synapse


@pytest.fixture
def peer(federation):
    if federation.peer.proc is None or federation.peer.proc.poll() is not None:
        pytest.fail(f"the peer is not running: {federation.peer.describe()}\n{federation.peer.log_tail()}")
    return federation.peer

