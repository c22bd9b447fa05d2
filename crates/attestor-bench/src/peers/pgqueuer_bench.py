"""PgQueuer under `cargo xtask bench queue --peers`: enqueue N no-op jobs,
then time K queue managers (one connection each, batch B, drain mode) from
their start until the queue is empty. Connection from the PG* environment
(the bench's throwaway cluster).

Usage: python pgqueuer_bench.py <jobs> <tenants> <workers> <batch>
Prints one JSON line: {"jobs": ..., "elapsed_s": ..., "remaining": ...}.
"""

import asyncio
import json
import sys
import time

import asyncpg
import uvloop
from pgqueuer import AsyncpgDriver, PgQueuer, Queries
from pgqueuer.models import Job
from pgqueuer.types import QueueExecutionMode


async def main(jobs: int, tenants: int, workers: int, batch: int) -> None:
    admin = await asyncpg.connect()
    queries = Queries(AsyncpgDriver(admin))
    await queries.install()
    unlogged = await admin.fetchval(
        "SELECT count(*) FROM pg_class WHERE relname LIKE 'pgqueuer%' AND relkind = 'r' AND relpersistence <> 'p'"
    )
    if unlogged:
        raise SystemExit("PgQueuer installed unlogged tables; the comparison needs durable ones")
    await queries.enqueue(
        ["noop"] * jobs,
        [str(i % tenants).encode() for i in range(jobs)],
        [0] * jobs,
    )
    await admin.execute("VACUUM ANALYZE pgqueuer")
    await admin.execute("CHECKPOINT")

    handled = 0
    managers = []
    for _ in range(workers):
        pgq = PgQueuer(AsyncpgDriver(await asyncpg.connect()))

        @pgq.entrypoint("noop")
        async def noop(job: Job) -> None:
            nonlocal handled
            handled += 1

        managers.append(pgq)

    started = time.perf_counter()
    await asyncio.wait_for(
        asyncio.gather(
            *(m.run(batch_size=batch, mode=QueueExecutionMode.drain) for m in managers)
        ),
        timeout=1800,
    )
    elapsed = time.perf_counter() - started
    remaining = await admin.fetchval("SELECT count(*) FROM pgqueuer")
    await admin.close()
    print(json.dumps({"jobs": handled, "elapsed_s": elapsed, "remaining": remaining}))


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:5]]
    if len(args) != 4 or min(args) <= 0:
        raise SystemExit("usage: pgqueuer_bench.py <jobs> <tenants> <workers> <batch>")
    uvloop.run(main(*args))
