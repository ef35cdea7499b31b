'use strict';
// Drive examples/node/server.js: 200 concurrent POST /invoices, a third of
// them repeating another request's Idempotency-Key, then each order to its
// end (503: same key again; 409: a corrected order under a new key), then
// every key once more.  Prints "ok - ..." / "not ok - ..." per check.
//
//   node node_load.js PORT ORDERS SEED

const http = require('node:http');
const { createHash } = require('node:crypto');

const [port, orders, seed] = [Number(process.argv[2]), Number(process.argv[3]), process.argv[4]];
const agent = new http.Agent({ keepAlive: true, maxSockets: 250 });

function post(key, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({
      port, method: 'POST', path: '/invoices', agent,
      headers: { 'Idempotency-Key': key, 'Content-Type': 'application/json' },
    }, (res) => {
      let text = '';
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve({ key, status: res.statusCode, body: JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

// a reproducible draw in [0, 1)
function draw(...what) {
  return createHash('sha256').update([seed, ...what].join(':')).digest().readUInt32BE(0) / 2 ** 32;
}

// the first attempt of one order in nine carries a VAT id the integrator rejects
const orderBody = (order, attempt) =>
  ({ order, vat_id: order % 9 === 4 && attempt === 1 ? 'bad' : `FR${1000 + order}` });

let failures = 0;
function check(ok, what) {
  if (!ok) failures++;
  console.log(`${ok ? 'ok' : 'not ok'} - node: ${what}`);
}

async function main() {
  // 1. The burst: every order once, then 66 repeats of drawn keys, shuffled.
  const first = [];
  for (let o = 1; o <= orders; o++) first.push(o);
  const repeats = [];
  for (let i = 0; i < 200 - orders; i++) repeats.push(first[Math.floor(draw('repeat', i) * orders)]);
  const burst = [...first, ...repeats]
    .map((o, i) => [draw('shuffle', i), o])
    .sort((a, b) => a[0] - b[0])
    .map(([, o]) => o);
  const responses = await Promise.all(burst.map((o) => post(`${o}:1`, orderBody(o, 1))));

  // 2. Each order to its end.
  const attempt = new Map(first.map((o) => [o, 1]));
  const last = new Map();
  for (const r of responses) {
    const o = Number(r.key.split(':')[0]);
    if (!last.has(o) || last.get(o).status === 503) last.set(o, r);
  }
  const all = [...responses];
  let rounds = 0;
  while ([...last.values()].some((r) => r.status !== 200 && r.status !== 201) && rounds++ < 20) {
    await Promise.all([...last.entries()].map(async ([o, r]) => {
      if (r.status === 409) attempt.set(o, attempt.get(o) + 1); // a NEW key
      else if (r.status !== 503) return;
      const next = await post(`${o}:${attempt.get(o)}`, orderBody(o, attempt.get(o)));
      all.push(next);
      last.set(o, next);
    }));
  }

  // 3. Every key once more: a replay.
  const keys = [...new Set(all.map((r) => r.key))];
  const replays = await Promise.all(keys.map((k) => {
    const [o, a] = k.split(':').map(Number);
    return post(k, orderBody(o, a));
  }));

  // --- checks
  const unexpected = [...all, ...replays].filter((r) => ![200, 201, 409, 503].includes(r.status));
  check(unexpected.length === 0, `every answer 200, 201, 409 or 503 (${unexpected.length} others${
    unexpected.length ? `: ${JSON.stringify(unexpected[0])}` : ''})`);

  const numberOf = new Map(); // key -> display numbers it was answered with
  for (const r of [...all, ...replays]) {
    if (r.body.display_no === undefined) continue;
    if (!numberOf.has(r.key)) numberOf.set(r.key, new Set());
    numberOf.get(r.key).add(r.body.display_no);
  }
  const split = [...numberOf.entries()].filter(([, s]) => s.size > 1);
  check(split.length === 0, `each key answered with one number (${split.length} keys with more)`);

  const owner = new Map(); // display number -> keys
  for (const [k, s] of numberOf) for (const n of s) owner.set(n, [...(owner.get(n) || []), k]);
  const shared = [...owner.entries()].filter(([, ks]) => ks.length > 1);
  check(shared.length === 0, `no two keys share a number (${shared.length} shared)`);

  const done = [...last.values()].filter((r) => r.status === 200 || r.status === 201);
  check(done.length === orders, `${done.length} of ${orders} orders invoiced`);

  const badReplay = replays.filter((r) => {
    const before = all.find((x) => x.key === r.key && x.status !== 503);
    return !before || (before.status === 409 ? r.status !== 409 || !r.body.reason
      : r.status !== 200 || r.body.display_no !== before.body.display_no);
  });
  check(badReplay.length === 0,
    `a replayed key gets its invoice again (200) or its voided number again (409 with the reason): ${
      badReplay.length} did not`);

  const count = (s) => all.filter((r) => r.status === s).length;
  const repeatedInBurst = responses.filter((r) => r.status === 200).length;
  check(count(409) > 0, `rejections happened (${count(409)} answers 409)`);
  check(count(503) > 0, `lost integrator answers happened (${count(503)} answers 503)`);
  check(repeatedInBurst > 0, `concurrent repeats were answered from the first request (${repeatedInBurst} answers 200 in the burst)`);
  const rejectedKeys = new Set(all.filter((r) => r.status === 409).map((r) => r.key)).size;
  console.log(`summary: requests=${all.length + replays.length} rejected=${rejectedKeys} lost=${count(503)}`);
  agent.destroy();
  process.exitCode = failures ? 1 : 0;
}

main().catch((err) => {
  console.log(`not ok - node: driver failed: ${err.stack}`);
  process.exitCode = 1;
});
