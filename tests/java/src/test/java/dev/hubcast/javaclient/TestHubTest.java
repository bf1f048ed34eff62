package dev.hubcast.javaclient;

import static dev.hubcast.javaclient.Clients.WAIT_MS;
import static dev.hubcast.javaclient.Clients.await;
import static dev.hubcast.javaclient.Clients.build;
import static dev.hubcast.javaclient.Clients.builder;
import static dev.hubcast.javaclient.Clients.errorOf;
import static dev.hubcast.javaclient.Clients.get;
import static dev.hubcast.javaclient.Clients.stop;
import static dev.hubcast.javaclient.Clients.using;
import static dev.hubcast.javaclient.Clients.waitUntil;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.annotations.SerializedName;
import com.microsoft.signalr.HubConnection;
import com.microsoft.signalr.HubConnectionState;
import com.microsoft.signalr.HubException;
import dev.hubcast.javaclient.Clients.Protocol;
import dev.hubcast.javaclient.Clients.Transport;
import io.reactivex.rxjava3.core.Single;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** The conformance TestHub through the official Java client, over every transport × protocol pair. */
class TestHubTest extends ConformanceServerTest {
    static List<org.junit.jupiter.params.provider.Arguments> matrix() {
        return Clients.matrix().collect(Collectors.toList());
    }

    /** A custom object with the PascalCase property names of the .NET test hub. */
    static final class CustomObject {
        @SerializedName("Name")
        String name;
        @SerializedName("Value")
        int value;

        CustomObject() {
        }

        CustomObject(String name, int value) {
            this.name = name;
            this.value = value;
        }
    }

    /** The test hub's complex object as the JSON protocol carries it (bytes base64, time ISO-8601). */
    static final class ComplexObject {
        @SerializedName("String")
        String string;
        @SerializedName("IntArray")
        int[] intArray;
        @SerializedName("ByteArray")
        String byteArray;
        @SerializedName("Guid")
        String guid;
        @SerializedName("DateTime")
        String dateTime;
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void invokeEchoReturnsItsArgument(Transport transport, Protocol protocol) {
        using(build(hubUrl(), transport, protocol), connection -> {
            assertEquals(HubConnectionState.CONNECTED, connection.getConnectionState());
            String text = "hello, wörld ✓ \u2028 \"quoted\" \uD83D\uDE00";
            assertEquals(text, get(connection.invoke(String.class, "Echo", text)));
            assertEquals("", get(connection.invoke(String.class, "Echo", "")));
            // Hub method lookup is case-insensitive, as in ASP.NET Core.
            assertEquals("lower", get(connection.invoke(String.class, "echo", "lower")));
            assertEquals("upper", get(connection.invoke(String.class, "ECHO", "upper")));
        });
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void sendIsProcessedAndALaterInvokeStillWorks(Transport transport, Protocol protocol) {
        using(build(hubUrl(), transport, protocol), connection -> {
            CompletableFuture<String> received = new CompletableFuture<>();
            connection.on("Message", received::complete, String.class);
            // Non-blocking calls that fail get no reply and do not break the connection.
            connection.send("ThrowException", "ignored");
            connection.send("NoSuchMethod", 1, 2);
            connection.send("InvokeWithString", "sent without waiting");
            assertEquals("sent without waiting", join(received, "Message after send"));
            assertEquals("after send", get(connection.invoke(String.class, "Echo", "after send")));
            assertEquals(HubConnectionState.CONNECTED, connection.getConnectionState());
        });
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void serverToClientCallArrivesWithTheInvocation(Transport transport, Protocol protocol) {
        using(build(hubUrl(), transport, protocol), connection -> {
            CompletableFuture<String> received = new CompletableFuture<>();
            connection.on("Message", received::complete, String.class);
            // A void hub method: the Completable form of invoke. The server sends Message before the Completion,
            // but the Java client runs on-handlers on an RxJava io thread and completions on the transport's
            // thread, so the invoke may complete before the handler has run (docs/compatibility.md).
            await(connection.invoke("InvokeWithString", "message from server"));
            assertEquals("message from server", join(received, "Message"));
        });
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void clientMethodNamesArriveExactlyAsTheHubSpellsThem(Transport transport, Protocol protocol) {
        using(build(hubUrl(), transport, protocol), connection -> {
            // The Java client matches handler names case-sensitively (unlike the JS client), so the server must
            // send "Message" spelled as the hub declares it.
            List<String> lower = new CopyOnWriteArrayList<>();
            connection.on("message", lower::add, String.class);
            CompletableFuture<String> exact = new CompletableFuture<>();
            connection.on("Message", exact::complete, String.class);
            await(connection.invoke("InvokeWithString", "exact case"));
            assertEquals("exact case", join(exact, "the Message handler"));
            assertEquals("after", get(connection.invoke(String.class, "Echo", "after")));
            assertEquals(List.of(), lower);
        });
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void errorMessagesAreTheAspNetCoreTexts(Transport transport, Protocol protocol) {
        using(build(hubUrl(), transport, protocol), connection -> {
            Throwable thrown = errorOf(connection.invoke("ThrowException", "An error occurred."));
            assertInstanceOf(HubException.class, thrown);
            assertEquals("An unexpected error occurred invoking 'ThrowException' on the server. "
                    + "InvalidOperationException: An error occurred.", thrown.getMessage());

            thrown = errorOf(connection.invoke(String.class, "UnknownMethod", "x"));
            assertInstanceOf(HubException.class, thrown);
            assertEquals("Unknown hub method 'UnknownMethod'", thrown.getMessage());

            thrown = errorOf(connection.invoke(String.class, "Echo"));
            assertEquals("Failed to invoke 'Echo' due to an error on the server. "
                    + "InvalidDataException: Invocation provides 0 argument(s) but target expects 1.", thrown.getMessage());

            thrown = errorOf(connection.invoke(String.class, "Echo", "a", "b"));
            assertEquals("Failed to invoke 'Echo' due to an error on the server. "
                    + "InvalidDataException: Invocation provides 2 argument(s) but target expects 1.", thrown.getMessage());

            // Errors are per invocation: the connection stays usable.
            assertEquals(HubConnectionState.CONNECTED, connection.getConnectionState());
            assertEquals("still alive", get(connection.invoke(String.class, "Echo", "still alive")));
        });
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void sendComplexObjectReturnsTheFixedObject(Transport transport, Protocol protocol) {
        Clients.assumeProtocol(protocol);
        org.junit.jupiter.api.Assumptions.assumeTrue(protocol == Protocol.JSON,
                "the MessagePack form carries bin and timestamp values: not checked without the artifact");
        using(build(hubUrl(), transport, protocol), connection -> {
            ComplexObject value = get(connection.invoke(ComplexObject.class, "SendComplexObject"));
            assertEquals("hello world", value.string);
            assertArrayEquals(new int[] {1, 2, 3}, value.intArray);
            assertEquals("AQID", value.byteArray);
            assertEquals("00010203-0405-0607-0706-050403020100", value.guid);
            assertEquals("2000-01-01T00:00:00Z", value.dateTime);
        });
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void echoComplexObjectRoundTripsClientValues(Transport transport, Protocol protocol) {
        Clients.assumeProtocol(protocol);
        org.junit.jupiter.api.Assumptions.assumeTrue(protocol == Protocol.JSON,
                "the MessagePack form carries bin and timestamp values: not checked without the artifact");
        using(build(hubUrl(), transport, protocol), connection -> {
            ComplexObject sent = new ComplexObject();
            sent.string = "ünïcödé";
            sent.intArray = new int[] {Integer.MIN_VALUE, 0, Integer.MAX_VALUE};
            sent.byteArray = "AP+ABw==";
            sent.guid = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";
            sent.dateTime = "2024-02-29T12:34:56.789Z";
            ComplexObject echoed = get(connection.invoke(ComplexObject.class, "EchoComplexObject", sent));
            assertEquals(sent.string, echoed.string);
            assertArrayEquals(sent.intArray, echoed.intArray);
            assertEquals(sent.byteArray, echoed.byteArray);
            assertEquals(sent.guid, echoed.guid);
            assertEquals(sent.dateTime, echoed.dateTime);
        });
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void sendCustomObjectCallsCustomObjectBack(Transport transport, Protocol protocol) {
        using(build(hubUrl(), transport, protocol), connection -> {
            CompletableFuture<CustomObject> received = new CompletableFuture<>();
            connection.on("CustomObject", received::complete, CustomObject.class);
            await(connection.invoke("SendCustomObject", new CustomObject("test name", 42)));
            CustomObject value = join(received, "CustomObject");
            assertEquals("test name", value.name);
            assertEquals(42, value.value);
        });
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void nullsBindToReferenceTypesAsInAspNetCore(Transport transport, Protocol protocol) {
        using(build(hubUrl(), transport, protocol), connection -> {
            // The .NET TestHub's Echo(string message) binds null and returns it: the invocation completes.
            await(connection.invoke("Echo", (Object) null));
            // Gson leaves null fields out: {"Value":1}. .NET binds the missing Name as null and sends it back.
            CompletableFuture<CustomObject> received = new CompletableFuture<>();
            connection.on("CustomObject", received::complete, CustomObject.class);
            await(connection.invoke("SendCustomObject", new CustomObject(null, 1)));
            CustomObject value = join(received, "CustomObject");
            assertNull(value.name);
            assertEquals(1, value.value);
        });
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void transportNameAndConnectionIdDescribeThisConnection(Transport transport, Protocol protocol) {
        using(build(hubUrl(), transport, protocol), connection -> {
            assertEquals(transport.serverName, get(connection.invoke(String.class, "GetActiveTransportName")));
            String id = get(connection.invoke(String.class, "GetCallerConnectionId"));
            assertTrue(id.matches("[A-Za-z0-9_-]{22}"), id);
            if (transport == Transport.WEBSOCKETS_SKIP_NEGOTIATION) {
                // Without negotiate the client never learns the id.
                assertNull(connection.getConnectionId());
            } else {
                assertEquals(id, connection.getConnectionId());
            }
        });
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void twentyParallelInvokesGetTheirOwnAnswers(Transport transport, Protocol protocol) {
        using(build(hubUrl(), transport, protocol), connection -> {
            List<String> inputs = IntStream.range(0, 20).mapToObj(i -> "message " + i + " " + "x".repeat(i * 50))
                    .collect(Collectors.toList());
            List<Single<String>> calls = new ArrayList<>();
            for (String input : inputs) {
                calls.add(connection.invoke(String.class, "Echo", input).cache());
            }
            calls.forEach(Single::subscribe);
            List<String> results = new ArrayList<>();
            for (Single<String> call : calls) {
                results.add(get(call, 10_000, "20 parallel invokes"));
            }
            assertEquals(inputs, results);
        });
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void headersFromWithHeaderReachTheHub(Transport transport, Protocol protocol) {
        HubConnection connection = builder(hubUrl(), transport, protocol)
                .withHeader("X-Hubcast-Test", "from java")
                .build();
        using(connection, c -> {
            assertEquals("from java", get(c.invoke(String.class, "GetHeader", "X-Hubcast-Test")));
            // The Java client names itself in User-Agent (browsers' clients use X-SignalR-User-Agent).
            String userAgent = get(c.invoke(String.class, "GetHeader", "User-Agent"));
            assertNotNull(userAgent);
            assertTrue(userAgent.startsWith("Microsoft SignalR/"), userAgent);
            assertTrue(userAgent.contains("Java"), userAgent);
        });
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void stopFiresOnClosedWithoutErrorAndTheConnectionStartsAgain(Transport transport, Protocol protocol) {
        HubConnection connection = build(hubUrl(), transport, protocol);
        List<Object> closed = new CopyOnWriteArrayList<>();
        connection.onClosed(error -> closed.add(error == null ? "no error" : error));
        List<String> messages = new CopyOnWriteArrayList<>();
        connection.on("Message", messages::add, String.class);
        try {
            Clients.started(connection);
            String firstId = get(connection.invoke(String.class, "GetCallerConnectionId"));
            await(connection.invoke("InvokeWithString", "first"));
            await(Clients.cleanStop(connection, transport));
            assertEquals(HubConnectionState.DISCONNECTED, connection.getConnectionState());
            waitUntil(() -> closed.size() == 1, WAIT_MS, () -> "onClosed after stop()");
            assertEquals(List.of("no error"), closed);
            assertNull(connection.getConnectionId());

            Clients.started(connection);
            assertEquals(HubConnectionState.CONNECTED, connection.getConnectionState());
            String secondId = get(connection.invoke(String.class, "GetCallerConnectionId"));
            assertNotEquals(firstId, secondId, "a restart is a new connection");
            await(connection.invoke("InvokeWithString", "second"));
            waitUntil(() -> messages.size() == 2, WAIT_MS, () -> "two Message calls, got " + messages);
            assertEquals(List.of("first", "second"), messages);
            await(Clients.cleanStop(connection, transport));
            waitUntil(() -> closed.size() == 2, WAIT_MS, () -> "the second onClosed");
            assertEquals(List.of("no error", "no error"), closed);
        } finally {
            stop(connection);
        }
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void aMessageOverTheSizeLimitClosesTheConnectionWithTheAspNetCoreError(Transport transport, Protocol protocol) {
        HubConnection connection = build(hubUrl(), transport, protocol);
        CompletableFuture<Exception> closed = new CompletableFuture<>();
        connection.onClosed(closed::complete);
        try {
            Clients.started(connection);
            // 32 KiB is the default MaximumReceiveMessageSize: a 30 000-character argument still passes.
            String big = "x".repeat(30_000);
            assertEquals(big, get(connection.invoke(String.class, "Echo", big)));
            String expected = "Connection closed with an error. InvalidDataException: The maximum message size of 32768B "
                    + "was exceeded. The message size can be configured in AddHubOptions.";
            Throwable error = errorOf(connection.invoke(String.class, "Echo", "y".repeat(40_000)));
            assertEquals(expected, error.getMessage());
            assertEquals(expected, join(closed, "onClosed").getMessage());
            assertEquals(HubConnectionState.DISCONNECTED, connection.getConnectionState());
        } finally {
            stop(connection);
        }
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void negotiateCookiesComeBackOnTheTransportRequests(Transport transport, Protocol protocol) {
        Clients.assumeProtocol(protocol);
        org.junit.jupiter.api.Assumptions.assumeTrue(transport != Transport.WEBSOCKETS_SKIP_NEGOTIATION,
                "the cookies are set by negotiate");
        // The Java client keeps the cookies negotiate sets (its OkHttp cookie jar) and sends them again.
        using(build(hubUrl(), transport, protocol), connection -> {
            assertEquals("testValue", get(connection.invoke(String.class, "GetCookie", "testCookie")));
            assertEquals("testValue2", get(connection.invoke(String.class, "GetCookie", "testCookie2")));
        });
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void aNegotiateRedirectIsFollowed(Transport transport, Protocol protocol) {
        Clients.assumeProtocol(protocol);
        org.junit.jupiter.api.Assumptions.assumeTrue(transport != Transport.WEBSOCKETS_SKIP_NEGOTIATION,
                "a redirect is a negotiate answer");
        // /redirect answers negotiate with {"url": "<baseUrl>/testHub?numRedirects=N"}.
        using(build(server.url + "/redirect?baseUrl=" + server.url, transport, protocol), connection -> {
            long redirects = get(connection.invoke(Long.class, "GetNumRedirects"));
            assertTrue(redirects >= 1, "numRedirects " + redirects);
            assertEquals("redirected", get(connection.invoke(String.class, "Echo", "redirected")));
            assertEquals(transport.serverName, get(connection.invoke(String.class, "GetActiveTransportName")));
        });
    }

    @Test
    void withoutATransportTheClientPicksWebSockets() {
        HubConnection connection = com.microsoft.signalr.HubConnectionBuilder.create(hubUrl()).build();
        using(connection, c -> assertEquals("WebSockets", get(c.invoke(String.class, "GetActiveTransportName"))));
    }

    @Test
    void theNoWebSocketsHubFallsBackToLongPolling() {
        HubConnection connection = com.microsoft.signalr.HubConnectionBuilder.create(server.url + "/testhub-nowebsockets").build();
        using(connection, c -> {
            assertEquals("LongPolling", get(c.invoke(String.class, "GetActiveTransportName")));
            assertEquals("echo", get(c.invoke(String.class, "Echo", "echo")));
        });
    }

    @Test
    void websocketsOnlyAgainstTheNoWebSocketsHubFailsToStart() {
        HubConnection connection = com.microsoft.signalr.HubConnectionBuilder.create(server.url + "/testhub-nowebsockets")
                .withTransport(com.microsoft.signalr.TransportEnum.WEBSOCKETS).build();
        Throwable error = errorOf(connection.start());
        assertEquals("There were no compatible transports on the server.", error.getMessage());
        assertEquals(HubConnectionState.DISCONNECTED, connection.getConnectionState());
    }

    static <T> T join(CompletableFuture<T> future, String what) {
        try {
            return future.get(WAIT_MS, TimeUnit.MILLISECONDS);
        } catch (java.util.concurrent.TimeoutException e) {
            throw new AssertionError("timed out after " + WAIT_MS + " ms waiting for " + what);
        } catch (Exception e) {
            throw new AssertionError(what + " failed: " + e, e);
        }
    }
}
