// ort_run.js - one long-running onnxruntime-node worker for the script tests.
//
// Reads jobs as JSON lines on stdin, answers each with one JSON line on stdout,
// in order, so the Python side (tests/lib/nptest.py) can drive hundreds of
// models through a single node start-up.
//
//   job:    {"model": PATH, "inputs": [{"name", "type", "dims", "data"}]}
//           data is base64 of the little-endian raw bytes, or an array of
//           strings when type is "string".
//   answer: {"ok": true, "outputs": [{"name", "type", "dims", "data"}]}
//           {"ok": false, "stage": "load"|"run", "error": MESSAGE}
//
// One intra-op thread and sequential execution: the same model and inputs
// must give the same bytes every time, or "bit-identical" means nothing.
'use strict';

const readline = require('readline');

let ort;
try {
  ort = require('onnxruntime-node');
} catch (e) {
  process.stdout.write(JSON.stringify({ ok: false, stage: 'init',
    error: 'cannot load onnxruntime-node: ' + e.message.split('\n')[0] }) + '\n');
  process.exit(3);
}
ort.env.logLevel = 'error';

const ARRAYS = {
  float32: Float32Array, float64: Float64Array,
  int8: Int8Array, uint8: Uint8Array, int16: Int16Array, uint16: Uint16Array,
  int32: Int32Array, uint32: Uint32Array,
  int64: BigInt64Array, uint64: BigUint64Array,
  bool: Uint8Array, float16: Uint16Array,
};

function decodeTensor(t) {
  if (t.type === 'string')
    return new ort.Tensor('string', t.data, t.dims);
  const Ctor = ARRAYS[t.type];
  if (!Ctor)
    throw new Error(`input '${t.name}': type ${t.type} not supported by the JS API`);
  const buf = Buffer.from(t.data, 'base64');
  // Copy into a fresh, aligned ArrayBuffer: Buffer slices may be unaligned.
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
  return new ort.Tensor(t.type, new Ctor(ab), t.dims);
}

function encodeTensor(name, v) {
  if (!v || typeof v.type !== 'string' || v.data === undefined)
    return { name, type: 'non-tensor', dims: [], data: '' };
  const dims = Array.from(v.dims, Number);
  if (v.type === 'string')
    return { name, type: 'string', dims, data: Array.from(v.data) };
  const d = v.data;
  return { name, type: v.type, dims,
    data: Buffer.from(d.buffer, d.byteOffset, d.byteLength).toString('base64') };
}

function firstLine(e) {
  return String(e && e.message ? e.message : e).split('\n')[0];
}

async function runJob(job) {
  let session;
  try {
    session = await ort.InferenceSession.create(job.model, {
      intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential',
    });
  } catch (e) {
    return { ok: false, stage: 'load', error: firstLine(e) };
  }
  try {
    const feeds = {};
    for (const t of job.inputs) feeds[t.name] = decodeTensor(t);
    const res = await session.run(feeds);
    const outputs = session.outputNames.map((n) => encodeTensor(n, res[n]));
    return { ok: true, outputs };
  } catch (e) {
    return { ok: false, stage: 'run', error: firstLine(e) };
  } finally {
    try { await session.release(); } catch (e) { /* nothing to do */ }
  }
}

async function main() {
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of rl) {
    if (!line.trim()) continue;
    let answer;
    try {
      answer = await runJob(JSON.parse(line));
    } catch (e) {
      answer = { ok: false, stage: 'job', error: firstLine(e) };
    }
    process.stdout.write(JSON.stringify(answer) + '\n');
  }
}

main();
