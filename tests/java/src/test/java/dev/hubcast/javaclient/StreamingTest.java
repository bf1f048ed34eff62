package dev.hubcast.javaclient;

import static dev.hubcast.javaclient.Clients.WAIT_MS;
import static dev.hubcast.javaclient.Clients.build;
import static dev.hubcast.javaclient.Clients.errorOf;
import static dev.hubcast.javaclient.Clients.get;
import static dev.hubcast.javaclient.Clients.using;
import static dev.hubcast.javaclient.Clients.waitUntil;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;

import com.microsoft.signalr.HubConnection;
import com.microsoft.signalr.HubConnectionState;
import com.microsoft.signalr.HubException;
import dev.hubcast.javaclient.Clients.Protocol;
import dev.hubcast.javaclient.Clients.Transport;
import io.reactivex.rxjava3.core.Observable;
import io.reactivex.rxjava3.core.Single;
import io.reactivex.rxjava3.disposables.Disposable;
import io.reactivex.rxjava3.subjects.PublishSubject;
import io.reactivex.rxjava3.subjects.ReplaySubject;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Streams both ways (RxJava), the streaming error texts and client results ({@code onWithResult} and
 * {@code /clientresult/{id}}), over every transport × protocol pair.
 */
class StreamingTest extends ConformanceServerTest {
    static String unexpected(String method, String detail) {
        return "An unexpected error occurred invoking '" + method + "' on the server. " + detail;
    }

    /** Records what a stream does, in order: {@code next:<item>}, {@code complete}, {@code error:<message>}. */
    static final class Recorder {
        final List<String> events = new CopyOnWriteArrayList<>();
        volatile Throwable error;
        final Disposable subscription;

        Recorder(Observable<String> stream) {
            subscription = stream.subscribe(
                    item -> events.add("next:" + item),
                    e -> {
                        error = e;
                        events.add("error");
                    },
                    () -> events.add("complete"));
        }

        List<String> settled(String what) {
            waitUntil(() -> events.contains("complete") || events.contains("error"), WAIT_MS, () -> what + ": " + events);
            return events;
        }
    }

    /** The connection id the server uses for {@code connection} (also without negotiate). */
    static String serverId(HubConnection connection) {
        return get(connection.invoke(String.class, "GetCallerConnectionId"));
    }

    /** GET /clientresult/{id}: the server invokes {@code Result} on that connection and answers the outcome as text. */
    static String clientResult(String id) throws Exception {
        var response = HubcastServer.get(server.url + "/clientresult/" + id);
        assertEquals(200, response.statusCode());
        return response.body();
    }

    // ---- server-to-client streams ----

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void streamYieldsABCThenCompletes(Transport transport, Protocol protocol) {
        using(build(hubUrl(), transport, protocol), connection -> {
            Recorder stream = new Recorder(connection.stream(String.class, "Stream"));
            assertEquals(List.of("next:a", "next:b", "next:c", "complete"), stream.settled("Stream"));
            assertNull(stream.error);
            // Stream method lookup is case-insensitive on the server.
            assertEquals(List.of("a", "b", "c"),
                    get(connection.stream(String.class, "stream").toList()));
        });
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void emptyStreamCompletesWithNoItems(Transport transport, Protocol protocol) {
        using(build(hubUrl(), transport, protocol), connection -> {
            Recorder stream = new Recorder(connection.stream(String.class, "EmptyStream"));
            assertEquals(List.of("complete"), stream.settled("EmptyStream"));
        });
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void disposingAnInfiniteStreamCancelsItOnTheServer(Transport transport, Protocol protocol) {
        using(build(hubUrl(), transport, protocol), connection -> {
            AtomicInteger canceled = new AtomicInteger();
            connection.on("StreamCanceled", canceled::incrementAndGet);
            for (int i = 0; i < 5; i++) {
                Recorder stream = new Recorder(connection.stream(String.class, "InfiniteStream"));
                assertEquals("open " + i, get(connection.invoke(String.class, "Echo", "open " + i)));
                if (transport == Transport.LONG_POLLING) {
                    // Each message is its own concurrent POST: without a pause the CancelInvocation can
                    // overtake the StreamInvocation, and a cancel of an unknown stream does nothing
                    // (docs/compatibility.md, the Java client's long polling).
                    io.reactivex.rxjava3.core.Completable.timer(150, TimeUnit.MILLISECONDS).blockingAwait();
                }
                stream.subscription.dispose();
                final int expected = i + 1;
                waitUntil(() -> canceled.get() >= expected, WAIT_MS, () -> expected + " StreamCanceled calls, got " + canceled);
                assertEquals(List.of(), stream.events, "a disposed subscriber hears nothing");
            }
            assertEquals("after cancel", get(connection.invoke(String.class, "Echo", "after cancel")));
            assertEquals(5, canceled.get(), "one StreamCanceled per stream");
        });
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void openStreamsHoldNoInvocationSlot(Transport transport, Protocol protocol) {
        using(build(hubUrl(), transport, protocol), connection -> {
            Recorder infinite = new Recorder(connection.stream(String.class, "InfiniteStream"));
            assertEquals("while streaming", get(connection.invoke(String.class, "Echo", "while streaming")));
            List<Recorder> streams = new ArrayList<>();
            List<Single<String>> echoes = new ArrayList<>();
            for (int i = 0; i < 4; i++) {
                streams.add(new Recorder(connection.stream(String.class, i % 2 == 0 ? "Stream" : "EmptyStream")));
                Single<String> echo = connection.invoke(String.class, "Echo", "echo " + i).cache();
                echo.subscribe((v, e) -> { });
                echoes.add(echo);
            }
            for (int i = 0; i < 4; i++) {
                assertEquals("echo " + i, get(echoes.get(i)));
                List<String> expected = i % 2 == 0 ? List.of("next:a", "next:b", "next:c", "complete") : List.of("complete");
                assertEquals(expected, streams.get(i).settled("stream " + i));
            }
            assertEquals(List.of(), infinite.events);
            infinite.subscription.dispose();
            assertEquals(HubConnectionState.CONNECTED, connection.getConnectionState());
        });
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void stopEndsAnOpenStream(Transport transport, Protocol protocol) {
        HubConnection connection = build(hubUrl(), transport, protocol);
        try {
            Clients.started(connection);
            Recorder stream = new Recorder(connection.stream(String.class, "InfiniteStream"));
            assertEquals("open", get(connection.invoke(String.class, "Echo", "open")));
            Clients.await(Clients.cleanStop(connection, transport));
            // The Java client fails the open invocations of a stopped connection with its own CancellationException.
            assertEquals(List.of("error"), stream.settled("the InfiniteStream subscriber to end after stop()"));
            assertEquals("Invocation was canceled.", stream.error.getMessage());
        } finally {
            Clients.stop(connection);
        }
    }

    // ---- streaming errors ----

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void invokeOnAStreamingMethodIsRefused(Transport transport, Protocol protocol) {
        using(build(hubUrl(), transport, protocol), connection -> {
            for (String method : List.of("Stream", "EmptyStream")) {
                Throwable error = errorOf(connection.invoke(String.class, method));
                assertInstanceOf(HubException.class, error);
                assertEquals("The client attempted to invoke the streaming '" + method
                        + "' method with a non-streaming invocation.", error.getMessage());
            }
            assertEquals("still alive", get(connection.invoke(String.class, "Echo", "still alive")));
        });
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void streamOnANonStreamingMethodIsRefused(Transport transport, Protocol protocol) {
        using(build(hubUrl(), transport, protocol), connection -> {
            Recorder stream = new Recorder(connection.stream(String.class, "Echo", "x"));
            assertEquals(List.of("error"), stream.settled("the stream error"));
            assertInstanceOf(HubException.class, stream.error);
            assertEquals("The client attempted to invoke the non-streaming 'Echo' method with a streaming invocation.",
                    stream.error.getMessage());
            assertEquals("still alive", get(connection.invoke(String.class, "Echo", "still alive")));
        });
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void aStreamingMethodThatThrowsFailsTheStream(Transport transport, Protocol protocol) {
        using(build(hubUrl(), transport, protocol), connection -> {
            Recorder stream = new Recorder(connection.stream(String.class, "StreamThrowException", "boom"));
            assertEquals(List.of("error"), stream.settled("the stream error"));
            assertInstanceOf(HubException.class, stream.error);
            assertEquals(unexpected("StreamThrowException", "InvalidOperationException: boom"), stream.error.getMessage());
            assertEquals("still alive", get(connection.invoke(String.class, "Echo", "still alive")));
        });
    }

    // ---- client-to-server streams ----

    /**
     * Over long polling the Java client sends every message in its own HTTP POST without waiting for the previous
     * one, so back-to-back upload items and the stream's completion can reach any server out of order (a client
     * limitation, see docs/compatibility.md). Tests that upload back to back run on the other transports only.
     */
    static void assumeOrderedSends(Transport transport) {
        org.junit.jupiter.api.Assumptions.assumeFalse(transport == Transport.LONG_POLLING,
                "the Java client's long polling sends concurrent POSTs: back-to-back messages arrive in any order");
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void pacedUploadItemsAllArrive(Transport transport, Protocol protocol) {
        using(build(hubUrl(), transport, protocol), connection -> {
            // One item every 100 ms and the completion 100 ms after the last: in order on every transport.
            Observable<String> paced = Observable.fromArray("p", "a", "c", "e", "d")
                    .concatMap(item -> Observable.just(item).delay(100, TimeUnit.MILLISECONDS))
                    .concatWith(io.reactivex.rxjava3.core.Completable.timer(100, TimeUnit.MILLISECONDS));
            assertEquals("paced", get(connection.invoke(String.class, "StreamingConcat", paced), WAIT_MS, "paced upload"));
        });
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void streamingConcatConcatenatesTheItemsOfASubject(Transport transport, Protocol protocol) {
        assumeOrderedSends(transport);
        using(build(hubUrl(), transport, protocol), connection -> {
            ReplaySubject<String> subject = ReplaySubject.create();
            Single<String> result = connection.invoke(String.class, "StreamingConcat", subject);
            subject.onNext("Hello ");
            subject.onNext("wörld");
            subject.onNext("");
            subject.onNext("!");
            subject.onComplete();
            assertEquals("Hello wörld!", get(result, WAIT_MS, "StreamingConcat"));

            // An upload that ends without items gives the empty string.
            assertEquals("", get(connection.invoke(String.class, "StreamingConcat", Observable.<String>empty()),
                    WAIT_MS, "empty StreamingConcat"));
            // Any Observable is an upload stream.
            assertEquals("xyz", get(connection.invoke(String.class, "StreamingConcat", Observable.just("x", "y", "z")),
                    WAIT_MS, "StreamingConcat of Observable.just"));
        });
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void twoHundredUploadedItemsArriveInOrder(Transport transport, Protocol protocol) {
        assumeOrderedSends(transport);
        using(build(hubUrl(), transport, protocol), connection -> {
            List<String> parts = IntStream.range(0, 200).mapToObj(i -> i + ",").collect(Collectors.toList());
            String result = get(connection.invoke(String.class, "StreamingConcat", Observable.fromIterable(parts)),
                    10_000, "StreamingConcat of 200 items");
            assertEquals(String.join("", parts), result);
        });
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void anOpenUploadHoldsNoInvocationSlot(Transport transport, Protocol protocol) {
        assumeOrderedSends(transport);
        using(build(hubUrl(), transport, protocol), connection -> {
            PublishSubject<String> first = PublishSubject.create();
            PublishSubject<String> second = PublishSubject.create();
            Single<String> firstResult = connection.invoke(String.class, "StreamingConcat", first).cache();
            firstResult.subscribe((v, e) -> { });
            Single<String> secondResult = connection.invoke(String.class, "StreamingConcat", second).cache();
            secondResult.subscribe((v, e) -> { });
            first.onNext("1a");
            second.onNext("2a");
            assertEquals("between items", get(connection.invoke(String.class, "Echo", "between items"), 1500,
                    "Echo while two uploads are open"));
            second.onNext("2b");
            first.onNext("1b");
            second.onComplete();
            assertEquals("2a2b", get(secondResult, 1500, "the second StreamingConcat while the first is open"));
            first.onNext("1c");
            first.onComplete();
            assertEquals("1a1b1c", get(firstResult, 1500, "the first StreamingConcat"));
        });
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void anUploadErrorFailsTheMethodWithHubException(Transport transport, Protocol protocol) {
        using(build(hubUrl(), transport, protocol), connection -> {
            PublishSubject<String> subject = PublishSubject.create();
            Single<String> result = connection.invoke(String.class, "StreamingConcat", subject).cache();
            result.subscribe((v, e) -> { });
            subject.onNext("partial");
            subject.onError(new IllegalStateException("Something bad"));
            Throwable error = errorOf(result);
            assertInstanceOf(HubException.class, error);
            // The Java client sends the Throwable's toString() as the stream's error.
            assertEquals(unexpected("StreamingConcat", "HubException: java.lang.IllegalStateException: Something bad"),
                    error.getMessage());
            assertEquals("still alive", get(connection.invoke(String.class, "Echo", "still alive")));
        });
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void aStreamCountMismatchIsRefusedWithTheAspNetCoreText(Transport transport, Protocol protocol) {
        using(build(hubUrl(), transport, protocol), connection -> {
            Throwable error = errorOf(connection.invoke(String.class, "StreamingConcat"));
            assertEquals(unexpected("StreamingConcat", "HubException: Client sent 0 stream(s), Hub method expects 1."),
                    error.getMessage());
            PublishSubject<String> toEcho = PublishSubject.create();
            error = errorOf(connection.invoke(String.class, "Echo", "x", toEcho));
            assertEquals(unexpected("Echo", "HubException: Client sent 1 stream(s), Hub method expects 0."),
                    error.getMessage());
            // The Java client turns every Observable argument into a stream: two of them are two streams.
            PublishSubject<String> one = PublishSubject.create();
            PublishSubject<String> two = PublishSubject.create();
            error = errorOf(connection.invoke(String.class, "StreamingConcat", one, two));
            assertEquals(unexpected("StreamingConcat", "HubException: Client sent 2 stream(s), Hub method expects 1."),
                    error.getMessage());
            // Items and completions for the refused streams are ignored; the connection stays usable.
            for (PublishSubject<String> subject : List.of(toEcho, one, two)) {
                subject.onNext("ignored");
                subject.onComplete();
            }
            assertEquals("still alive", get(connection.invoke(String.class, "Echo", "still alive")));
            assertEquals(HubConnectionState.CONNECTED, connection.getConnectionState());
        });
    }

    // ---- client results ----

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void onWithResultAnswersTheServer(Transport transport, Protocol protocol) {
        using(build(hubUrl(), transport, protocol), connection -> {
            String id = serverId(connection);
            AtomicInteger calls = new AtomicInteger();
            connection.onWithResult("Result", () -> {
                calls.incrementAndGet();
                return Single.just(42);
            });
            assertEquals("42", call(() -> clientResult(id)));
            assertEquals(1, calls.get());
            // A result that arrives later (the Single completes on another thread) works as well.
            connection.remove("Result");
            connection.onWithResult("Result", () -> Single.just(-7).delay(50, TimeUnit.MILLISECONDS));
            assertEquals("-7", call(() -> clientResult(id)));
            assertEquals("after results", get(connection.invoke(String.class, "Echo", "after results")));
        });
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void aFailingResultGivesTheClientsErrorText(Transport transport, Protocol protocol) {
        using(build(hubUrl(), transport, protocol), connection -> {
            String id = serverId(connection);
            connection.onWithResult("Result", () -> Single.error(new Exception("from callback")));
            // The Java client sends the Throwable's toString(); the server passes it on as is.
            assertEquals("java.lang.Exception: from callback", call(() -> clientResult(id)));
            connection.remove("Result");
            connection.onWithResult("Result", () -> {
                throw new IllegalStateException("thrown");
            });
            // A handler that throws: the Java client sends the exception's message.
            assertEquals("thrown", call(() -> clientResult(id)));
            assertEquals("still alive", get(connection.invoke(String.class, "Echo", "still alive")));
        });
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void noResultHandlerGivesTheClientsNoResultText(Transport transport, Protocol protocol) {
        using(build(hubUrl(), transport, protocol), connection -> {
            String id = serverId(connection);
            // No handler at all: the Java client answers with its own text (the JS client says "didn't").
            assertEquals("Client did not provide a result.", call(() -> clientResult(id)));
            // A handler registered with on() returns nothing: the same.
            AtomicInteger calls = new AtomicInteger();
            connection.on("Result", calls::incrementAndGet);
            assertEquals("Client did not provide a result.", call(() -> clientResult(id)));
            assertEquals(1, calls.get());
        });
    }

    @Test
    void clientResultForAnUnknownConnectionId() throws Exception {
        assertEquals("Connection 'no-such-connection' does not exist.", clientResult("no-such-connection"));
    }

    interface ThrowingSupplier<T> {
        T get() throws Exception;
    }

    static <T> T call(ThrowingSupplier<T> supplier) {
        try {
            return supplier.get();
        } catch (Exception e) {
            throw new AssertionError(e);
        }
    }
}
