package dev.hubcast.javaclient;

import static org.junit.jupiter.api.Assertions.fail;

import com.microsoft.signalr.HttpHubConnectionBuilder;
import com.microsoft.signalr.HubConnection;
import com.microsoft.signalr.HubConnectionBuilder;
import com.microsoft.signalr.HubProtocol;
import com.microsoft.signalr.TransportEnum;
import io.reactivex.rxjava3.core.Completable;
import io.reactivex.rxjava3.core.Single;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.BooleanSupplier;
import java.util.function.Consumer;
import java.util.function.Supplier;
import java.util.stream.Stream;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.params.provider.Arguments;

/** The transport × protocol matrix of the Java client and helpers to build and drive its connections. */
final class Clients {
    /** How long to wait for anything the server should do promptly. */
    static final long WAIT_MS = 5000;

    private Clients() {
    }

    /** How the client reaches the hub. */
    enum Transport {
        /** Negotiate, then WebSockets. */
        WEBSOCKETS("WebSockets"),
        /** {@code shouldSkipNegotiate(true)}: straight to the WebSocket. */
        WEBSOCKETS_SKIP_NEGOTIATION("WebSockets"),
        /** Negotiate, then long polling. */
        LONG_POLLING("LongPolling");

        /** What the server's {@code GetActiveTransportName} answers. */
        final String serverName;

        Transport(String serverName) {
            this.serverName = serverName;
        }
    }

    enum Protocol { JSON, MESSAGEPACK }

    /** The official MessagePack protocol class (com.microsoft.signalr:signalr-messagepack), when on the classpath. */
    static final String MESSAGEPACK_CLASS = "com.microsoft.signalr.messagepack.MessagePackHubProtocol";

    static boolean messagePackAvailable() {
        try {
            Class.forName(MESSAGEPACK_CLASS);
            return true;
        } catch (ClassNotFoundException e) {
            return false;
        }
    }

    /** Every transport × protocol pair, as JUnit arguments {@code (transport, protocol)}. */
    static Stream<Arguments> matrix() {
        List<Arguments> all = new ArrayList<>();
        for (Protocol protocol : Protocol.values()) {
            for (Transport transport : Transport.values()) {
                all.add(Arguments.of(transport, protocol));
            }
        }
        return all.stream();
    }

    /** Skips the current test when it needs MessagePack and the artifact is not on the classpath. */
    static void assumeProtocol(Protocol protocol) {
        if (protocol == Protocol.MESSAGEPACK) {
            Assumptions.assumeTrue(messagePackAvailable(),
                    "com.microsoft.signalr:signalr-messagepack is not on the classpath (run.sh adds it when Maven Central serves it)");
        }
    }

    static HubProtocol messagePack() {
        try {
            return (HubProtocol) Class.forName(MESSAGEPACK_CLASS).getConstructor().newInstance();
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException(e);
        }
    }

    /** A builder for {@code url} with the given transport and protocol (not built, not started). */
    static HttpHubConnectionBuilder builder(String url, Transport transport, Protocol protocol) {
        assumeProtocol(protocol);
        HttpHubConnectionBuilder builder = HubConnectionBuilder.create(url);
        switch (transport) {
            case WEBSOCKETS -> builder.withTransport(TransportEnum.WEBSOCKETS);
            case WEBSOCKETS_SKIP_NEGOTIATION -> builder.withTransport(TransportEnum.WEBSOCKETS).shouldSkipNegotiate(true);
            case LONG_POLLING -> builder.withTransport(TransportEnum.LONG_POLLING);
            default -> throw new IllegalArgumentException(transport.toString());
        }
        if (protocol == Protocol.MESSAGEPACK) {
            builder.withHubProtocol(messagePack());
        }
        return builder;
    }

    static HubConnection build(String url, Transport transport, Protocol protocol) {
        return builder(url, transport, protocol).build();
    }

    /** Starts {@code connection} (10 s at most). */
    static HubConnection started(HubConnection connection) {
        await(connection.start(), 10_000, "start()");
        return connection;
    }

    /** Starts {@code connection}, runs {@code body}, and always stops the connection afterwards. */
    static void using(HubConnection connection, Consumer<HubConnection> body) {
        try {
            started(connection);
            body.accept(connection);
        } finally {
            stop(connection);
        }
    }

    static void stop(HubConnection connection) {
        connection.stop().blockingAwait(5, TimeUnit.SECONDS);
    }

    /**
     * Stops {@code connection} so that its close is clean on every transport. Over long polling the Java client
     * re-polls as soon as a poll answers; when stop() follows at once, its DELETE can overtake that poll, which
     * then gets 404 (as from ASP.NET Core), and the client reports "Unexpected response code 404." as the close
     * error. A short pause lets the new poll reach the server first (docs/compatibility.md).
     */
    static Completable cleanStop(HubConnection connection, Transport transport) {
        if (transport == Transport.LONG_POLLING) {
            return Completable.timer(150, TimeUnit.MILLISECONDS).andThen(Completable.defer(connection::stop));
        }
        return connection.stop();
    }

    /** Waits for {@code completable}; its error is rethrown as is. */
    static void await(Completable completable, long ms, String what) {
        Throwable error = outcome(completable, ms);
        if (error instanceof TimeoutException) {
            fail("timed out after " + ms + " ms waiting for " + what);
        }
        if (error instanceof RuntimeException runtime) {
            throw runtime;
        }
        if (error != null) {
            throw new RuntimeException(error);
        }
    }

    private static final Object OK = new Object();

    /** Null when {@code completable} completes within {@code ms}, else its error (a TimeoutException on timeout). */
    static Throwable outcome(Completable completable, long ms) {
        Object result = completable.timeout(ms, TimeUnit.MILLISECONDS)
                .toSingleDefault(OK)
                .onErrorReturn(error -> error)
                .blockingGet();
        return result == OK ? null : (Throwable) result;
    }

    static void await(Completable completable) {
        await(completable, WAIT_MS, "a Completable");
    }

    /** The value of {@code single}; its error is rethrown as is. */
    static <T> T get(Single<T> single, long ms, String what) {
        try {
            return single.timeout(ms, TimeUnit.MILLISECONDS).blockingGet();
        } catch (RuntimeException e) {
            if (e.getCause() instanceof TimeoutException) {
                fail("timed out after " + ms + " ms waiting for " + what);
            }
            throw e;
        }
    }

    static <T> T get(Single<T> single) {
        return get(single, WAIT_MS, "a Single");
    }

    /** The error {@code single} fails with (the test fails if it succeeds or times out). */
    static Throwable errorOf(Single<?> single) {
        Throwable error = outcome(single.ignoreElement(), WAIT_MS);
        if (error == null) {
            fail("expected an error, but it succeeded");
        }
        if (error instanceof TimeoutException) {
            fail("timed out after " + WAIT_MS + " ms waiting for an error");
        }
        return error;
    }

    static Throwable errorOf(Completable completable) {
        return errorOf(completable.toSingleDefault(Boolean.TRUE));
    }

    /** Polls {@code condition} every 10 ms; fails after {@code ms} with {@code what}. */
    static void waitUntil(BooleanSupplier condition, long ms, Supplier<String> what) {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(ms);
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                fail("timed out after " + ms + " ms waiting for " + what.get());
            }
            try {
                Thread.sleep(10);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException(e);
            }
        }
    }
}
