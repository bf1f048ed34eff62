package dev.hubcast.javaclient;

import static dev.hubcast.javaclient.Clients.WAIT_MS;
import static dev.hubcast.javaclient.Clients.build;
import static dev.hubcast.javaclient.Clients.get;
import static dev.hubcast.javaclient.Clients.stop;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.microsoft.signalr.HttpHubConnectionBuilder;
import com.microsoft.signalr.HubConnection;
import com.microsoft.signalr.HubConnectionState;
import dev.hubcast.javaclient.Clients.Protocol;
import dev.hubcast.javaclient.Clients.Transport;
import java.lang.reflect.Method;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Reconnecting with the Java client. It has neither automatic reconnect nor stateful reconnect (see
 * docs/compatibility.md): after a server restart an application starts the same HubConnection again, and
 * that must work against a new hubcast process on the same port.
 */
class ReconnectTest {
    static List<Arguments> matrix() {
        return Clients.matrix().collect(Collectors.toList());
    }

    @Test
    void theJavaClientHasNoAutomaticOrStatefulReconnect() {
        // Were a later client to add them, these tests should grow to cover them, as tests/node does.
        List<String> methods = Arrays.stream(HttpHubConnectionBuilder.class.getMethods())
                .map(Method::getName).map(String::toLowerCase).collect(Collectors.toList());
        assertFalse(methods.stream().anyMatch(m -> m.contains("reconnect")), methods.toString());
        List<String> connectionMethods = Arrays.stream(HubConnection.class.getMethods())
                .map(Method::getName).map(String::toLowerCase).collect(Collectors.toList());
        assertFalse(connectionMethods.stream().anyMatch(m -> m.contains("reconnect")), connectionMethods.toString());
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void afterAServerRestartTheSameConnectionStartsAgain(Transport transport, Protocol protocol) throws Exception {
        Clients.assumeProtocol(protocol);
        HubcastServer first = HubcastServer.start();
        int port = first.port;
        HubConnection connection = build(first.url + "/testhub", transport, protocol);
        CompletableFuture<Exception> closed = new CompletableFuture<>();
        connection.onClosed(error -> closed.complete(error));
        HubcastServer second = null;
        try {
            Clients.started(connection);
            String before = get(connection.invoke(String.class, "GetCallerConnectionId"));

            // SIGKILL: no close frame, no Close message; the client notices the dropped socket or the failed poll.
            first.kill();
            Exception error = TestHubTest.join(closed, "onClosed after the server was killed");
            if (transport == Transport.LONG_POLLING) {
                assertNotNull(error, "a failed poll closes with an error");
            }
            // Over WebSockets the Java client reports a dropped socket to onClosed without an error (the
            // EOFException OkHttp fails with has no message): see docs/compatibility.md.
            assertEquals(HubConnectionState.DISCONNECTED, connection.getConnectionState());

            second = HubcastServer.start(port, Map.of());
            Clients.started(connection);
            assertEquals(HubConnectionState.CONNECTED, connection.getConnectionState());
            String after = get(connection.invoke(String.class, "GetCallerConnectionId"));
            assertNotEquals(before, after, "the restarted server knows a new connection");
            assertEquals("back", get(connection.invoke(String.class, "Echo", "back")));
        } finally {
            stop(connection);
            first.close();
            if (second != null) {
                second.close();
            }
        }
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void aGracefulShutdownClosesTheClient(Transport transport, Protocol protocol) throws Exception {
        Clients.assumeProtocol(protocol);
        HubcastServer server = HubcastServer.start();
        HubConnection connection = build(server.url + "/testhub", transport, protocol);
        CompletableFuture<Exception> closed = new CompletableFuture<>();
        connection.onClosed(error -> closed.complete(error));
        try {
            Clients.started(connection);
            assertEquals("up", get(connection.invoke(String.class, "Echo", "up")));
            long started = System.nanoTime();
            server.close(); // SIGTERM
            TestHubTest.join(closed, "onClosed after SIGTERM");
            assertEquals(HubConnectionState.DISCONNECTED, connection.getConnectionState());
            assertTrue(System.nanoTime() - started < WAIT_MS * 1_000_000, "closed promptly");
        } finally {
            stop(connection);
            server.close();
        }
    }
}
