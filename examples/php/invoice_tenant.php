<?php
// Invoice one tenant's pending orders, in the tenant's own series (PDO).
//
//   php invoice_tenant.php TENANT
//
// Each tenant has a role that owns its series; the application logs in as
// a member of that role (app_TENANT), so it can number in its own series
// and no other: invoice_seq checks the owner, not the application.
// Connection: the PG* variables for host, port and database; the role and
// its password in DB_USER and DB_PASSWORD.  SEED.

declare(strict_types=1);

const SAME_KEY = 'retry with the same key';
const NEW_KEY = 'retry with a new key';
const RETRY_TX = 'retry the transaction';
const FAIL = 'fail';

function classify(PDOException $e): string
{
    $state = $e->errorInfo[0] ?? (string) $e->getCode();
    if (str_starts_with($state, '08') || $state === 'HY000') {
        return SAME_KEY;  // no answer from the server: the connection is gone
    }
    return match ($state) {
        '40003' => SAME_KEY,  // statement completion unknown
        '55I01' => NEW_KEY,   // the key's number was voided: that attempt is over
        '40001', '40P01' => RETRY_TX,
        default => FAIL,
    };
}

class Rejected extends Exception {}
class LostAnswer extends Exception {}

// The integrator (a fake): idempotent per invoice number; rejects orders
// with a defect; sometimes accepts but its answer is lost.  Its chances are
// drawn per number from SEED.
class FakeIntegrator
{
    private array $accepted = [];
    public int $rejected = 0;
    public int $lost = 0;

    public function submit(string $displayNo, ?string $defect): string
    {
        $chance = crc32(getenv('SEED') . ":$displayNo");
        usleep(2000 + $chance % 18000);
        if (isset($this->accepted[$displayNo])) {
            return $this->accepted[$displayNo];
        }
        if ($defect !== null) {
            $this->rejected++;
            throw new Rejected($defect);
        }
        $ref = sprintf('TAX-%s-%06d', getmypid(), count($this->accepted) + 1);
        $this->accepted[$displayNo] = $ref;
        if (intdiv($chance, 256) % 100 < 12) {
            $this->lost++;
            throw new LostAnswer($displayNo);
        }
        return $ref;
    }
}

function connect(): PDO
{
    return new PDO('pgsql:', getenv('DB_USER'), getenv('DB_PASSWORD'),
        [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
}

// One attempt at one order.  Returns true when the order is invoiced.
function invoiceOrder(PDO $db, FakeIntegrator $integrator, string $series, int $orderId): bool
{
    $order = $db->query("SELECT attempt, defect FROM orders WHERE id = $orderId")->fetch();
    $key = "$orderId:{$order['attempt']}";

    // 1. Reserve, in autocommit: durable before the answer comes back.
    $reserve = $db->prepare('SELECT period, invoice_no, display_no, status
                             FROM invoice_seq.reserve_invoice(?, ?)');
    try {
        $reserve->execute([$series, $key]);
    } catch (PDOException $e) {
        if (classify($e) !== NEW_KEY) {
            throw $e;
        }
        // voided by an earlier try whose answer we lost: a new attempt
        $db->prepare('UPDATE orders SET attempt = attempt + 1, defect = NULL
                      WHERE id = ? AND attempt = ?')->execute([$orderId, $order['attempt']]);
        return false;
    }
    $inv = $reserve->fetch();
    if ($inv['status'] === 'issued') {
        return true;  // an earlier try confirmed it; we lost that answer
    }

    // 2. The integrator, no transaction open.
    try {
        $ref = $integrator->submit($inv['display_no'], $order['defect']);
    } catch (LostAnswer) {
        return false;  // same key next time, same number
    } catch (Rejected $r) {
        // 3b. Void, and open a new attempt, in one transaction.
        $db->beginTransaction();
        $db->prepare('SELECT invoice_seq.void_invoice_no(?, ?, ?, ?)')
           ->execute([$series, $inv['invoice_no'], "integrator rejected: {$r->getMessage()}", $inv['period']]);
        $db->prepare('UPDATE orders SET attempt = attempt + 1, defect = NULL WHERE id = ?')
           ->execute([$orderId]);
        $db->commit();
        return false;
    }

    // 3a. Confirm in the statement that writes our own row.
    $db->prepare('INSERT INTO invoices (order_id, series, period, invoice_no, display_no, external_ref)
                  VALUES (?, ?, ?, invoice_seq.confirm_invoice_no(?, ?, ?, ?), ?, ?)')
       ->execute([$orderId, $series, $inv['period'],
                  $series, $inv['invoice_no'], $ref, $inv['period'], $inv['display_no'], $ref]);
    return true;
}

if ($argc !== 2) {
    fwrite(STDERR, "usage: php invoice_tenant.php TENANT\n");
    exit(2);
}
$tenant = $argv[1];
$db = connect();
$lookup = $db->prepare('SELECT series FROM tenants WHERE name = ?');
$lookup->execute([$tenant]);
$series = $lookup->fetchColumn();
$pending = $db->prepare('SELECT id FROM orders o WHERE tenant = ?
                         AND NOT EXISTS (SELECT FROM invoices i WHERE i.order_id = o.id) ORDER BY id');
$pending->execute([$tenant]);
$integrator = new FakeIntegrator();
$errors = 0;
foreach ($pending->fetchAll(PDO::FETCH_COLUMN) as $orderId) {
    $error = null;
    for ($try = 1; $try <= 10; $try++) {
        try {
            if (invoiceOrder($db, $integrator, $series, $orderId)) {
                continue 2;
            }
        } catch (PDOException $e) {
            $error = $e;
            $action = classify($e);
            if ($action === SAME_KEY) {
                $db = connect();  // the orders row says which key is current
            } elseif ($db->inTransaction()) {
                $db->rollBack();
            }
            if ($action === FAIL) {
                break;
            }
        }
    }
    fwrite(STDERR, "order $orderId: not invoiced" . ($error ? ": {$error->getMessage()}" : '') . "\n");
    $errors++;
}
echo "summary: tenant=$tenant rejected={$integrator->rejected} lost={$integrator->lost} errors=$errors\n";
exit($errors ? 1 : 0);
