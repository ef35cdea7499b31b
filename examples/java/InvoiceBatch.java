// A batch job that invoices pending orders, numbering them in one step
// with next_invoice() inside its own transaction (JDBC).
//
//   java -cp /usr/share/java/postgresql.jar:. InvoiceBatch
//
// A number taken in a transaction is issued when the transaction commits,
// and handed out again if it rolls back: no reservation, no confirm, no
// idempotency key.  So nothing outside the database may see the number
// before COMMIT.  If an integrator must accept the invoice first, use the
// two-phase pattern (the other examples) instead.
//
// Here an order with a defect makes its invoice line violate a CHECK
// constraint; the invoice is rolled back to a savepoint, its number goes
// back to the pool (the next invoice gets it), and the order is corrected
// for a later batch.  A lost COMMIT answer is simulated: the job cannot
// know whether the batch committed, and need not: the next batch takes
// only the orders not marked invoiced, and the mark commits with the
// invoice.
//
// Connection: PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD.  SEED,
// WORKERS.

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Savepoint;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.atomic.AtomicInteger;

public class InvoiceBatch {
    static final String SERIES = "JV";
    static final int BATCH = 10;

    enum Action { RETRY, FAIL }

    /** What to do about an error from the database. */
    static Action classify(SQLException e) {
        String state = e.getSQLState();
        if (state == null || state.startsWith("08")) {
            return Action.RETRY; // connection lost: our own rows tell what committed
        }
        switch (state) {
            case "40003": // statement completion unknown: as a lost answer
            case "40001": // serialization failure
            case "40P01": // deadlock
                return Action.RETRY;
            default:
                return Action.FAIL;
        }
    }

    static final AtomicInteger rejected = new AtomicInteger();
    static final AtomicInteger lost = new AtomicInteger();

    static Connection connect() throws SQLException {
        String url = String.format("jdbc:postgresql://%s:%s/%s", System.getenv("PGHOST"),
                System.getenv().getOrDefault("PGPORT", "5432"), System.getenv("PGDATABASE"));
        return DriverManager.getConnection(url, System.getenv("PGUSER"), System.getenv("PGPASSWORD"));
    }

    /** One transaction: up to BATCH pending orders.  Returns how many it saw. */
    static int runBatch(Connection db, Random chance) throws SQLException {
        db.setAutoCommit(false);
        try (PreparedStatement pending = db.prepareStatement(
                "SELECT id, amount, defect FROM orders WHERE NOT invoiced"
                        + " ORDER BY id LIMIT " + BATCH + " FOR UPDATE SKIP LOCKED");
             PreparedStatement header = db.prepareStatement(
                "INSERT INTO invoices (order_id, series, period, invoice_no, display_no)"
                        + " SELECT ?, n.series, n.period, n.invoice_no, n.display_no"
                        + " FROM invoice_seq.next_invoice(?) n");
             PreparedStatement line = db.prepareStatement(
                "INSERT INTO invoice_lines (order_id, text, amount) VALUES (?, 'services', ?)");
             PreparedStatement done = db.prepareStatement(
                "UPDATE orders SET invoiced = true WHERE id = ?");
             PreparedStatement correct = db.prepareStatement(
                "UPDATE orders SET defect = NULL WHERE id = ?")) {
            int seen = 0;
            ResultSet rs = pending.executeQuery();
            while (rs.next()) {
                seen++;
                long order = rs.getLong("id");
                boolean defect = rs.getString("defect") != null;
                Savepoint sp = db.setSavepoint();
                try {
                    header.setLong(1, order);
                    header.setString(2, SERIES);
                    header.executeUpdate();
                    line.setLong(1, order);
                    line.setBigDecimal(2, defect ? rs.getBigDecimal("amount").negate() : rs.getBigDecimal("amount"));
                    line.executeUpdate();
                    done.setLong(1, order);
                    done.executeUpdate();
                    db.releaseSavepoint(sp);
                } catch (SQLException e) {
                    if (!"23514".equals(e.getSQLState())) {
                        throw e;
                    }
                    db.rollback(sp); // the number is free again
                    rejected.incrementAndGet();
                    correct.setLong(1, order); // a clerk fixes the order
                    correct.executeUpdate();
                }
            }
            db.commit();
            if (seen > 0 && chance.nextInt(100) < 25) {
                lost.incrementAndGet();
                throw new SQLException("simulated: connection lost, COMMIT answer unknown", "08006");
            }
            return seen;
        } catch (SQLException e) {
            if (!db.isClosed() && e.getSQLState() != null && !e.getSQLState().startsWith("08")) {
                db.rollback();
            }
            throw e;
        }
    }

    static void worker(int n, List<String> errors) {
        Random chance = new Random(Long.parseLong(System.getenv().getOrDefault("SEED", "15")) * 31 + n);
        Connection db = null;
        for (int failures = 0; failures < 20; ) {
            try {
                if (db == null) {
                    db = connect();
                }
                if (runBatch(db, chance) == 0) {
                    break;
                }
            } catch (SQLException e) {
                if (classify(e) == Action.FAIL) {
                    synchronized (errors) {
                        errors.add(e.getSQLState() + " " + e.getMessage());
                    }
                    failures++;
                }
                if (db != null && (e.getSQLState() == null || e.getSQLState().startsWith("08"))) {
                    try {
                        db.close();
                    } catch (SQLException ignored) {
                        // gone already
                    }
                    db = null;
                }
            }
        }
        try {
            if (db != null) {
                db.close();
            }
        } catch (SQLException ignored) {
            // the job is done
        }
    }

    public static void main(String[] args) throws InterruptedException {
        int workers = Integer.parseInt(System.getenv().getOrDefault("WORKERS", "3"));
        List<String> errors = new ArrayList<>();
        List<Thread> threads = new ArrayList<>();
        for (int n = 0; n < workers; n++) {
            int id = n;
            Thread t = new Thread(() -> worker(id, errors));
            t.start();
            threads.add(t);
        }
        for (Thread t : threads) {
            t.join();
        }
        errors.forEach(e -> System.out.println("error: " + e));
        System.out.printf("summary: rejected=%d lost=%d errors=%d%n", rejected.get(), lost.get(), errors.size());
        System.exit(errors.isEmpty() ? 0 : 1);
    }
}
