'use strict';
// schedtrace benchmark workload: a Node.js process whose scheduling looks
// like a server's. The main thread exchanges small messages with worker
// threads (worker_threads, woken through libuv async handles) while keeping
// a fixed number of crypto.pbkdf2 jobs in flight on the libuv thread pool.
// It does a fixed amount of work and prints one line:
//   NODE_RESULT {"ops":..,"seconds":..,"ops_per_sec":..,"rusage":{..}}
// Knobs (environment): NODE_BENCH_WORKERS (2), NODE_BENCH_PINGS per worker
// (20000), NODE_BENCH_POOL_JOBS (20000), NODE_BENCH_POOL_INFLIGHT (8).
const { Worker, isMainThread, parentPort } = require('node:worker_threads');
const crypto = require('node:crypto');

if (!isMainThread) {
  parentPort.on('message', (m) => {
    if (m === null) {
      parentPort.close();
      return;
    }
    let x = 0;
    for (let i = 0; i < 500; i++) x = (x + i * m) % 1000003;
    parentPort.postMessage(x);
  });
  return;
}

const env = (name, dflt) => {
  const v = Number.parseInt(process.env[name] ?? '', 10);
  return Number.isFinite(v) && v > 0 ? v : dflt;
};
const WORKERS = env('NODE_BENCH_WORKERS', 2);
const PINGS = env('NODE_BENCH_PINGS', 20000);
const POOL_JOBS = env('NODE_BENCH_POOL_JOBS', 20000);
const INFLIGHT = env('NODE_BENCH_POOL_INFLIGHT', 8);

const workers = [];
let online = 0;
for (let i = 0; i < WORKERS; i++) {
  const w = new Worker(__filename);
  w.on('online', () => {
    if (++online === WORKERS) start();
  });
  workers.push(w);
}

let t0 = 0;
let pending = WORKERS + 1; // every worker's ping-pong, plus the pool
function done() {
  if (--pending > 0) return;
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const ops = WORKERS * PINGS + POOL_JOBS;
  const ru = process.resourceUsage();
  const result = {
    ops,
    seconds,
    ops_per_sec: ops / seconds,
    rusage: {
      user_us: ru.userCPUTime,
      system_us: ru.systemCPUTime,
      voluntary: ru.voluntaryContextSwitches,
      involuntary: ru.involuntaryContextSwitches,
      max_rss_kb: ru.maxRSS,
    },
  };
  console.log('NODE_RESULT ' + JSON.stringify(result));
  for (const w of workers) w.postMessage(null);
}

function start() {
  t0 = process.hrtime.bigint();
  for (const w of workers) {
    let left = PINGS;
    w.on('message', () => {
      if (--left === 0) done();
      else w.postMessage(left);
    });
    w.postMessage(left);
  }
  const password = Buffer.from('schedtrace');
  const salt = Buffer.from('benchmark');
  let issued = 0;
  let finished = 0;
  const issue = () => {
    issued++;
    crypto.pbkdf2(password, salt, 1, 32, 'sha256', (err) => {
      if (err) throw err;
      if (++finished === POOL_JOBS) done();
      else if (issued < POOL_JOBS) issue();
    });
  };
  for (let i = 0; i < Math.min(INFLIGHT, POOL_JOBS); i++) issue();
}
