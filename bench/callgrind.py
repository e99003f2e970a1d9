#!/usr/bin/env python3
"""Instructions per request, counted by callgrind: repeatable on a noisy machine.

For each scenario and each of two request counts N1 < N2, provisions a fresh database
through the admin API of a plain server (127.0.0.1 only), restarts the release binary on it
under `valgrind --tool=callgrind`, makes one pre-flight request, then N sequential requests
on one kept-alive connection, and stops the server (SIGTERM). Start-up, provisioning and shutdown are the
same in both runs, so (Ir(N2) - Ir(N1)) / (N2 - N1) is the cost of one request, every
thread of the server included (the audit writer's too).

    python3 bench/callgrind.py --binary /var/tmp/bench-target/release/tessera \\
        --scenarios cc-one,wrong-secret --n1 200 --n2 1200

Scenarios: cc-one (client_credentials, one client), wrong-secret (a wrong secret, so all
but the first five requests are throttled refusals), and, on builds that have the
interactive login: code-exchange (authorization_code with PKCE; each request first mints
a fresh code at GET /oauth/authorize, and the N1 run mints N2 codes too, so only the
exchanges differ), refresh (refresh_token grants, each with the previous answer's token)
and introspect (POST /oauth/introspect of a person's access token by a confidential client).

The callgrind output files are kept (--keep) for callgrind_annotate.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (same folder)
import interactive  # noqa: E402

HOST = bench.HOST
SCENARIOS = ["cc-one", "wrong-secret", "code-exchange", "refresh", "introspect"]


def start_under_valgrind(binary: Path, work: Path, out: Path, extra_valgrind: list[str]) -> tuple[subprocess.Popen, int]:
    """Restarts the server under callgrind on the database that bench.start_tessera made
    (same master key): start-up then loads the keys instead of generating them (an RSA
    key's generation takes a random number of instructions)."""
    port = bench.free_port()
    env = bench.clean_env()
    env["TESSERA_MASTER_KEY"] = (work / "master.key").read_text()
    env["TESSERA_SIGNING_ALG"] = "ES256"
    stdout, stderr = work / "tessera-cg.stdout", work / "tessera-cg.log"
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *extra_valgrind,
           str(binary), "serve", "--listen", f"{HOST}:{port}", "--database", str(work / "tessera.db"),
           "--audit-durability", "full"]
    proc = subprocess.Popen(cmd, env=env, cwd=work, stdin=subprocess.DEVNULL,
                            stdout=stdout.open("wb"), stderr=stderr.open("wb"))
    bench.wait_http_ok(port, "/readyz", proc, stderr, timeout=300)
    return proc, port


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


def total_ir(out: Path) -> int:
    """Sum of the `summary:`/`totals:` lines (one per dump part) of a callgrind file."""
    ir = 0
    for p in sorted(out.parent.glob(out.name + "*")):
        for line in p.read_text(errors="replace").splitlines():
            if line.startswith("summary:"):
                ir += int(line.split()[1])
    if not ir:
        raise bench.BenchError(f"no summary line in {out}")
    return ir


class Conn:
    """One kept-alive connection; reconnects if the server closes it."""

    def __init__(self, port: int):
        self.port = port
        self.c = http.client.HTTPConnection(HOST, port, timeout=120)

    def send(self, method: str, path: str, body: str | None, headers: dict) -> tuple[int, bytes]:
        h = {"Accept": "application/json", **headers}
        if body is not None:
            h["Content-Type"] = "application/x-www-form-urlencoded"
        for attempt in (1, 2):
            try:
                self.c.request(method, path, body=body.encode() if body is not None else None, headers=h)
                r = self.c.getresponse()
                return r.status, r.read()
            except (OSError, http.client.HTTPException):
                self.c.close()
                self.c = http.client.HTTPConnection(HOST, self.port, timeout=120)
                if attempt == 2:
                    raise
        raise AssertionError


def run_one(binary: Path, scenario: str, n: int, n_max: int, keep: Path | None,
            extra_valgrind: list[str]) -> tuple[int, dict[int, int], float]:
    work = Path(tempfile.mkdtemp(prefix=f"tessera-cg-{scenario}-{n}-"))
    out = work / "callgrind.out"
    t0 = time.monotonic()
    # Provision (and log the person in) on a plain server, then measure under callgrind.
    srv, secret = bench.start_tessera(binary, work, "full", "ES256")
    try:
        admin = bench.Admin(srv.port, secret)
        st, doc = admin.post("/api/v2/scopes", {"name": bench.SCOPE})
        if st not in (201, 409):
            raise bench.BenchError(f"create scope: HTTP {st} {doc}")
        token_body = bench.TOKEN_BODY
        want = {200}
        if scenario == "cc-one":
            auth = bench.basic("bench", admin.client("bench"))
        elif scenario == "wrong-secret":
            admin.client("bench-wrong")
            auth = bench.basic("bench-wrong", "tsec_wrong-" + os.urandom(8).hex())
            want = {401, 429}
        else:
            ia = interactive.provision(admin, srv.port)
            b0 = interactive.Browser(srv.port)
            b0.log_in(ia)
            cookies = b0.cookies
    finally:
        srv.stop()
    proc, port = start_under_valgrind(binary, work, out, extra_valgrind)
    statuses: dict[int, int] = {}
    try:
        conn = Conn(port)
        if scenario in ("cc-one", "wrong-secret"):
            reqs = lambda i: [("POST", "/oauth/token", token_body, {"Authorization": auth})]  # noqa: E731
        else:
            browser = interactive.Browser(port, cookies)
            if scenario == "code-exchange":
                # A fresh code before every exchange (codes live 60 s); the N1 run mints the
                # same N2 codes, so the difference between the runs is N2 - N1 exchanges.
                def reqs(i):
                    code, verifier = browser.mint_code(ia)
                    if i >= n:
                        return []
                    return [("POST", "/oauth/token", interactive.exchange_body(ia, code, verifier), {})]
            elif scenario == "refresh":
                chain = [browser.tokens(ia)["refresh_token"]]

                def reqs(i):
                    return [("POST", "/oauth/token", interactive.refresh_body(ia, chain[0]), {})]
            elif scenario == "introspect":
                access = browser.tokens(ia)["access_token"]
                auth = bench.basic(ia.rs_id, ia.rs_secret)
                body = "token=" + access
                reqs = lambda i: [("POST", "/oauth/introspect", body, {"Authorization": auth})]  # noqa: E731
            else:
                raise bench.BenchError(f"unknown scenario {scenario}")
        count = n_max if scenario == "code-exchange" else n
        for i in range(-1, count):  # -1: the pre-flight, in both runs
            for method, path, body, headers in reqs(max(i, 0)):
                st, resp = conn.send(method, path, body, headers)
                if i >= 0:
                    statuses[st] = statuses.get(st, 0) + 1
                if st not in want:
                    raise bench.BenchError(f"{scenario}: HTTP {st} {resp[:300]!r}")
                if scenario == "refresh":
                    chain[0] = json.loads(resp)["refresh_token"]
        if scenario == "introspect" and json.loads(resp).get("active") is not True:
            raise bench.BenchError(f"introspect: not active: {resp[:300]!r}")
    finally:
        stop(proc)
    ir = total_ir(out)
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
        for p in out.parent.glob(out.name + "*"):
            shutil.copy2(p, keep / f"callgrind.{scenario}.{n}{p.name[len(out.name):]}")
    shutil.rmtree(work, ignore_errors=True)
    return ir, statuses, time.monotonic() - t0


def main(argv) -> int:
    ap = argparse.ArgumentParser(prog="bench/callgrind.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", type=Path, required=True, help="a release build of tessera")
    ap.add_argument("--scenarios", default="cc-one,wrong-secret", help=f"comma list from {','.join(SCENARIOS)}")
    ap.add_argument("--n1", type=int, default=200)
    ap.add_argument("--n2", type=int, default=1200)
    ap.add_argument("--keep", type=Path, help="copy the callgrind output files to this folder")
    ap.add_argument("--valgrind-arg", action="append", default=[],
                    help="extra valgrind option (repeatable), e.g. --dump-instr=yes")
    a = ap.parse_args(argv)
    scenarios = [s for s in a.scenarios.split(",") if s]
    bad = [s for s in scenarios if s not in SCENARIOS]
    if bad or not 0 < a.n1 < a.n2 <= 20000:
        ap.error(f"scenarios from {SCENARIOS}; 0 < n1 < n2 <= 20000")
    print(f"binary: {a.binary}")
    for sc in scenarios:
        irs = []
        for n in (a.n1, a.n2):
            ir, statuses, secs = run_one(a.binary.resolve(), sc, n, a.n2, a.keep, a.valgrind_arg)
            irs.append(ir)
            print(f"{sc} N={n}: Ir {ir:,} statuses {dict(sorted(statuses.items()))} ({secs:.0f} s)", flush=True)
        print(f"{sc}: {(irs[1] - irs[0]) / (a.n2 - a.n1):,.0f} instructions per request", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
