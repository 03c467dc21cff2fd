#!/usr/bin/env python3
"""Media upload and download against one running homeserver (issue 18, "Judged by"), with the
server's memory sampled from /proc. Standard library only; bench/media.sh runs it against
Myelin and Synapse in the same run and prints the ratios.

    bench/media.py --url http://127.0.0.1:18010 --pid PID --label myelin --work DIR [--json FILE]

Three measurements:
  big        one upload of --big-mib MiB (default 1024) through POST /_matrix/media/v3/upload:
             the server's RSS (summed over the process and its descendants) sampled every
             10 ms before (baseline: median of 1 s idle) and during the upload; the growth is
             peak during − baseline.
  download   that file through GET /_matrix/client/v1/media/download/{server}/{id} (the
             authenticated path) with curl to /dev/null, --download-rounds times: MiB/s.
  concurrent --concurrent uploads (default 200) of --each-mib MiB (default 10) at once, each
             on its own connection: wall time, failures, peak RSS and its growth.

Uploads are written with socket.sendfile (the client is never the bottleneck: the bytes go
from the page cache to the socket in the kernel); the test files are made once under --work,
which must be on a real disk (not a tmpfs: check `df`).
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

MIB = 1024 * 1024


# --- server memory ---------------------------------------------------------------------------

def tree(pid):
    """pid and all its descendants (PostgreSQL backends, Synapse workers)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        except OSError:
            continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def rss_kib(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


class Sampler:
    """Samples the RSS of the server trees every `interval` s in a thread; peak and series."""

    def __init__(self, pids, interval=0.01):
        self.pids, self.interval = pids, interval
        self.peak, self.samples, self._stop = 0, [], threading.Event()
        self._all = [q for p in pids for q in tree(p)]

    def sample(self):
        value = rss_kib(self._all)
        self.samples.append(value)
        self.peak = max(self.peak, value)
        return value

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        n = 0
        while not self._stop.is_set():
            if n % 100 == 0:  # pick up new children (workers, backends) now and then
                self._all = [q for p in self.pids for q in tree(p)]
            self.sample()
            n += 1
            self._stop.wait(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def baseline(pids, seconds=1.0):
    with Sampler(pids) as s:
        time.sleep(seconds)
    return statistics.median(s.samples) if s.samples else rss_kib(pids)


# --- HTTP ------------------------------------------------------------------------------------

def api(url, method, path, body=None, token=None, expect=(200,)):
    req = urllib.request.Request(url + path, method=method,
                                 data=None if body is None else json.dumps(body).encode())
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        payload = e.read()
        try:
            payload = json.loads(payload)
        except ValueError:
            pass
        if e.code in expect:
            return e.code, payload
        raise RuntimeError(f"{method} {path} → {e.code} {payload}") from None


def register(url, name):
    """A fresh user through UIA m.login.dummy (open registration on both servers)."""
    body = {"username": name, "password": "bench-password-1", "inhibit_login": False}
    status, reply = api(url, "POST", "/_matrix/client/v3/register", body, expect=(200, 401))
    if status == 401:
        body["auth"] = {"type": "m.login.dummy", "session": reply.get("session")}
        status, reply = api(url, "POST", "/_matrix/client/v3/register", body)
    return reply["access_token"]


def upload(host, port, token, path, name):
    """POST /_matrix/media/v3/upload with the file's bytes by sendfile; (status, body, seconds)."""
    size = os.path.getsize(path)
    start = time.monotonic()
    with socket.create_connection((host, port), timeout=600) as sock, open(path, "rb") as f:
        head = (f"POST /_matrix/media/v3/upload?filename={urllib.parse.quote(name)} HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n"
                f"Connection: close\r\n\r\n").encode()
        sock.sendall(head)
        sent = sock.sendfile(f)
        if sent != size:
            raise RuntimeError(f"sent {sent} of {size} bytes")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    elapsed = time.monotonic() - start
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    if b"transfer-encoding: chunked" in head.lower():
        body = dechunk(body)
    try:
        return status, json.loads(body or b"{}"), elapsed
    except ValueError:
        return status, {"raw": body[:200].decode(errors="replace")}, elapsed


def dechunk(data):
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2:]
    return out


def make_file(path, mib):
    if os.path.exists(path) and os.path.getsize(path) == mib * MIB:
        return path
    block = os.urandom(MIB)
    with open(path + ".part", "wb") as f:
        for i in range(mib):
            # Different bytes per MiB (content-addressed stores must not dedupe within a file).
            f.write(i.to_bytes(8, "little") + block[8:])
    os.replace(path + ".part", path)
    return path


def make_distinct_files(directory, count, mib):
    """`count` files of `mib` MiB whose contents differ (no upload deduplicates another)."""
    os.makedirs(directory, exist_ok=True)
    base = make_file(os.path.join(directory, "base.bin"), mib)
    paths = []
    with open(base, "rb") as f:
        data = f.read()
    for i in range(count):
        p = os.path.join(directory, f"u{i:04d}.bin")
        if not (os.path.exists(p) and os.path.getsize(p) == len(data)):
            with open(p, "wb") as out:
                out.write(i.to_bytes(8, "little") + data[8:])
        paths.append(p)
    return paths


# --- measurements ----------------------------------------------------------------------------

def measure_big(args, host, port, token, pids):
    path = make_file(os.path.join(args.work, f"big-{args.big_mib}m.bin"), args.big_mib)
    # Read it once so that the page cache, not the disk, feeds the upload.
    subprocess.run(["cat", path], stdout=subprocess.DEVNULL, check=True)
    before = baseline(pids)
    with Sampler(pids) as s:
        status, body, seconds = upload(host, port, token, path, "big.bin")
    after = baseline(pids, 0.5)
    if status != 200 or "content_uri" not in body:
        raise RuntimeError(f"big upload → {status} {body}")
    return {
        "content_uri": body["content_uri"], "mib": args.big_mib, "seconds": round(seconds, 2),
        "mib_per_s": round(args.big_mib / seconds, 1),
        "rss_before_mib": round(before / 1024, 1), "rss_peak_mib": round(s.peak / 1024, 1),
        "rss_growth_mib": round((s.peak - before) / 1024, 1), "rss_after_mib": round(after / 1024, 1),
    }


def measure_download(args, url, token, content_uri, expected, pids):
    server, media_id = content_uri[len("mxc://"):].split("/", 1)
    target = f"{url}/_matrix/client/v1/media/download/{server}/{media_id}"
    rates = []
    with Sampler(pids) as s:
        for _ in range(args.download_rounds):
            out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-H", f"Authorization: Bearer {token}",
                                  "-w", "%{http_code} %{size_download} %{time_total}", target],
                                 capture_output=True, text=True, check=True).stdout.split()
            code, size, total = int(out[0]), int(out[1]), float(out[2])
            if code != 200 or size != expected:
                raise RuntimeError(f"download → {code}, {size} of {expected} bytes")
            rates.append(size / MIB / total)
    return {"rounds": len(rates), "mib_per_s_median": round(statistics.median(rates), 1),
            "mib_per_s_best": round(max(rates), 1), "rss_peak_mib": round(s.peak / 1024, 1)}


def measure_concurrent(args, host, port, token, pids):
    paths = make_distinct_files(os.path.join(args.work, f"each-{args.each_mib}m"), args.concurrent, args.each_mib)
    for p in paths:  # into the page cache
        with open(p, "rb") as f:
            while f.read(4 * MIB):
                pass
    before = baseline(pids)
    results = [None] * len(paths)
    gate = threading.Barrier(len(paths) + 1)

    def run(i):
        gate.wait()
        try:
            status, body, seconds = upload(host, port, token, paths[i], f"u{i}.bin")
            results[i] = (status, seconds, body)
        except Exception as e:  # noqa: BLE001 - counted as a failure
            results[i] = (0, 0.0, {"error": str(e)})

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(paths))]
    for t in threads:
        t.start()
    with Sampler(pids) as s:
        gate.wait()
        start = time.monotonic()
        for t in threads:
            t.join()
        wall = time.monotonic() - start
    ok = [r for r in results if r[0] == 200]
    failures = {}
    for r in results:
        if r[0] != 200:
            key = f"{r[0]} {r[2].get('errcode') or r[2].get('error') or r[2].get('raw', '')}"[:80]
            failures[key] = failures.get(key, 0) + 1
    return {"uploads": len(paths), "mib_each": args.each_mib, "ok": len(ok), "failures": failures,
            "wall_s": round(wall, 2), "mib_per_s": round(len(ok) * args.each_mib / wall, 1),
            "rss_before_mib": round(before / 1024, 1), "rss_peak_mib": round(s.peak / 1024, 1),
            "rss_growth_mib": round((s.peak - before) / 1024, 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--pid", type=int, action="append", default=[], help="server pid (repeatable; with descendants)")
    ap.add_argument("--label", default="server")
    ap.add_argument("--work", default="/work/bench-media", help="test files (real disk)")
    ap.add_argument("--big-mib", type=int, default=1024)
    ap.add_argument("--download-rounds", type=int, default=5)
    ap.add_argument("--concurrent", type=int, default=200)
    ap.add_argument("--each-mib", type=int, default=10)
    ap.add_argument("--only", choices=["big", "concurrent"], help="one part only")
    ap.add_argument("--json", help="append one JSON line here")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    parsed = urllib.parse.urlparse(args.url)
    host, port = parsed.hostname, parsed.port
    token = register(args.url, f"media{int(time.time() * 1000) % 10**9}")
    result = {"label": args.label, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "url": args.url}
    if args.only in (None, "big"):
        print(f"[{args.label}] uploading {args.big_mib} MiB …", file=sys.stderr)
        result["big_upload"] = measure_big(args, host, port, token, args.pid)
        print(f"[{args.label}] {result['big_upload']}", file=sys.stderr)
        result["download"] = measure_download(args, args.url, token, result["big_upload"]["content_uri"],
                                              args.big_mib * MIB, args.pid)
        print(f"[{args.label}] {result['download']}", file=sys.stderr)
    if args.only in (None, "concurrent"):
        print(f"[{args.label}] {args.concurrent} concurrent uploads of {args.each_mib} MiB …", file=sys.stderr)
        result["concurrent"] = measure_concurrent(args, host, port, token, args.pid)
        print(f"[{args.label}] {result['concurrent']}", file=sys.stderr)
    line = json.dumps(result)
    print(line)
    if args.json:
        with open(args.json, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
