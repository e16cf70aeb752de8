// Arrays, objects and Buffers; prints a deterministic summary; exits 0.
'use strict';
const objs = [];
for (let i = 0; i < 50000; i++) {
  objs.push({ id: i, name: 'item-' + i, tags: [i % 7, i % 11, 'x'.repeat(i % 50)] });
}
const bufs = [];
for (let i = 0; i < 200; i++) {
  const b = Buffer.alloc(64 * 1024 + i, i % 256);
  bufs.push(b);
}
const json = JSON.stringify(objs);
const back = JSON.parse(json);
let sum = 0;
for (const b of bufs) sum += b[b.length - 1] + b.length;
const big = new Float64Array(1 << 20);
for (let i = 0; i < big.length; i += 1024) big[i] = i;
console.log('objects', back.length);
console.log('json length', json.length);
console.log('buffer sum', sum);
console.log('typed', big.reduce((a, b) => a + b, 0));
process.exitCode = 0;
