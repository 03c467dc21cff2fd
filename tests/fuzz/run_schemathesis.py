#!/usr/bin/env python3
"""Fuzzes the client-server API of a real `myelin` binary with schemathesis, from the Matrix
specification's OpenAPI descriptions (tests/fuzz/matrix-spec, copied unmodified).

Starts $MYELIN_BIN on a free 127.0.0.1 port with a throwaway data dir (registration open, rate limits
off so that the fuzzer is not answered 429 everywhere, federation off), registers a user, creates a
room with an event, a filter and a media upload so that path parameters (roomId, eventId, userId,
deviceId, ...) get real values about half of the time, then runs schemathesis' examples, coverage and
fuzzing phases over every client-server OpenAPI file, one after the other. Checks:
  - not_a_server_error: no 5xx;
  - response_schema_conformance: every response with a schema in the spec validates against it;
  - matrix_error_body: every 4xx/5xx body is a Matrix error, a JSON object with string `errcode`
    and `error` (a 401 with `flows`, user-interactive auth, is exempt);
  - the server process is still running after each file (a crash is a failure; its stderr is kept).
Prints the number of requests and the failures grouped by endpoint, writes a JSON report, and exits
non-zero on any failure.

Usage: MYELIN_BIN=path/to/myelin run_schemathesis.py [--examples N] [--report FILE] [FILE.yaml ...]
(FUZZ_EXAMPLES and FUZZ_REPORT are the environment forms of the options; FUZZ_SEED fixes the seed.)
"""
import argparse
import collections
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

# Hypothesis keeps caches (its Unicode tables) in ./.hypothesis unless told otherwise: not in the repo.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "myelin-fuzz-hypothesis"))

import requests  # noqa: E402
import yaml  # noqa: E402
from hypothesis import strategies as st

import schemathesis  # noqa: E402
from schemathesis.engine import events, from_schema  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC_DIR = os.path.join(HERE, "matrix-spec", "data", "api", "client-server")
PASSWORD = "fuzz-password-0"

# Operations that end the fuzzing user's session or membership when they succeed. They are fuzzed
# all the same (they can have bugs too); after a 2xx from one of them the fixtures are checked and
# re-made (a new user and room) so that the rest of the run keeps a valid token and a joined room.
ACCOUNT_DESTRUCTIVE = re.compile(
    r"^(POST /logout|POST /logout/all|POST /account/deactivate|POST /account/password|"
    r"POST /delete_devices|DELETE /devices/\{deviceId\})$")
ROOM_DESTRUCTIVE = re.compile(
    r"^POST /rooms/\{roomId\}/(leave|forget|kick|ban|upgrade)$|^PUT /rooms/\{roomId\}/state/")

# Query parameters that make the server wait (long polls): bounded so that a generated
# `timeout=2147483647` does not turn into a request timeout.
WAITING_QUERY_PARAMETERS = ("timeout", "timeout_ms")
MAX_WAIT_MS = 200
# Long polls whose absent `timeout` means 30 s: the fuzzer sends timeout=0 instead.
LONG_POLLS = {"GET /events", "GET /sync"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The binary under test, restarted (on the same data dir) if it dies so that the remaining
    files are still fuzzed; every crash is kept for the report."""

    def __init__(self, binary, workdir):
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.config = os.path.join(workdir, "myelin.yaml")
        with open(self.config, "w") as f:
            f.write("server_name: localhost\n"
                    "registration:\n  enabled: true\n"
                    "rate_limits:\n  enabled: false\n"
                    "federation:\n  enabled: false\n  trusted_key_servers: []\n"
                    "logging:\n  access_log: false\n")
        self.proc = None
        self.starts = 0
        self.crashes = []  # dicts: stderr file, exit code, last requests

    def start(self):
        self.starts += 1
        self.stderr_path = os.path.join(self.workdir, f"myelin-stderr-{self.starts}.log")
        env = dict(os.environ)
        env.setdefault("SWIFT_BACKTRACE", "enable=yes,interactive=no")
        self.stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--config", self.config, "--listen", f"127.0.0.1:{self.port}",
             "--data-dir", os.path.join(self.workdir, "data")],
            stdout=self.stderr, stderr=subprocess.STDOUT, env=env)
        for _ in range(300):
            if self.proc.poll() is not None:
                raise RuntimeError(f"myelin exited with {self.proc.returncode} at start; see {self.stderr_path}")
            try:
                requests.get(self.base + "/_matrix/client/versions", timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError("myelin did not start listening")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def record_crash(self, context):
        self.stderr.flush()
        with open(self.stderr_path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        lines = text.splitlines()
        # The Swift runtime's fatal error / trap message and its backtrace, or the tail.
        start = next((i for i, l in enumerate(lines) if re.search(
            r"Fatal error|fatal error|Crash|crashed|Illegal instruction|Segmentation|Trace/breakpoint|💣|precondition", l)),
            max(0, len(lines) - 60))
        self.crashes.append({"exit_code": self.proc.returncode, "context": context,
                             "stderr_file": self.stderr_path, "stderr_excerpt": lines[start:start + 120]})

    def stop(self):
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Fixtures:
    """The fuzzing user's token and real identifiers to put in path parameters."""

    def __init__(self, server):
        self.server = server
        self.lock = threading.RLock()
        self.values = {}
        self.remade = 0

    def _req(self, method, path, token=None, headers=None, **kw):
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(method, self.server.base + path, headers=headers, timeout=15, **kw)

    def make(self):
        """A new user with a room (and an alias), a message, a state event, a filter, a media upload,
        and a second user in the room (a target for invite/kick/ban and profile look-ups)."""
        with self.lock:
            suffix = uuid.uuid4().hex[:8]
            v = {}
            r = self._req("POST", "/_matrix/client/v3/register", json={
                "username": f"fuzz-{suffix}", "password": PASSWORD, "auth": {"type": "m.login.dummy"}})
            r.raise_for_status()
            reg = r.json()
            token = reg["access_token"]
            v.update(token=token, userId=reg["user_id"], deviceId=reg["device_id"])
            r = self._req("POST", "/_matrix/client/v3/register", json={
                "username": f"peer-{suffix}", "password": PASSWORD, "auth": {"type": "m.login.dummy"}})
            r.raise_for_status()
            peer = r.json()
            v["peerUserId"] = peer["user_id"]
            r = self._req("POST", "/_matrix/client/v3/createRoom", token, json={
                "preset": "public_chat", "room_alias_name": f"fuzz-{suffix}", "name": "fuzz"})
            r.raise_for_status()
            v["roomId"] = r.json()["room_id"]
            v["roomAlias"] = f"#fuzz-{suffix}:localhost"
            self._req("POST", f"/_matrix/client/v3/join/{v['roomId']}", peer["access_token"], json={})
            r = self._req("PUT", f"/_matrix/client/v3/rooms/{v['roomId']}/send/m.room.message/t{suffix}",
                          token, json={"msgtype": "m.text", "body": "hello fuzz"})
            r.raise_for_status()
            v["eventId"] = r.json()["event_id"]
            r = self._req("PUT", f"/_matrix/client/v3/rooms/{v['roomId']}/state/m.room.topic/",
                          token, json={"topic": "fuzzing"})
            if r.ok:
                v["stateEventId"] = r.json().get("event_id")
            r = self._req("POST", f"/_matrix/client/v3/user/{v['userId']}/filter", token,
                          json={"room": {"timeline": {"limit": 10}}})
            if r.ok:
                v["filterId"] = r.json().get("filter_id")
            r = self._req("POST", "/_matrix/media/v3/upload?filename=fuzz.txt", token, data=b"fuzz media",
                          headers={"Content-Type": "text/plain"})
            if r.ok and r.json().get("content_uri", "").startswith("mxc://"):
                v["serverName"], v["mediaId"] = r.json()["content_uri"][6:].split("/", 1)
            self.values = v
            self.remade += 1

    def ensure(self):
        """Re-makes the fixtures if the token no longer works or the user left the room."""
        with self.lock:
            token = self.values.get("token")
            try:
                r = self._req("GET", "/_matrix/client/v3/joined_rooms", token)
                if r.status_code == 200 and self.values["roomId"] in r.json().get("joined_rooms", []):
                    return
            except (requests.RequestException, ValueError):
                if not self.server.alive():
                    return
            self.make()

    def real_path_value(self, name):
        """A real value for a path parameter of this name, or None."""
        v = self.values
        return {
            "roomId": v.get("roomId"),
            "roomIdOrAlias": v.get("roomId"),
            "roomAlias": v.get("roomAlias"),
            "eventId": v.get("eventId"),
            "userId": v.get("userId"),
            "deviceId": v.get("deviceId"),
            "filterId": v.get("filterId"),
            "serverName": v.get("serverName", "localhost"),
            "mediaId": v.get("mediaId"),
            "stateKey": "",
            "eventType": "m.room.message",
        }.get(name)


SERVER = None
FIXTURES = None
SPEC_OPERATIONS = set()


# --- schemathesis hooks -----------------------------------------------------------------------

@schemathesis.hook
def flatmap_path_parameters(context, path_parameters):
    """Each path parameter with a known real value keeps the generated value or gets the real one."""
    if not path_parameters or FIXTURES is None:
        return st.just(path_parameters)
    choices = {}
    for name, value in path_parameters.items():
        real = FIXTURES.real_path_value(name)
        if name == "userId" and FIXTURES.values.get("peerUserId"):
            choices[name] = st.sampled_from([value, real, FIXTURES.values["peerUserId"]])
        elif real is not None:
            choices[name] = st.sampled_from([value, real])
        else:
            choices[name] = st.just(value)
    return st.fixed_dictionaries(choices)


@schemathesis.hook
def before_call(context, case, kwargs):
    """The current token of the fuzzing user on every request (it may have been re-made)."""
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    if FIXTURES is not None and FIXTURES.values.get("token"):
        headers["Authorization"] = f"Bearer {FIXTURES.values['token']}"
    case.headers = headers
    query = dict(case.query) if isinstance(case.query, dict) else case.query
    if isinstance(query, dict):
        query.pop("access_token", None)
        for name in WAITING_QUERY_PARAMETERS:
            value = query.get(name)
            if isinstance(value, str) and value.strip().isdigit() and int(value) > MAX_WAIT_MS:
                query[name] = 0  # the coverage phase sends numbers as strings
            elif isinstance(value, list) or (isinstance(value, int) and not isinstance(value, bool) and value > MAX_WAIT_MS):
                query[name] = 0  # a long wait (or a repeated parameter, read as absent): no waiting
        if f"{case.method.upper()} {case.path}" in LONG_POLLS and "timeout" not in query:
            query["timeout"] = 0  # absent means 30 s
        case.query = query
    elif case.query is None and f"{case.method.upper()} {case.path}" in LONG_POLLS:
        case.query = {"timeout": 0}
    STATS["last_request"] = f"{case.method.upper()} {case.formatted_path} query={case.query!r} body={_short(case.body)}"


@schemathesis.hook
def after_call(context, case, response):
    STATS["requests"] += 1
    if FIXTURES is None:
        return
    label = f"{case.method.upper()} {case.path}"
    status = response.status_code
    STATS["statuses"][label][status] += 1
    if status == 404 and b"M_UNRECOGNIZED" in (response.content or b""):
        STATS["unrecognized"][label] += 1
    if (200 <= status < 300 and (ACCOUNT_DESTRUCTIVE.match(label) or ROOM_DESTRUCTIVE.match(label))) or (
            status == 401 and b"M_UNKNOWN_TOKEN" in (response.content or b"")):
        FIXTURES.ensure()


@schemathesis.hook
def after_network_error(context, case, request):
    STATS["requests"] += 1
    STATS["network_errors"] += 1
    body = request.body.decode("utf-8", "replace") if isinstance(request.body, bytes) else request.body
    STATS["network_error_requests"].append(f"{request.method} {request.url}" + (f" body={body[:500]}" if body else ""))


@schemathesis.check
def matrix_error_body(ctx, response, case):
    """A 4xx/5xx body is a Matrix error: a JSON object with string `errcode` and `error`."""
    status = response.status_code
    if status < 400:
        return None
    try:
        body = json.loads(response.content or b"")
    except ValueError:
        raise AssertionError(f"{status} body is not JSON: {response.content[:200]!r}")
    if status == 401 and isinstance(body, dict) and "flows" in body:
        return None  # user-interactive authentication
    if not isinstance(body, dict):
        raise AssertionError(f"{status} body is not a JSON object: {json.dumps(body)[:200]}")
    missing = [k for k in ("errcode", "error") if not isinstance(body.get(k), str)]
    if missing:
        raise AssertionError(f"{status} body lacks string {' and '.join(missing)}: {json.dumps(body)[:200]}")
    return None


STATS = {"requests": 0, "network_errors": 0, "network_error_requests": [], "last_request": None,
         "statuses": collections.defaultdict(collections.Counter), "checks_run": collections.Counter(),
         "ignored_oneof": 0, "unrecognized": collections.Counter()}


def _short(body, limit=2000):
    if body is None or type(body).__name__ == "NotSet":
        return None
    try:
        text = json.dumps(body, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(body)
    return text if len(text) <= limit else text[:limit] + "..."


# --- running ----------------------------------------------------------------------------------

def base_path(spec_file):
    with open(spec_file) as f:
        doc = yaml.safe_load(f)
    try:
        return doc["servers"][0]["variables"]["basePath"]["default"]
    except (KeyError, IndexError, TypeError):
        return "/_matrix/client/v3"


def project_config(base_url, examples, seed):
    cfg = {
        "base-url": base_url,
        "workers": 1,
        "request-timeout": 20,
        "continue-on-failure": True,
        "suppress-health-check": ["all"],
        # No state kept between runs (schemathesis' cache and Hypothesis' example database would
        # otherwise be written under the working directory): each run stands alone.
        "cache": {"enabled": False},
        "generation": {"max-examples": examples, "mode": "all", "no-shrink": True, "database": "none"},
        "checks": {
            "enabled": False,
            "not_a_server_error": {"enabled": True},
            "response_schema_conformance": {"enabled": True},
            "matrix_error_body": {"enabled": True},
        },
        "phases": {"stateful": {"enabled": False}},
    }
    if seed is not None:
        cfg["seed"] = seed
    return schemathesis.Config.from_dict(cfg)


def _normalize(text):
    return re.sub(r"\d+", "N", text or "")


def failure_record(recorder, case_id, check):
    f = check.failure_info.failure
    interaction = recorder.interactions.get(case_id)
    node = recorder.cases.get(case_id)
    case = node.value if node else None
    rec = {
        "check": check.name,
        "title": f.title,
        "message": f.message,
        "operation": f"{case.method.upper()} {case.path}" if case else recorder.label,
    }
    if interaction is not None:
        req = interaction.request
        rec["request"] = {"method": req.method, "uri": req.uri,
                          "body": (req.body or b"").decode("utf-8", "replace")[:4000] or None}
        if interaction.response is not None:
            resp = interaction.response
            rec["status"] = resp.status_code
            rec["response"] = (resp.content or b"").decode("utf-8", "replace")[:4000]
    for attr in ("instance_path", "schema_path"):
        value = getattr(f, attr, None)
        if value is not None:
            rec[attr] = "/".join(str(p) for p in value)
    # The key that dedupes: same operation, check, status and the same kind of message.
    if rec["check"] == "response_schema_conformance" and "instance_path" in rec:
        detail = _normalize(rec["instance_path"]) + " " + _normalize(rec.get("schema_path", ""))
    elif rec["check"] == "matrix_error_body":
        detail = _normalize(f.message)[:80]
    else:
        detail = ""
        try:
            detail = json.loads(rec.get("response") or "").get("errcode", "")
        except (ValueError, AttributeError):
            detail = _normalize(rec.get("response", ""))[:80]
    rec["key"] = f"{rec['operation']} | {rec['check']} | {rec.get('status')} | {detail}"
    return rec


def _spec_ambiguity(failure):
    """A response valid under several branches of a `oneOf` of the spec: the spec's ambiguity, not the
    server's fault (e.g. GET /rooms/{roomId}/state/{eventType}/{stateKey}?format=event: a whole event
    is also a valid free-form `content` object)."""
    return getattr(failure, "schema_path", None) is not None and list(failure.schema_path)[-1:] == ["oneOf"] \
        and "valid under more than one" in (failure.message or "")


def run_file(spec_file, examples, seed, failures, errors):
    schema = schemathesis.openapi.from_path(
        spec_file, config=project_config(SERVER.base + base_path(spec_file), examples, seed))
    for result in schema.get_all_operations():
        try:
            op = result.ok()
            SPEC_OPERATIONS.add(f"{op.method.upper()} {op.path}")
        except Exception:
            pass
    for ev in from_schema(schema).execute():
        if isinstance(ev, events.ScenarioFinished):
            recorder = ev.recorder
            for case_id, checks in recorder.checks.items():
                for check in checks:
                    STATS["checks_run"][check.name] += 1
                    if check.failure_info is not None:
                        if _spec_ambiguity(check.failure_info.failure):
                            STATS["ignored_oneof"] += 1
                            continue
                        failures.append(dict(failure_record(recorder, case_id, check),
                                             file=os.path.basename(spec_file), phase=str(ev.phase)))
        elif isinstance(ev, events.NonFatalError):
            requests_sent = STATS["network_error_requests"][:]
            STATS["network_error_requests"].clear()
            errors.append({"file": os.path.basename(spec_file), "label": ev.label,
                           "error": f"{type(ev.value).__name__}: {ev.value}"[:2000], "requests": requests_sent})
        elif isinstance(ev, events.FatalError):
            errors.append({"file": os.path.basename(spec_file), "label": "(fatal)",
                           "error": f"{type(ev.exception).__name__}: {ev.exception}"[:2000]})


def main():
    global SERVER, FIXTURES
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=int(os.environ.get("FUZZ_EXAMPLES", "50")),
                        help="examples per operation in the fuzzing phase (FUZZ_EXAMPLES, default 50)")
    parser.add_argument("--report", default=os.environ.get("FUZZ_REPORT"),
                        help="JSON report file (FUZZ_REPORT; default: in the temporary directory)")
    parser.add_argument("--seed", type=int, default=int(os.environ["FUZZ_SEED"]) if os.environ.get("FUZZ_SEED") else None)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (data dir, server logs)")
    parser.add_argument("files", nargs="*", help="client-server spec files to fuzz (default: all)")
    args = parser.parse_args()

    binary = os.environ.get("MYELIN_BIN")
    if not binary or not os.access(binary, os.X_OK):
        sys.exit("run_schemathesis.py: set MYELIN_BIN to the myelin binary")
    files = [os.path.join(SPEC_DIR, f if f.endswith(".yaml") else f + ".yaml") for f in args.files] or sorted(
        os.path.join(SPEC_DIR, f) for f in os.listdir(SPEC_DIR) if f.endswith(".yaml"))

    workdir = tempfile.mkdtemp(prefix="myelin-fuzz-")
    report_path = args.report or os.path.join(workdir, "fuzz-report.json")
    SERVER = Server(binary, workdir)
    SERVER.start()
    FIXTURES = Fixtures(SERVER)

    failures, errors, per_file = [], [], []
    started = time.monotonic()
    try:
        FIXTURES.make()
        for spec_file in files:
            name = os.path.basename(spec_file)
            t0, r0 = time.monotonic(), STATS["requests"]
            try:
                run_file(spec_file, args.examples, args.seed, failures, errors)
            except Exception as exc:  # a schema schemathesis cannot load: reported, the rest goes on
                errors.append({"file": name, "label": "(run)", "error": f"{type(exc).__name__}: {exc}"[:2000]})
            if not SERVER.alive():
                SERVER.record_crash(f"while fuzzing {name}; last request sent: {STATS['last_request']}")
                print(f"!! myelin died while fuzzing {name} (exit {SERVER.proc.returncode}); restarting", flush=True)
                SERVER.start()
                FIXTURES.make()
            else:
                FIXTURES.ensure()
            took = time.monotonic() - t0
            per_file.append({"file": name, "requests": STATS["requests"] - r0, "seconds": round(took, 1)})
            print(f"{name}: {STATS['requests'] - r0} requests, {took:.1f} s, "
                  f"{sum(1 for f in failures if f['file'] == name)} failing checks", flush=True)
    finally:
        alive_at_end = SERVER.alive()
        if not alive_at_end:
            SERVER.record_crash(f"at the end; last request sent: {STATS['last_request']}")
        SERVER.stop()

    # Dedupe: one entry per key, with a count and the first example.
    groups = collections.OrderedDict()
    for f in failures:
        g = groups.setdefault(f["key"], dict(f, count=0))
        g["count"] += 1
    by_endpoint = collections.defaultdict(list)
    for g in groups.values():
        by_endpoint[g["operation"]].append(g)

    report = {"requests": STATS["requests"], "network_errors": STATS["network_errors"],
              "seconds": round(time.monotonic() - started, 1), "examples": args.examples,
              "fixtures_made": FIXTURES.remade, "crashes": SERVER.crashes, "errors": errors,
              "failures": list(groups.values()), "per_file": per_file,
              "statuses": {op: dict(sorted(c.items())) for op, c in sorted(STATS["statuses"].items())}}
    with open(report_path, "w") as f:
        json.dump(report, f, indent=1, ensure_ascii=False)

    report["checks_run"] = dict(STATS["checks_run"])
    report["ignored_oneof_ambiguities"] = STATS["ignored_oneof"]
    print(f"\n== {STATS['requests']} requests to {len(files)} spec files in {report['seconds']} s; "
          f"{len(failures)} failing checks, {len(groups)} distinct; {len(SERVER.crashes)} crash(es); "
          f"{len(errors)} run error(s); fixtures made {FIXTURES.remade} time(s)\n   checks run: "
          + ", ".join(f"{k} {v}" for k, v in sorted(STATS["checks_run"].items())))
    for endpoint in sorted(by_endpoint):
        print(f"\n{endpoint}")
        for g in by_endpoint[endpoint]:
            print(f"  [{g['check']}] status {g.get('status')} x{g['count']}: {g['message'].splitlines()[0][:200] if g['message'] else g['title']}")
            if g.get("instance_path") is not None:
                print(f"    field: /{g['instance_path']}  (schema: {g.get('schema_path')})")
            if "request" in g:
                print(f"    request: {g['request']['method']} {g['request']['uri']}"
                      + (f" body={g['request']['body'][:300]}" if g['request']['body'] else ""))
            if "response" in g:
                print(f"    response: {g['response'][:300]}")
    never_2xx = sorted(op for op in SPEC_OPERATIONS
                       if not any(200 <= k < 300 for k in STATS["statuses"].get(op, {})))
    report["never_2xx"] = never_2xx
    with open(report_path, "w") as f:
        json.dump(report, f, indent=1, ensure_ascii=False)
    unimplemented = sorted(op for op in SPEC_OPERATIONS if STATS["statuses"].get(op)
                           and STATS["unrecognized"][op] == sum(STATS["statuses"][op].values()))
    report["only_404_unrecognized"] = unimplemented
    print(f"\n(coverage, not a failure) {len(unimplemented)} operations of the spec answered only 404 M_UNRECOGNIZED "
          f"(not implemented?): " + ", ".join(unimplemented))
    print(f"\n(coverage, not a failure) {len(never_2xx)} of {len(SPEC_OPERATIONS)} operations of the spec never "
          f"answered 2xx: " + ", ".join(never_2xx))
    with open(report_path, "w") as f:
        json.dump(report, f, indent=1, ensure_ascii=False)
    for crash in SERVER.crashes:
        print(f"\n!! CRASH (exit {crash['exit_code']}) {crash['context']}\n   stderr: {crash['stderr_file']}")
        for line in crash["stderr_excerpt"][:60]:
            print("   " + line)
    for e in errors:
        print(f"\n!! error in {e['file']} {e['label']}: {e['error'][:500]}")
        for r in e.get("requests", [])[:5]:
            print(f"    request: {r}")
    print(f"\nreport: {report_path}")
    ok = not groups and not SERVER.crashes and not errors
    bad_files = {f["file"] for f in failures} | {e["file"] for e in errors}
    print(f"fuzz: {'OK' if ok else 'FAILED'} ({len(files) - len(bad_files)} spec files clean, "
          f"{len(bad_files)} with failures, {len(SERVER.crashes)} crash(es))")
    if ok and not args.keep and args.report is not None:
        shutil.rmtree(workdir, ignore_errors=True)
    elif not ok:
        print(f"server logs and data: {workdir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
