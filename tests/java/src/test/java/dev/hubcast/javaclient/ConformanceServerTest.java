package dev.hubcast.javaclient;

import java.util.List;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.provider.Arguments;

/** A test class served by one {@code hubcast serve --conformance} process, started before its tests. */
abstract class ConformanceServerTest {
    static HubcastServer server;

    @BeforeAll
    static void startServer() throws Exception {
        server = HubcastServer.start();
    }

    @AfterAll
    static void stopServer() throws Exception {
        if (server != null) {
            server.close();
        }
    }

    /** The conformance TestHub's URL. */
    static String hubUrl() {
        return server.url + "/testhub";
    }

    /** Every transport × protocol pair the client supports here. */
    static List<Arguments> matrix() {
        return Clients.matrix().collect(Collectors.toList());
    }
}
