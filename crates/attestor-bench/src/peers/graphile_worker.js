// graphile-worker under `cargo xtask bench queue --peers`: enqueue N no-op
// jobs, then time one runner from its start until the jobs table is empty.
// Connection from the PG* environment (the bench's throwaway cluster).
// Usage: node graphile_worker.js <jobs> <tenants> <concurrency> <batched|defaults>
// Prints one JSON line: {"jobs":…,"elapsed_s":…,"remaining":…}.
"use strict";
const { run, runMigrations, Logger } = require("graphile-worker");
const { Pool } = require("pg");

// Warnings and errors only: per-job info lines would time the console.
const logger = new Logger(() => (level, message) => {
  if (level === "error" || level === "warning") console.error(`graphile-worker ${level}: ${message}`);
});

async function main() {
  const [jobs, tenants, concurrency] = process.argv.slice(2, 5).map((s) => parseInt(s, 10));
  const mode = process.argv[5];
  if (!(jobs > 0 && tenants > 0 && concurrency > 0) || !["batched", "defaults"].includes(mode)) {
    throw new Error("usage: graphile_worker.js <jobs> <tenants> <concurrency> <batched|defaults>");
  }
  // The documented fast settings (local queue, batched completion) or the
  // defaults; the pool as the docs advise for the concurrency.
  const worker =
    mode === "batched"
      ? {
          concurrentJobs: concurrency,
          maxPoolSize: concurrency + 1,
          localQueue: { size: 500, refetchDelay: { durationMs: 10 } },
          completeJobBatchDelay: 0,
          failJobBatchDelay: 0,
        }
      : { concurrentJobs: concurrency, maxPoolSize: Math.max(10, concurrency + 2) };

  await runMigrations({ logger });
  const pool = new Pool({ max: 1 });
  // One add_jobs call for all of them (graphile-worker's bulk entry point,
  // the defaults of add_job for every field but the task and payload):
  // add_job once per row took minutes for 100k jobs, outside the timing but
  // not outside the bench's run.
  await pool.query(
    `SELECT count(*) FROM graphile_worker.add_jobs((
       SELECT array_agg(ROW('noop', json_build_object('tenant', i % $2::int),
                            NULL, NULL, NULL, NULL, NULL, NULL)::graphile_worker.job_spec)
         FROM generate_series(1, $1::int) i))`,
    [jobs, tenants],
  );
  await pool.query("VACUUM ANALYZE graphile_worker._private_jobs");
  await pool.query("CHECKPOINT");

  let done = 0;
  let allHandled;
  const handled = new Promise((resolve) => (allHandled = resolve));
  const taskList = {
    noop: async () => {
      done += 1;
      if (done === jobs) allHandled();
    },
  };
  const started = process.hrtime.bigint();
  const runner = await run({ preset: { worker }, taskList, logger, noHandleSignals: true });
  await handled;
  // Drained = the completions are in the database, not just handled.
  const remaining = async () =>
    (await pool.query("SELECT count(*)::int AS n FROM graphile_worker._private_jobs")).rows[0].n;
  const deadline = Date.now() + 60_000;
  while ((await remaining()) > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 5));
  }
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  await runner.stop();
  const left = await remaining();
  await pool.end();
  console.log(JSON.stringify({ jobs: done, elapsed_s: elapsed, remaining: left }));
}

// Bounded: a run that never drains fails instead of hanging the bench.
setTimeout(() => {
  console.error("graphile-worker did not drain in 30 minutes");
  process.exit(1);
}, 1_800_000).unref();

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
