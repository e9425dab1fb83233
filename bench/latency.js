// latency.js - onnxruntime-node latency of ONNX models, for bench/latency.
//
//   node bench/latency.js RUNS THREADS BATCH MODEL...
//
// Prints one JSON line per model: {"model", "batch", "median_ms", "runs"},
// and for every model after the first "paired_ratio": the median over the
// rounds of its time divided by the first model's time in the same round.
// Each model gets its own session (default graph optimizations, as a user
// gets them), THREADS intra-op threads, a random float input of shape
// [BATCH, ...the model's other dims] and 5 warm-up runs.  Then RUNS
// rounds, each running every model once (in turn, the order reversed
// every other round), so that on a machine that is not idle each model
// sees the same load: the paired ratio is what to read there, the
// medians only on an idle machine.
'use strict';

const ort = require('onnxruntime-node');
const fs = require('fs');

async function openModel(path, threads, batch, dims) {
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
  return { path, s, feeds, t: [] };
}

function median(a) {
  const s = a.slice().sort((x, y) => x - y);
  return s[Math.floor(s.length / 2)];
}

async function main() {
  const [runs, threads, batch] = process.argv.slice(2, 5).map(Number);
  const dims = process.env.LATENCY_DIMS.split(',').map(Number);
  const models = [];
  for (const m of process.argv.slice(5)) {
    if (!fs.existsSync(m)) {
      console.log(JSON.stringify({ model: m, error: 'no such file' }));
      continue;
    }
    models.push(await openModel(m, threads, batch, dims));
  }
  for (let r = 0; r < runs; r++) {
    const order = r % 2 ? models.slice().reverse() : models;
    for (const m of order) {
      const t0 = process.hrtime.bigint();
      await m.s.run(m.feeds);
      m.t.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  }
  models.forEach((m, i) => {
    const out = { model: m.path, batch, median_ms: median(m.t), runs };
    if (i > 0)
      out.paired_ratio = median(m.t.map((t, k) => t / models[0].t[k]));
    console.log(JSON.stringify(out));
  });
}

main().catch((e) => { console.error('latency.js: ' + e.message); process.exit(1); });
