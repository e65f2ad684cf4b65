/*
 * mendloop-neo4j — runs a local Neo4j Community DBMS with Bolt enabled.
 * Copyright (C) the mendloop authors
 *
 * This program is free software: you can redistribute it and/or modify it under the terms
 * of the GNU General Public License as published by the Free Software Foundation, either
 * version 3 of the License, or (at your option) any later version.
 *
 * This program is distributed in the hope that it will be useful, but WITHOUT ANY
 * WARRANTY; without even the implied warranty of MERCHANTABILITY or FITNESS FOR A
 * PARTICULAR PURPOSE. See the GNU General Public License for more details.
 *
 * You should have received a copy of the GNU General Public License along with this
 * program. If not, see <https://www.gnu.org/licenses/>.
 *
 * It links Neo4j Community (GPLv3) through its Java API, hence this licence. The mendloop
 * Python engine does not link it: it only speaks Bolt to this separate process.
 */
package io.mendloop.neo4j;

import java.io.IOException;
import java.io.PrintStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.neo4j.configuration.GraphDatabaseInternalSettings;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.graphdb.GraphDatabaseService;
import org.neo4j.io.ByteUnit;
import org.neo4j.logging.Level;
import org.neo4j.logging.log4j.Log4jLogProvider;

/**
 * Starts an embedded Neo4j DBMS whose only door is Bolt, prints one line
 * {@code MENDLOOP-NEO4J-READY bolt://HOST:PORT} on stdout once Bolt accepts connections,
 * and blocks until SIGTERM/SIGINT, when a shutdown hook stops the DBMS cleanly.
 *
 * <pre>
 * java [flags] -cp target/classes:target/lib/* io.mendloop.neo4j.Launcher \
 *     --home DIR [--bolt-address HOST:PORT] [--password PW | --password-env VAR]
 *     [--pagecache 128m]
 * </pre>
 *
 * Without a password auth is off. With one, auth is on and user {@code neo4j} is given that
 * password (no change required) at every start, whatever it was before.
 *
 * Exit codes: 2 bad arguments, 3 the DBMS could not start (e.g. port taken), 4 the
 * password could not be set.
 */
public final class Launcher {
    static final String READY = "MENDLOOP-NEO4J-READY";
    private static final String USER = "neo4j";

    private Launcher() {}

    private record Options(Path home, String host, int port, String password, long pagecache) {}

    public static void main(String[] args) {
        Options opts;
        try {
            opts = parse(args);
        } catch (IllegalArgumentException e) {
            System.err.println("mendloop-neo4j: " + e.getMessage());
            System.err.println("usage: Launcher --home DIR [--bolt-address HOST:PORT]"
                    + " [--password PW | --password-env VAR] [--pagecache SIZE]");
            System.exit(2);
            return;
        }

        DatabaseManagementService dbms;
        try {
            dbms = start(opts);
        } catch (Throwable e) {
            e.printStackTrace(System.err);
            System.err.println("mendloop-neo4j: could not start Neo4j: " + describe(e));
            System.exit(3);
            return;
        }

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.err.println("mendloop-neo4j: shutting down");
            try {
                dbms.shutdown();
            } catch (Throwable e) {
                System.err.println("mendloop-neo4j: error during shutdown: " + describe(e));
            } finally {
                System.err.println("mendloop-neo4j: stopped");
                System.err.flush();
                stopped.countDown();
            }
        }, "mendloop-neo4j-shutdown"));

        try {
            if (opts.password() != null) {
                long t0 = System.nanoTime();
                setPassword(dbms, opts.password());
                System.err.printf("mendloop-neo4j: auth ready in %d ms%n",
                        (System.nanoTime() - t0) / 1_000_000);
            }
            waitForBolt(opts.host(), opts.port(), Duration.ofSeconds(60));
        } catch (Throwable e) {
            e.printStackTrace(System.err);
            System.err.println("mendloop-neo4j: " + describe(e));
            System.exit(4);  // runs the shutdown hook
            return;
        }

        PrintStream out = System.out;
        out.println(READY + " bolt://" + SocketAddress.format(opts.host(), opts.port()));
        out.flush();

        try {
            stopped.await();  // forever, until the shutdown hook has run
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static DatabaseManagementService start(Options o) throws IOException {
        Files.createDirectories(o.home());
        DatabaseManagementServiceBuilder b = new DatabaseManagementServiceBuilder(o.home())
                .setUserLogProvider(new Log4jLogProvider(System.err, Level.INFO))
                .setConfig(BoltConnector.enabled, true)
                .setConfig(BoltConnector.listen_address, new SocketAddress(o.host(), o.port()))
                .setConfig(BoltConnector.advertised_address, new SocketAddress(o.host(), o.port()))
                .setConfig(BoltConnector.thread_pool_max_size, 64)
                .setConfig(GraphDatabaseSettings.auth_enabled, o.password() != null)
                .setConfig(GraphDatabaseSettings.pagecache_memory, o.pagecache())
                // a dev instance: don't reserve disk up front, don't warm the cache
                .setConfig(GraphDatabaseSettings.preallocate_logical_logs, false)
                .setConfig(GraphDatabaseSettings.preallocate_store_files, false)
                .setConfig(GraphDatabaseSettings.pagecache_warmup_enabled, false)
                .setConfig(GraphDatabaseSettings.logical_log_rotation_threshold, ByteUnit.mebiBytes(64))
                // dbms.usage_report.enabled: no phoning home (there is no internet here anyway)
                .setConfig(GraphDatabaseSettings.udc_enabled, false)
                // Bolt's Netty event loops otherwise idle 5 s each (10 s) before stopping;
                // the databases are already checkpointed and closed by then
                .setConfig(GraphDatabaseInternalSettings.netty_server_shutdown_quiet_period, 0);
        DatabaseManagementService dbms = b.build();
        GraphDatabaseService db = dbms.database(GraphDatabaseSettings.DEFAULT_DATABASE_NAME);
        if (!db.isAvailable(TimeUnit.SECONDS.toMillis(120))) {
            dbms.shutdown();
            throw new IllegalStateException("database 'neo4j' did not become available");
        }
        return dbms;
    }

    /**
     * Makes {@code neo4j}'s password PW with no change required. Run on the system database
     * through the embedded API, which is not subject to auth. Setting the password it
     * already has is refused by Neo4j ("Old password and new password cannot be the same"),
     * so that case only clears the change-required flag.
     */
    private static void setPassword(DatabaseManagementService dbms, String password) {
        GraphDatabaseService system = dbms.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME);
        try {
            system.executeTransactionally(
                    "ALTER USER " + USER + " SET PASSWORD $pw CHANGE NOT REQUIRED",
                    Map.of("pw", password));
            System.err.println("mendloop-neo4j: password of user '" + USER + "' set");
        } catch (RuntimeException e) {
            String msg = describe(e).toLowerCase();
            if (!msg.contains("cannot be the same")) {
                throw e;
            }
            system.executeTransactionally(
                    "ALTER USER " + USER + " SET PASSWORD CHANGE NOT REQUIRED");
            System.err.println("mendloop-neo4j: password of user '" + USER + "' unchanged");
        }
    }

    private static void waitForBolt(String host, int port, Duration timeout)
            throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        IOException last = null;
        while (System.nanoTime() < deadline) {
            try (Socket s = new Socket()) {
                s.connect(new InetSocketAddress(host, port), 1000);
                return;
            } catch (IOException e) {
                last = e;
                Thread.sleep(100);
            }
        }
        throw new IllegalStateException(
                "Bolt is not accepting connections on " + host + ":" + port + ": " + last);
    }

    private static Options parse(String[] args) {
        Path home = null;
        String host = "127.0.0.1";
        int port = BoltConnector.DEFAULT_PORT;
        String password = null;
        long pagecache = ByteUnit.mebiBytes(128);
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            String v;
            int eq = a.indexOf('=');
            if (a.startsWith("--") && eq > 0) {
                v = a.substring(eq + 1);
                a = a.substring(0, eq);
            } else if (a.equals("-h") || a.equals("--help")) {
                throw new IllegalArgumentException("help requested");
            } else {
                if (i + 1 >= args.length) {
                    throw new IllegalArgumentException(a + " needs a value");
                }
                v = args[++i];
            }
            switch (a) {
                case "--home" -> home = Paths.get(v).toAbsolutePath().normalize();
                case "--bolt-address" -> {
                    int colon = v.lastIndexOf(':');
                    if (colon <= 0) {
                        throw new IllegalArgumentException("--bolt-address must be HOST:PORT");
                    }
                    host = v.substring(0, colon);
                    if (host.startsWith("[") && host.endsWith("]")) {
                        host = host.substring(1, host.length() - 1);
                    }
                    try {
                        port = Integer.parseInt(v.substring(colon + 1));
                    } catch (NumberFormatException e) {
                        throw new IllegalArgumentException("bad port in --bolt-address " + v);
                    }
                    if (port < 1 || port > 65535) {
                        throw new IllegalArgumentException("port out of range: " + port);
                    }
                }
                case "--password" -> password = v.isEmpty() ? null : v;
                case "--password-env" -> {
                    // the password from an environment variable: argv is visible in `ps`
                    String fromEnv = System.getenv(v);
                    if (fromEnv == null) {
                        throw new IllegalArgumentException("--password-env: $" + v + " is not set");
                    }
                    password = fromEnv.isEmpty() ? null : fromEnv;
                }
                case "--pagecache" -> {
                    try {
                        pagecache = ByteUnit.parse(v);
                    } catch (RuntimeException e) {
                        throw new IllegalArgumentException("bad --pagecache " + v);
                    }
                }
                default -> throw new IllegalArgumentException("unknown argument " + a);
            }
        }
        if (home == null) {
            throw new IllegalArgumentException("--home DIR is required");
        }
        return new Options(home, host, port, password, pagecache);
    }

    /** The message chain of an exception, innermost causes included (they say why). */
    private static String describe(Throwable e) {
        StringBuilder sb = new StringBuilder();
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (sb.length() > 0) {
                sb.append(" <- ");
            }
            sb.append(t.getClass().getSimpleName()).append(": ").append(t.getMessage());
            if (t.getCause() == t) {
                break;
            }
        }
        return sb.toString();
    }
}
