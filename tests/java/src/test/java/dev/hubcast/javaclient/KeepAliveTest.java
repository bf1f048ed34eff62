package dev.hubcast.javaclient;

import static dev.hubcast.javaclient.Clients.builder;
import static dev.hubcast.javaclient.Clients.get;
import static dev.hubcast.javaclient.Clients.stop;
import static org.junit.jupiter.api.Assertions.assertEquals;

import com.microsoft.signalr.HubConnection;
import com.microsoft.signalr.HubConnectionState;
import dev.hubcast.javaclient.Clients.Protocol;
import dev.hubcast.javaclient.Clients.Transport;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Keep-alive both ways: with the server's keep-alive at 500 ms and its client timeout at 2 s, an idle Java
 * client whose server timeout is 2 s and whose keep-alive is 500 ms stays connected for 3 s on every
 * transport: the server's Pings reset the client's timer (WebSockets; long polling carries no Pings and the
 * Java client applies no server timeout to it), and the client's Pings the server's.
 */
class KeepAliveTest {
    static HubcastServer server;

    @BeforeAll
    static void startServer() throws Exception {
        server = HubcastServer.start(Map.of(
                "HUBCAST_HUB_KEEP_ALIVE_INTERVAL", "500ms",
                "HUBCAST_HUB_CLIENT_TIMEOUT_INTERVAL", "2s"));
    }

    @AfterAll
    static void stopServer() throws Exception {
        if (server != null) {
            server.close();
        }
    }

    @Test
    void serverPingsKeepAnIdleClientConnected() throws Exception {
        List<HubConnection> connections = new ArrayList<>();
        List<String> closed = new CopyOnWriteArrayList<>();
        try {
            for (Protocol protocol : Protocol.values()) {
                if (protocol == Protocol.MESSAGEPACK && !Clients.messagePackAvailable()) {
                    continue;
                }
                for (Transport transport : Transport.values()) {
                    HubConnection connection = builder(server.url + "/testhub", transport, protocol)
                            .withServerTimeout(2000)
                            .withKeepAliveInterval(500)
                            .build();
                    String name = transport + " + " + protocol;
                    connection.onClosed(error -> closed.add(name + ": " + error));
                    connections.add(Clients.started(connection));
                }
            }
            Thread.sleep(3000);
            assertEquals(List.of(), closed);
            for (HubConnection connection : connections) {
                assertEquals(HubConnectionState.CONNECTED, connection.getConnectionState());
                assertEquals("still here", get(connection.invoke(String.class, "Echo", "still here")));
            }
        } finally {
            connections.forEach(c -> stop(c));
        }
    }
}
