#!/usr/bin/env python3
"""A soak: client_credentials for many minutes on one server, in one-minute slices.

Starts the release binary on a fresh SQLite database (127.0.0.1 only, audit durability
full), provisions one client through the admin API, then runs bench/run's cc-one load
(wrk, 32 keep-alive connections) for --minutes slices of --slice seconds each. After
each slice it prints the slice's tokens/s, p50/p99, the server's RSS and its CPU per
token. At the end it compares the audit trail's granted token events with the tokens wrk
received: each must have its event, and the only extra events may be those of requests
in flight when a slice's wrk stopped (at most one per connection per slice).

    python3 bench/soak.py --binary target/release/tessera --minutes 10

The report is Markdown, on stdout and in --out (default bench/results/soak.md).
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (same folder)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True, type=Path, help="a release build of tessera")
    ap.add_argument("--minutes", type=int, default=10, help="slices to run (default 10)")
    ap.add_argument("--slice", type=int, default=60, help="seconds per slice (10-120, default 60)")
    ap.add_argument("--out", type=Path, default=bench.REPO / "bench/results/soak.md")
    args = ap.parse_args(argv)
    if not 1 <= args.minutes <= 30 or not 10 <= args.slice <= 120:
        ap.error("--minutes 1-30, --slice 10-120 (the soak is bounded in time)")
    # The database grows by about 640 bytes per token (several GB in 10 minutes): the
    # work folder is removed at the end, whatever happens.
    work = Path(tempfile.mkdtemp(prefix="tessera-soak-"))
    try:
        srv, secret = bench.start_tessera(args.binary.resolve(), work, "full")
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    rows = []
    granted = 0
    try:
        creds = bench.provision(bench.Admin(srv.port, secret), {"cc-one"}, 0, work, 0)
        sc = bench.Scenario("cc-one", auth=bench.basic("bench", creds["bench"]), method="POST",
                            path="/oauth/token", body=bench.TOKEN_BODY, expect="token")
        bench.preflight(sc, srv.port)
        lua = bench.write_lua(sc, work, "soak")
        url = f"http://{bench.HOST}:{srv.port}{sc.path}"
        for i in range(args.minutes):
            c0, t0 = bench.tree_cpu_ticks(srv.proc.pid), time.monotonic()
            res = bench.run_wrk([url], lua, args.slice)
            c1, t1 = bench.tree_cpu_ticks(srv.proc.pid), time.monotonic()
            if srv.proc.poll() is not None:
                raise bench.BenchError(f"tessera exited during the soak:\n{bench.tail(srv.log)}")
            hwm, rss = bench.tree_memory_kb(srv.proc.pid)
            statuses = {int(k): v for k, v in res["statuses"].items()}
            ok = statuses.get(200, 0)
            granted += ok
            secs = res["duration_us"] / 1e6
            lat = res["latency_us"]
            cpu_ms = 1000.0 * (c1 - c0) / bench.HZ / max(1, res["requests"])
            row = (i + 1, res["requests"] / secs, lat["p50"] / 1000, lat["p99"] / 1000,
                   rss / 1024, hwm / 1024, cpu_ms, sum(v for k, v in statuses.items() if k != 200)
                   + sum(res["errors"].values()))
            rows.append(row)
            bench.log(f"slice {row[0]}: {row[1]:,.0f} tokens/s, p50 {row[2]:.2f} ms, p99 {row[3]:.2f} ms, "
                      f"RSS {row[4]:.1f} MiB (peak {row[5]:.1f}), CPU {row[6]:.3f} ms/token, other {row[7]}")
        # The server's own count of tokens issued (each counted once its event committed).
        st, body = bench.http_request(srv.port, "GET", "/metrics")
        issued = next(int(float(l.split()[-1])) for l in body.decode().splitlines()
                      if l.startswith('tessera_token_requests_total{outcome="granted"'))
    except BaseException:
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        srv.stop()
    try:
        db = sqlite3.connect(work / "tessera.db")
        events = db.execute("SELECT count(*) FROM audit_events WHERE kind = 'token' "
                            "AND outcome = 'granted'").fetchone()[0]
        db.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # wrk stops each slice with up to one request per connection in flight: issued and
    # audited by the server, never counted by wrk.
    in_flight = events - granted - 2  # the pre-flight and the admin's own token
    exact = 0 <= in_flight <= bench.CONNECTIONS * args.minutes
    lines = [
        f"## Tessera soak, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"`python3 bench/soak.py --minutes {args.minutes} --slice {args.slice}`: cc-one (wrk, 1 thread, "
        f"{bench.CONNECTIONS} keep-alive connections) on a fresh SQLite database, audit durability full; "
        f"binary {args.binary}, commit {bench.git_commit()}, CPU {bench.cpu_model()}.",
        "",
        "| slice | tokens/s | p50 ms | p99 ms | RSS MiB | peak RSS MiB | CPU ms/token | not 200 |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|",
        *[f"| {r[0]} | {r[1]:,.0f} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:.1f} | {r[5]:.1f} | {r[6]:.3f} | {r[7]} |"
          for r in rows],
        "",
        f"Audit trail: {events:,} granted token events. wrk received {granted:,} tokens, plus the "
        f"pre-flight's and the admin's: each has its event. {in_flight} more events are of requests "
        f"in flight when a slice's wrk stopped (at most {bench.CONNECTIONS} per slice): committed "
        f"before the answer, as promised, then abandoned by wrk; the server counted {issued:,} "
        f"tokens (`tessera_token_requests_total`, after the commit; a request whose connection "
        f"closed meanwhile is dropped before it is counted or signed). "
        + ("**Every token delivered has its event, and no event is unaccounted for.**" if exact
           else "**MISMATCH.**"),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    bench.write_atomic(args.out, text)
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
