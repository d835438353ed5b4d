// A Node.js program with every kind of thread schedtrace should show:
// the main thread (event loop), libuv pool threads (crypto.pbkdf2 and fs
// work run there), worker_threads running JavaScript in parallel, and V8's
// own platform threads (GC and compiler helpers).
//
//   sudo schedtrace -- node examples/node/app.js
//   sudo schedtrace --cpus 0 -- node examples/node/app.js
//
// Optional argument: seconds of work (default 2).
'use strict';
const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

function spin(ms) {
  // CPU work measured in this thread's CPU time, so one core does the same
  // work as two, only slower.
  const start = process.cpuUsage();
  let x = 0;
  for (;;) {
    for (let i = 0; i < 10000; i++) x = (x * 1103515245 + 12345) % 2147483648;
    const u = process.cpuUsage(start);
    if ((u.user + u.system) / 1000 >= ms) return x;
  }
}

if (!isMainThread) {
  // A worker thread: JavaScript bursts with short sleeps between them.
  const until = Date.now() + workerData.seconds * 1000;
  const tick = () => {
    spin(5);
    if (Date.now() < until) setTimeout(tick, 2);
    else parentPort.postMessage('done');
  };
  tick();
} else {
  const seconds = Number(process.argv[2] || 2);
  const until = Date.now() + seconds * 1000;
  const tmp = path.join(os.tmpdir(), `schedtrace-node-${process.pid}.bin`);
  fs.writeFileSync(tmp, crypto.randomBytes(1 << 20));
  let pending = 0;
  const workers = [0, 1].map(() => new Worker(__filename, { workerData: { seconds } }));
  for (const w of workers) {
    pending++;
    w.on('message', () => { pending--; w.terminate(); });
  }
  // Keep the libuv pool busy: pbkdf2 (CPU) and file reads (I/O) run there.
  const pool = () => {
    if (Date.now() >= until) return;
    pending++;
    crypto.pbkdf2('secret', 'salt', 20000, 64, 'sha512', () => { pending--; pool(); });
  };
  for (let i = 0; i < 4; i++) pool();
  const reads = () => {
    if (Date.now() >= until) return;
    pending++;
    fs.readFile(tmp, () => { pending--; setTimeout(reads, 1); });
  };
  reads();
  // The event loop itself: short bursts of JavaScript.
  const loop = () => {
    spin(1);
    if (Date.now() < until || pending > 0) setTimeout(loop, 3);
    else fs.unlinkSync(tmp);
  };
  loop();
}
