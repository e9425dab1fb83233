// latency.js - onnxruntime-node latency of ONNX models, for bench/latency.
//
//   node bench/latency.js RUNS THREADS BATCH MODEL...
//
// Prints one JSON line per model: {"model", "batch", "median_ms", "runs"}.
// Each model gets its own session (default graph optimizations, as a user
// gets them), THREADS intra-op threads, a random float input of shape
// [BATCH, ...the model's other dims] and 5 warm-up runs before RUNS timed
// ones; the median is printed.
'use strict';

const ort = require('onnxruntime-node');
const fs = require('fs');

async function timeModel(path, runs, threads, batch, dims) {
  const s = await ort.InferenceSession.create(path, {
    intraOpNumThreads: threads, interOpNumThreads: 1,
    executionMode: 'sequential',
  });
  const name = s.inputNames[0];
  const shape = [batch].concat(dims);
  const n = shape.reduce((a, b) => a * b, 1);
  const x = new Float32Array(n);
  let seed = 1;
  for (let i = 0; i < n; i++) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    x[i] = (seed / 4294967296) * 2 - 1;
  }
  const feeds = { [name]: new ort.Tensor('float32', x, shape) };
  for (let i = 0; i < 5; i++)
    await s.run(feeds);
  const t = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    await s.run(feeds);
    t.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  t.sort((a, b) => a - b);
  return t[Math.floor(t.length / 2)];
}

async function main() {
  const [runs, threads, batch] = process.argv.slice(2, 5).map(Number);
  const dims = process.env.LATENCY_DIMS.split(',').map(Number);
  for (const m of process.argv.slice(5)) {
    if (!fs.existsSync(m)) {
      console.log(JSON.stringify({ model: m, error: 'no such file' }));
      continue;
    }
    const ms = await timeModel(m, runs, threads, batch, dims);
    console.log(JSON.stringify({ model: m, batch, median_ms: ms, runs }));
  }
}

main().catch((e) => { console.error('latency.js: ' + e.message); process.exit(1); });
