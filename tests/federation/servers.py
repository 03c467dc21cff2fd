"""The two homeservers of the federation interop test, started and stopped by the test itself.

Synapse (from PyPI) listens with TLS on 127.0.0.2:8448 under the server name "127.0.0.2:8448";
the peer listens on 127.0.0.3:8448 under "127.0.0.3:8448" and is Myelin ($MYELIN_BIN) or, with
FEDERATION_PEER=synapse, a second Synapse (which proves the harness itself). A throwaway CA made
here signs both certificates; each server trusts it for outbound federation and clients use it
too. Used by conftest.py (pytest fixtures) and by bench/federation_latency.py.

Nothing here writes inside the repository: every file lives in a temporary work directory.
"""
import datetime
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SYNAPSE_HOST = "127.0.0.2"
PEER_HOST = "127.0.0.3"
PORT = 8448
SHARED_SECRET = "federation-interop-shared-secret"
# Backoff of each server's sender towards a destination that failed: short, so that the restart
# scenario does not wait for the production defaults (Synapse: 10 minutes).
BACKOFF_INITIAL_MS = 1000
BACKOFF_MAX_MS = 5000


class ServerError(RuntimeError):
    """A server did not start or stop; the message names its log file."""


# --- PKI ---------------------------------------------------------------------------------------

class PKI:
    """A throwaway CA and one certificate per IP address it was asked for, as PEM files in `dir`."""

    def __init__(self, directory, ips):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Myelin federation test CA")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name).issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        self.ca = os.path.join(directory, "ca.pem")
        _write(self.ca, ca_cert.public_bytes(serialization.Encoding.PEM))
        self.certs = {}
        for ip in ips:
            key = ec.generate_private_key(ec.SECP256R1())
            cert = (
                x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)]))
                .issuer_name(ca_name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
                .sign(ca_key, hashes.SHA256())
            )
            cert_path = os.path.join(directory, f"{ip}.crt")
            key_path = os.path.join(directory, f"{ip}.key")
            _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
            _write(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
            os.chmod(key_path, 0o600)
            self.certs[ip] = (cert_path, key_path)

    def client_context(self):
        """An SSL context that trusts only the throwaway CA (clients of both servers use it)."""
        return ssl.create_default_context(cafile=self.ca)


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


# --- Server base --------------------------------------------------------------------------------

class Homeserver:
    """One server process on HOST:8448 with TLS; subclasses write the configuration and command."""

    kind = "?"

    def __init__(self, host, pki, workdir):
        self.host = host
        self.port = PORT
        self.server_name = f"{host}:{PORT}"
        self.base_url = f"https://{host}:{PORT}"
        self.pki = pki
        self.dir = os.path.join(workdir, f"{self.kind}-{host}")
        os.makedirs(self.dir, exist_ok=True)
        self.log_path = os.path.join(self.dir, "server.log")
        self.proc = None
        self.ssl = pki.client_context()

    # Subclasses: prepare() writes files once, command() is the argv.
    def prepare(self):
        raise NotImplementedError

    def command(self):
        raise NotImplementedError

    def describe(self):
        return f"{self.kind} {self.server_name} (log {self.log_path})"

    def start(self, timeout=90, check_port=True):
        if check_port:
            _require_free(self.host, self.port)
        log = open(self.log_path, "ab")
        log.write(f"\n=== start {time.strftime('%H:%M:%S')} ===\n".encode())
        log.flush()
        self.proc = subprocess.Popen(self.command(), cwd=self.dir, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"{self.describe()} exited with status {self.proc.returncode} while starting:\n"
                                  + self.log_tail())
            try:
                urllib.request.urlopen(self.base_url + "/health", timeout=2, context=self.ssl).read()
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.2)
        self.kill()
        raise ServerError(f"{self.describe()} did not answer https {self.base_url}/health within {timeout} s:\n"
                          + self.log_tail())

    def stop(self, timeout=30):
        """SIGTERM, then SIGKILL after `timeout` seconds; only the process this object started."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def log_tail(self, lines=40):
        try:
            with open(self.log_path, "rb") as f:
                return b"".join(f.readlines()[-lines:]).decode(errors="replace")
        except OSError:
            return "(no log)"

    # --- HTTP (synchronous, for set-up; tests use matrix-nio) --------------------------------

    def request(self, method, path, body=None, token=None, headers=None, timeout=30):
        """(status, parsed JSON or None) of one HTTPS request to this server."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.ssl) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, {"_raw": raw[:500].decode(errors="replace")}

    def register(self, localpart, password=None):
        """Registers `localpart` with the shared-secret admin API; returns the login dict
        (user_id, access_token, device_id)."""
        password = password or "pw-" + localpart
        status, body = self.request("GET", "/_synapse/admin/v1/register")
        assert status == 200 and body and "nonce" in body, \
            f"{self.describe()}: GET /_synapse/admin/v1/register -> {status} {body}"
        mac = hmac.new(SHARED_SECRET.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([body["nonce"].encode(), localpart.encode(), password.encode(), b"notadmin"]))
        status, reply = self.request("POST", "/_synapse/admin/v1/register", {
            "nonce": body["nonce"], "username": localpart, "password": password, "admin": False,
            "mac": mac.hexdigest()})
        assert status == 200 and reply and "access_token" in reply, \
            f"{self.describe()}: shared-secret registration of {localpart} -> {status} {reply}"
        return {"user_id": reply["user_id"], "access_token": reply["access_token"],
                "device_id": reply.get("device_id")}


def _require_free(host, port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise ServerError(f"{host}:{port} is already in use ({e}); another federation test running?") from e


# --- Synapse ------------------------------------------------------------------------------------

def synapse_python():
    """The Python that has Synapse installed: $SYNAPSE_PYTHON, else this interpreter."""
    return os.environ.get("SYNAPSE_PYTHON", sys.executable)


class SynapseServer(Homeserver):
    kind = "synapse"

    def prepare(self):
        cert, key = self.pki.certs[self.host]
        d = self.dir
        big = "{per_second: 100000, burst_count: 1000000}"
        config = f"""# Written by tests/federation/servers.py for the federation interop test.
server_name: "{self.server_name}"
public_baseurl: "{self.base_url}/"
pid_file: {d}/homeserver.pid
report_stats: false
listeners:
  - port: {self.port}
    bind_addresses: ['{self.host}']
    type: http
    tls: true
    x_forwarded: false
    resources: [{{names: [client, federation], compress: false}}]
tls_certificate_path: {cert}
tls_private_key_path: {key}
database: {{name: sqlite3, args: {{database: {d}/homeserver.db}}}}
media_store_path: {d}/media
signing_key_path: {d}/signing.key
log_config: {d}/log.yaml
macaroon_secret_key: "{secrets.token_hex(16)}"
form_secret: "{secrets.token_hex(16)}"
registration_shared_secret: "{SHARED_SECRET}"
enable_registration: false
bcrypt_rounds: 4
presence: {{enabled: false}}
url_preview_enabled: false
serve_server_wellknown: false
# Federation on loopback with the test's own CA: no notary, verified certificates.
trusted_key_servers: []
suppress_key_server_warning: true
federation_verify_certificates: true
federation_custom_ca_list: [{self.pki.ca}]
# Synapse refuses loopback destinations by default; 'ip_range_whitelist' (not the never-supported
# 'federation_ip_range_whitelist') opens them for federation too, except that server names that are
# IP literals are checked against the blacklist alone: the blacklist here is Synapse's default
# without 127.0.0.0/8 and ::1.
ip_range_whitelist: ['127.0.0.0/8']
ip_range_blacklist: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', '192.0.0.0/24',
                     '169.254.0.0/16', '192.88.99.0/24', '198.18.0.0/15', '192.0.2.0/24', '198.51.100.0/24',
                     '203.0.113.0/24', '224.0.0.0/4', 'fe80::/10', 'fc00::/7', '2001:db8::/32', 'ff00::/8',
                     'fec0::/10']
federation:
  destination_min_retry_interval: {BACKOFF_INITIAL_MS}  # ms
  destination_max_retry_interval: {BACKOFF_MAX_MS}  # ms
  max_long_retry_delay: {BACKOFF_MAX_MS}  # ms, between retries of one failed /send
allow_public_rooms_over_federation: true
alias_creation_rules: [{{action: allow}}]
room_list_publication_rules: [{{action: allow}}]
rc_message: {big}
rc_registration: {big}
rc_login: {{address: {big}, account: {big}, failed_attempts: {big}}}
rc_joins: {{local: {big}, remote: {big}}}
rc_joins_per_room: {big}
rc_invites: {{per_room: {big}, per_user: {big}, per_issuer: {big}}}
rc_room_creation: {big}
rc_presence: {{per_user: {big}}}
rc_federation: {{window_size: 1000, sleep_limit: 100000, sleep_delay: 0, reject_limit: 100000, concurrent: 1000}}
"""
        _write(os.path.join(d, "homeserver.yaml"), config.encode())
        level = os.environ.get("SYNAPSE_LOG_LEVEL", "INFO")
        _write(os.path.join(d, "log.yaml"), f"""version: 1
formatters: {{precise: {{format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'}}}}
filters: {{context: {{(): synapse.logging.context.LoggingContextFilter, request: ""}}}}
handlers: {{file: {{class: logging.FileHandler, formatter: precise, filters: [context], filename: {d}/homeserver.log}}}}
root: {{level: {level}, handlers: [file]}}
disable_existing_loggers: false
""".encode())
        if not os.path.exists(os.path.join(d, "signing.key")):
            out = subprocess.run([synapse_python(), "-m", "synapse.app.homeserver", "-c", f"{d}/homeserver.yaml",
                                  "--generate-keys"], cwd=d, capture_output=True, text=True, timeout=120)
            if out.returncode != 0:
                raise ServerError(f"synapse --generate-keys failed: {out.stdout}\n{out.stderr}")

    def command(self):
        return [synapse_python(), "-m", "synapse.app.homeserver", "-c", f"{self.dir}/homeserver.yaml"]

    def describe(self):
        return f"synapse {self.server_name} (logs {self.log_path}, {self.dir}/homeserver.log)"

    def signing_key(self):
        """(key_id, signedjson signing key) of this server, for the raw signed-request test."""
        import signedjson.key
        with open(os.path.join(self.dir, "signing.key")) as f:
            key = signedjson.key.read_signing_keys(f)[0]
        return f"{key.alg}:{key.version}", key


# --- Myelin -------------------------------------------------------------------------------------

def myelin_binary():
    path = os.environ.get("MYELIN_BIN")
    if path:
        return path
    bin_dir = subprocess.check_output(["swift", "build", "--show-bin-path"], cwd=ROOT, text=True).strip()
    return os.path.join(bin_dir, "myelin")


# Interim diagnostic (docs/federation.md): Myelin listens in plain HTTP on this port and a
# TLS-terminating relay (tls_proxy.py) serves 127.0.0.3:8448, for builds whose listeners cannot
# serve TLS yet. Remove once they can.
PROXY_BACKEND_PORT = 18448


def myelin_behind_proxy():
    return os.environ.get("FEDERATION_MYELIN_TLS_PROXY") == "1"


class MyelinServer(Homeserver):
    kind = "myelin"

    def __init__(self, host, pki, workdir):
        super().__init__(host, pki, workdir)
        self.proxy = None

    def config_text(self):
        """The configuration the harness gives Myelin (the shape fixed for issue 16)."""
        cert, key = self.pki.certs[self.host]
        if myelin_behind_proxy():
            listener = f"""  - host: {self.host}
    port: {PROXY_BACKEND_PORT}"""
        else:
            listener = f"""  - host: {self.host}
    port: {self.port}
    tls: {{certificate: {cert}, private_key: {key}}}"""
        return f"""# Written by tests/federation/servers.py for the federation interop test.
server_name: "{self.server_name}"
data_dir: {self.dir}/data
listeners:
{listener}
registration:
  enabled: false
  shared_secret: "{SHARED_SECRET}"
rate_limits:
  enabled: false
logging:
  level: {os.environ.get("MYELIN_LOG_LEVEL", "info")}
  access_log: true
federation:
  enabled: true
  verify_certificates: true
  extra_ca_files: [{self.pki.ca}]
  ip_range_whitelist: [127.0.0.0/8]
  trusted_key_servers: []
  backoff_initial_ms: {BACKOFF_INITIAL_MS}
  backoff_max_ms: {BACKOFF_MAX_MS}
"""

    def prepare(self):
        text = self.config_text()
        # Interim diagnostic: FEDERATION_MYELIN_OMIT=key,key drops federation keys that a
        # partial build does not know yet (its loader refuses unknown keys).
        omit = {k.strip() for k in os.environ.get("FEDERATION_MYELIN_OMIT", "").split(",") if k.strip()}
        if omit:
            text = "".join(line for line in text.splitlines(keepends=True)
                           if line.strip().split(":")[0] not in omit or not line.startswith("  "))
        _write(os.path.join(self.dir, "myelin.yaml"), text.encode())

    def command(self):
        return [myelin_binary(), "serve", "--config", os.path.join(self.dir, "myelin.yaml")]

    def start(self, timeout=90):
        if myelin_behind_proxy() and (self.proxy is None or self.proxy.poll() is not None):
            cert, key = self.pki.certs[self.host]
            _require_free(self.host, self.port)
            self.proxy = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "tls_proxy.py"),
                                           self.host, str(self.port), cert, key, self.host, str(PROXY_BACKEND_PORT)],
                                          start_new_session=True)
            time.sleep(0.5)
            super().start(timeout, check_port=False)  # the relay holds the port
            return
        super().start(timeout)

    def stop(self, timeout=30):
        super().stop(timeout)
        if self.proxy is not None:
            self.proxy.terminate()
            self.proxy.wait(timeout=10)
            self.proxy = None


# --- The pair ------------------------------------------------------------------------------------

def peer_kind():
    kind = os.environ.get("FEDERATION_PEER", "myelin").lower()
    if kind not in ("myelin", "synapse"):
        raise ServerError(f"FEDERATION_PEER must be myelin or synapse, not {kind!r}")
    return kind


class Federation:
    """Synapse on 127.0.0.2:8448 and the peer on 127.0.0.3:8448, sharing one throwaway CA."""

    def __init__(self, workdir=None, peer=None):
        self.workdir = workdir or tempfile.mkdtemp(prefix="myelin-federation-")
        self.pki = PKI(os.path.join(self.workdir, "pki"), [SYNAPSE_HOST, PEER_HOST])
        self.synapse = SynapseServer(SYNAPSE_HOST, self.pki, self.workdir)
        kind = peer or peer_kind()
        self.peer = (SynapseServer if kind == "synapse" else MyelinServer)(PEER_HOST, self.pki, self.workdir)

    def start(self):
        for server in (self.synapse, self.peer):
            server.prepare()
        self.synapse.start()
        try:
            self.peer.start()
        except Exception:
            self.synapse.stop()
            raise

    def stop(self):
        for server in (self.peer, self.synapse):
            server.stop()

    def cleanup(self):
        if os.environ.get("FEDERATION_KEEP") != "1":
            shutil.rmtree(self.workdir, ignore_errors=True)
