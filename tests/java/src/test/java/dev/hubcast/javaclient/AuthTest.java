package dev.hubcast.javaclient;

import static dev.hubcast.javaclient.Clients.builder;
import static dev.hubcast.javaclient.Clients.errorOf;
import static dev.hubcast.javaclient.Clients.get;
import static dev.hubcast.javaclient.Clients.using;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.microsoft.signalr.HubConnection;
import com.microsoft.signalr.HubConnectionState;
import dev.hubcast.javaclient.Clients.Protocol;
import dev.hubcast.javaclient.Clients.Transport;
import io.reactivex.rxjava3.core.Single;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Bearer tokens from {@code withAccessTokenProvider} on {@code /authorizedhub} (tokens from
 * {@code /generateJwtToken}), what a client without a valid token gets, and unknown hub paths.
 */
class AuthTest extends ConformanceServerTest {
    static String hubUrl() {
        return server.url + "/authorizedhub";
    }

    /** A provider that fetches a fresh token every time the client asks for one. */
    static Single<String> tokenProvider(AtomicInteger calls) {
        return Single.defer(() -> {
            calls.incrementAndGet();
            return Single.just(server.testToken());
        });
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void aTokenFromTheProviderAuthorizesTheHub(Transport transport, Protocol protocol) {
        AtomicInteger calls = new AtomicInteger();
        HubConnection connection = builder(hubUrl(), transport, protocol)
                .withAccessTokenProvider(tokenProvider(calls))
                .build();
        using(connection, c -> {
            assertEquals("authorized", get(c.invoke(String.class, "Echo", "authorized")));
            assertTrue(calls.get() >= 1, "the provider was asked");
        });
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void noTokenIsRefused(Transport transport, Protocol protocol) {
        HubConnection connection = builder(hubUrl(), transport, protocol).build();
        Throwable error = errorOf(connection.start());
        assertEquals(refusal(transport), error.getMessage());
        assertEquals(HubConnectionState.DISCONNECTED, connection.getConnectionState());
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void aForgedTokenIsRefusedLikeNoToken(Transport transport, Protocol protocol) {
        HubConnection connection = builder(hubUrl(), transport, protocol)
                .withAccessTokenProvider(Single.just("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"))
                .build();
        Throwable error = errorOf(connection.start());
        assertEquals(refusal(transport), error.getMessage());
    }

    /** What start() fails with when the server answers 401 (negotiate, or the WebSocket upgrade). */
    static String refusal(Transport transport) {
        return transport == Transport.WEBSOCKETS_SKIP_NEGOTIATION
                ? "There was an error starting the WebSocket transport."
                : "Unexpected status code returned from negotiate: 401 Unauthorized.";
    }

    @Test
    void theTestHubNeedsNoToken() {
        HubConnection connection = com.microsoft.signalr.HubConnectionBuilder.create(server.url + "/testhub").build();
        using(connection, c -> assertEquals("open", get(c.invoke(String.class, "Echo", "open"))));
    }

    @Test
    void anUnknownHubPathAnswersNegotiate404() {
        // ASP.NET Core answers 404 to a POST to a path nothing is mapped at, as to a GET.
        HubConnection connection = com.microsoft.signalr.HubConnectionBuilder.create(server.url + "/nosuchhub").build();
        Throwable error = errorOf(connection.start());
        assertEquals("Unexpected status code returned from negotiate: 404 Not Found.", error.getMessage());
    }
}
