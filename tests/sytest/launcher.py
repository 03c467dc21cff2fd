#!/usr/bin/env python3
"""SyTest launcher for Myelin: maps SyTest's sytest-hs.json onto a Myelin configuration and
execs `myelin serve` (exec, so that SyTest's SIGINT reaches the server).

Called by the Exec homeserver plugin (tests/sytest/plugin-exec) as `launcher.py HS_DIR/sytest-hs.json`.
MYELIN_BIN names the binary (scripts/sytest.sh sets it). The configuration is written as JSON,
which is YAML, so no YAML module is needed. The data directory is emptied at every start:
SyTest expects a fresh database.
"""
import json
import os
import shutil
import sys


def config(c):
    d = c["hs_dir"]
    tls = {"certificate": c["tls_cert"], "private_key": c["tls_key"]}
    return {
        "server_name": c["server_name"],
        "data_dir": f"{d}/data",
        "default_room_version": os.environ.get("SYTEST_ROOM_VERSION", "10"),
        "listeners": [
            # Client and federation APIs on the one TLS port SyTest waits for...
            {"host": c["bind_host"], "port": c["https_port"], "tls": tls},
            # ...and plain HTTP on the second port (SyTest's unsecure_port).
            {"host": c["bind_host"], "port": c["http_port"]},
        ],
        "registration": {
            "enabled": True,
            "allow_guests": True,
            "shared_secret": c["registration_shared_secret"],
        },
        "rate_limits": {"enabled": False},
        "logging": {"level": os.environ.get("MYELIN_LOG_LEVEL", "info"), "access_log": True},
        "federation": {
            "enabled": True,
            "verify_certificates": True,
            # SyTest's own CA signs both servers' certificates and its mock servers'.
            "extra_ca_files": [c["ca_cert"]],
            # Every peer is on loopback (localhost:PORT).
            "ip_range_whitelist": ["127.0.0.0/8", "::1/128"],
            # Keys straight from each origin: SyTest's mock servers are not behind a notary.
            "trusted_key_servers": [],
            "backoff_initial_ms": 200,
            "backoff_max_ms": 2000,
        },
    }


def main():
    with open(sys.argv[1]) as f:
        c = json.load(f)
    d = c["hs_dir"]
    if not d:
        sys.exit("launcher.py: sytest-hs.json has no hs_dir (does SyTest's --work-directory exist?)")
    shutil.rmtree(f"{d}/data", ignore_errors=True)
    os.makedirs(f"{d}/data")
    path = f"{d}/myelin.yaml"
    with open(path, "w") as f:
        json.dump(config(c), f, indent=2)
    binary = os.environ.get("MYELIN_BIN") or "myelin"
    log = os.open(f"{d}/myelin.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.execvp(binary, [binary, "serve", "--config", path])


if __name__ == "__main__":
    main()
