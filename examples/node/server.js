'use strict';
// POST /invoices, honouring an Idempotency-Key header (node-postgres).
//
//   201  a new invoice: numbered, accepted by the integrator, confirmed
//   200  the same key again: the same invoice
//   409  the key's invoice was rejected and its number voided: fix the
//        order and send it under a NEW key
//   503  we do not know the outcome yet (integrator or database answer
//        lost): send the same request again, with the SAME key
//
// Body: {"order": 17, "vat_id": "FR123"}.  Connection: the PG* variables.
// PORT (default 3000), SEED.

const http = require('node:http');
const { createHash } = require('node:crypto');
const { Pool, DatabaseError } = require('pg');

const SERIES = 'WEB';
const SEED = process.env.SEED || '15';
const pool = new Pool({ max: 20 });

// --- errors ---------------------------------------------------------------

const SAME_KEY = 'retry with the same key';
const NEW_KEY = 'retry with a new key';
const RETRY_TX = 'retry the transaction';
const FAIL = 'fail';

function classify(err) {
  if (!(err instanceof DatabaseError)) return SAME_KEY; // connection lost
  switch (err.code) {
    case '40003': return SAME_KEY; // statement completion unknown
    case '55I01': return NEW_KEY; // the key's number was voided: that attempt is over
    case '40001': case '40P01': return RETRY_TX;
    default: return FAIL;
  }
}

// --- the integrator (a fake) ------------------------------------------------

class Rejected extends Error {}
class LostAnswer extends Error {}

// Idempotent per invoice number, like a real one.  Its chances are drawn
// per number from SEED, so that a run can be repeated.
const accepted = new Map(); // display_no -> reference
async function submitToIntegrator(displayNo, vatId) {
  const chance = createHash('sha256').update(`${SEED}:${displayNo}`).digest();
  await new Promise((resolve) => setTimeout(resolve, 2 + (chance[0] % 20)));
  if (accepted.has(displayNo)) return accepted.get(displayNo);
  if (!/^[A-Z]{2}[0-9]+$/.test(vatId || '')) throw new Rejected(`invalid VAT id "${vatId}"`);
  const ref = `TAX-${String(accepted.size + 1).padStart(6, '0')}`;
  accepted.set(displayNo, ref);
  if (chance[1] < 26) throw new LostAnswer(displayNo); // accepted, answer lost (~10%)
  return ref;
}

// --- the endpoint -------------------------------------------------------------

async function createInvoice(client, key, order) {
  // 1. Reserve, in autocommit: durable before the answer comes back.
  let inv;
  try {
    ({ rows: [inv] } = await client.query(
      'SELECT period, invoice_no, display_no, status FROM invoice_seq.reserve_invoice($1, $2)',
      [SERIES, key]));
  } catch (err) {
    if (classify(err) !== NEW_KEY) throw err;
    const { rows: [dead] } = await client.query(
      'SELECT display_no, void_reason FROM invoice_seq.ledger WHERE series = $1 AND idempotency_key = $2',
      [SERIES, key]);
    return [409, { error: 'voided', display_no: dead.display_no, reason: dead.void_reason }];
  }
  if (inv.status === 'issued') {
    const { rows: [row] } = await client.query(
      'SELECT * FROM invoices WHERE series = $1 AND period = $2 AND invoice_no = $3',
      [SERIES, inv.period, inv.invoice_no]);
    return [200, row];
  }

  // 2. The integrator, no transaction open.
  let ref;
  try {
    ref = await submitToIntegrator(inv.display_no, order.vat_id);
  } catch (err) {
    if (err instanceof LostAnswer) return [503, { error: 'no answer from the integrator' }];
    if (!(err instanceof Rejected)) throw err;
    // 3b. Void: the number stays in the ledger as a cancellation.
    const reason = `integrator rejected: ${err.message}`;
    await client.query('SELECT invoice_seq.void_invoice_no($1, $2, $3, $4)',
      [SERIES, inv.invoice_no, reason, inv.period]);
    return [409, { error: 'voided', display_no: inv.display_no, reason }];
  }

  // 3a. Confirm in the statement that writes our own row.
  const { rows: [row] } = await client.query(
    `INSERT INTO invoices (order_id, series, period, invoice_no, display_no, external_ref, idempotency_key)
     VALUES ($1, $2, $3, invoice_seq.confirm_invoice_no($2, $4, $5, $3), $6, $5, $7)
     RETURNING *`,
    [order.order, SERIES, inv.period, inv.invoice_no, ref, inv.display_no, key]);
  return [201, row];
}

// One request per key at a time, across every instance of this service: a
// session-level advisory lock, held while the integrator is called (no
// transaction is open meanwhile).  The second request then finds the
// number issued (200) or voided (409).
async function handle(key, order) {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('SELECT pg_advisory_lock(hashtextextended($1, 0))', [key]);
    try {
      return await createInvoice(client, key, order);
    } finally {
      await client.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [key]);
    }
  } catch (err) {
    broken = !(err instanceof DatabaseError);
    switch (classify(err)) {
      case SAME_KEY:
      case RETRY_TX: return [503, { error: `try again with the same key: ${err.message}` }];
      default: throw err;
    }
  } finally {
    client.release(broken); // a broken connection is closed, not reused
  }
}

function reply(res, status, body) {
  if (status === 503) res.setHeader('Retry-After', '1');
  res.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(body));
}

const server = http.createServer((req, res) => {
  if (req.method !== 'POST' || req.url !== '/invoices') return reply(res, 404, { error: 'not found' });
  const key = req.headers['idempotency-key'];
  if (!key) return reply(res, 400, { error: 'Idempotency-Key header required' });
  let body = '';
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', () => {
    let order;
    try {
      order = JSON.parse(body);
    } catch {
      return reply(res, 400, { error: 'body is not JSON' });
    }
    handle(key, order).then(
      ([status, result]) => reply(res, status, result),
      (err) => {
        console.error(`${key}: ${err.code || ''} ${err.message}`);
        reply(res, 500, { error: err.message });
      });
  });
});

server.listen(Number(process.env.PORT || 3000), () => {
  console.log(`listening on ${server.address().port}`);
});
process.on('SIGTERM', () => server.close(() => pool.end()));
