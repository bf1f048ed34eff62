package dev.hubcast.javaclient;

import static dev.hubcast.javaclient.Clients.WAIT_MS;
import static dev.hubcast.javaclient.Clients.await;
import static dev.hubcast.javaclient.Clients.builder;
import static dev.hubcast.javaclient.Clients.errorOf;
import static dev.hubcast.javaclient.Clients.get;
import static dev.hubcast.javaclient.Clients.stop;
import static dev.hubcast.javaclient.Clients.waitUntil;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.microsoft.signalr.HubConnection;
import com.microsoft.signalr.HubException;
import com.microsoft.signalr.TypeReference;
import dev.hubcast.javaclient.Clients.Protocol;
import dev.hubcast.javaclient.Clients.Transport;
import io.reactivex.rxjava3.core.Observable;
import io.reactivex.rxjava3.core.Single;
import java.lang.reflect.Type;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The seed's chat hub at {@code /hubs/chat} through the Java client with dev-login tokens: broadcast,
 * typing, rooms, direct messages, history, mentions, read receipts, StreamTime, uploads, moderation and
 * input validation, and the events the seed's clients handle.
 */
class ChatTest {
    static HubcastServer server;
    static Path dir;
    final List<HubConnection> open = new CopyOnWriteArrayList<>();

    @BeforeAll
    static void startServer() throws Exception {
        dir = Files.createTempDirectory("hubcast-java-chat-");
        server = HubcastServer.start(Map.of("HUBCAST_HISTORY", "sqlite:" + dir.resolve("chat.db")));
    }

    @AfterAll
    static void stopServer() throws Exception {
        if (server != null) {
            server.close();
        }
        if (dir != null) {
            try (Stream<Path> files = Files.walk(dir)) {
                files.sorted(Comparator.reverseOrder()).forEach(path -> path.toFile().delete());
            }
        }
    }

    @AfterEach
    void stopClients() {
        open.forEach(Clients::stop);
        open.clear();
    }

    /**
     * Every transport, JSON. The chat's events carry times (ISO-8601 text in JSON, the timestamp extension in
     * MessagePack); these tests read them as text, so they run on JSON only.
     */
    static List<Arguments> matrix() {
        return Clients.matrix().filter(a -> a.get()[1] == Protocol.JSON).collect(Collectors.toList());
    }

    /** A stored message as {@code RecentMessages} returns it (camelCase). */
    static final class StoredMessage {
        long id;
        String room;
        String fromUser;
        String content;
        String utc;
    }

    static final Type MESSAGES = new TypeReference<List<StoredMessage>>() { }.getType();
    static final Type STRINGS = new TypeReference<List<String>>() { }.getType();

    /** One {@code ReceiveMessage(from, message, utc)}. */
    record Received(String from, String message, String utc) {
    }

    /** A started chat client that records every ReceiveMessage. */
    final class Chatter {
        final String user;
        final HubConnection connection;
        final List<Received> received = new CopyOnWriteArrayList<>();
        final CompletableFuture<Exception> closed = new CompletableFuture<>();

        Chatter(String user, String role, Transport transport, Protocol protocol) throws Exception {
            this.user = user;
            String token = server.devLogin(user, role);
            connection = builder(server.url + "/hubs/chat", transport, protocol)
                    .withAccessTokenProvider(Single.just(token))
                    .build();
            connection.on("ReceiveMessage", (from, message, utc) -> received.add(new Received(from, message, utc)),
                    String.class, String.class, String.class);
            connection.onClosed(error -> closed.complete(error));
            Clients.started(connection);
            open.add(connection);
        }

        Received next(Predicate<Received> predicate, String what) {
            waitUntil(() -> received.stream().anyMatch(predicate), WAIT_MS, () -> user + " to receive " + what + "; got " + received);
            return received.stream().filter(predicate).findFirst().orElseThrow();
        }

        void invoke(String method, Object... args) {
            await(connection.invoke(method, args), WAIT_MS, method);
        }
    }

    static boolean isUtc(String text) {
        return text != null && text.matches("\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d(\\.\\d+)?Z");
    }

    static String prefix(String method) {
        return "An unexpected error occurred invoking '" + method + "' on the server. HubException: ";
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void broadcastTypingRoomsDirectMessagesAndHistory(Transport transport, Protocol protocol) throws Exception {
        Clients.assumeProtocol(protocol);
        String tag = transport.ordinal() + "" + protocol.ordinal();
        String ann = "ann" + tag;
        String bob = "bob" + tag;
        String room = "dev" + tag;
        Chatter a = new Chatter(ann, null, transport, protocol);
        Chatter b = new Chatter(bob, null, transport, protocol);

        // Presence: the first connection of a user is announced to everyone.
        a.next(m -> m.from().equals("SYSTEM") && m.message().equals(bob + " joined"), "bob joined");
        List<String> online = get(a.connection.invoke(STRINGS, "OnlineUsers"));
        assertTrue(online.containsAll(List.of(ann, bob)), online.toString());

        a.invoke("SendMessage", "hello everyone from " + tag);
        Received heard = b.next(m -> m.message().equals("hello everyone from " + tag), "the broadcast");
        assertEquals(ann, heard.from());
        assertTrue(isUtc(heard.utc()), heard.utc());

        CompletableFuture<List<Object>> typing = new CompletableFuture<>();
        b.connection.on("Typing", (who, isTyping) -> {
            if (who.equals(ann)) {
                typing.complete(List.of(who, isTyping));
            }
        }, String.class, Boolean.class);
        a.invoke("SetTyping", true);
        assertEquals(List.of(ann, true), TestHubTest.join(typing, "Typing"));

        a.invoke("JoinRoom", room);
        b.invoke("JoinRoom", room);
        a.next(m -> m.from().equals("SYSTEM") && m.message().equals(bob + " joined " + room), "bob joined the room");
        a.invoke("SendToRoom", room, "Hello devs!");
        assertEquals(ann, b.next(m -> m.message().equals("Hello devs!"), "the room message").from());

        a.invoke("SendDirect", bob, "DM hi!");
        assertEquals(ann, b.next(m -> m.message().equals("DM hi!"), "the direct message").from());

        List<StoredMessage> history = get(b.connection.invoke(MESSAGES, "RecentMessages", room, 50));
        assertEquals(1, history.size());
        assertEquals(List.of(ann, "Hello devs!", room),
                List.of(history.get(0).fromUser, history.get(0).content, history.get(0).room));
        assertTrue(history.get(0).id > 0);
        assertTrue(isUtc(history.get(0).utc), history.get(0).utc);
        String conversation = ann.compareTo(bob) <= 0 ? "dm:" + ann + ":" + bob : "dm:" + bob + ":" + ann;
        List<StoredMessage> dm = get(b.connection.invoke(MESSAGES, "RecentMessages", conversation, 50));
        assertEquals(List.of("DM hi!"), dm.stream().map(m -> m.content).collect(Collectors.toList()));

        for (int i = 0; i < 5; i++) {
            a.invoke("SendToRoom", room, "m" + i);
        }
        List<StoredMessage> page = get(a.connection.invoke(MESSAGES, "RecentMessages", room, 2));
        assertEquals(List.of("m3", "m4"), page.stream().map(m -> m.content).collect(Collectors.toList()));
        List<StoredMessage> older = get(a.connection.invoke(MESSAGES, "RecentMessagesBefore", room, page.get(0).id, 2));
        assertEquals(List.of("m1", "m2"), older.stream().map(m -> m.content).collect(Collectors.toList()));

        stop(b.connection);
        a.next(m -> m.from().equals("SYSTEM") && m.message().equals(bob + " left"), "bob left");
        List<String> after = get(a.connection.invoke(STRINGS, "OnlineUsers"));
        assertTrue(after.contains(ann) && !after.contains(bob), after.toString());
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void streamTimeMentionsAndReadReceipts(Transport transport, Protocol protocol) throws Exception {
        Clients.assumeProtocol(protocol);
        String tag = transport.ordinal() + "" + protocol.ordinal();
        String room = "ux" + tag;
        Chatter a = new Chatter("ann2" + tag, null, transport, protocol);
        Chatter b = new Chatter("bob2" + tag, null, transport, protocol);

        // Two ticks, then take() disposes the stream, which cancels it on the server.
        List<String> times = get(a.connection.stream(String.class, "StreamTime").take(2).toList(), 5000, "two StreamTime ticks");
        assertEquals(2, times.size());
        times.forEach(t -> assertTrue(t.matches("\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z"), t));

        a.invoke("JoinRoom", room);
        b.invoke("JoinRoom", room);
        CompletableFuture<List<Object>> mentioned = new CompletableFuture<>();
        b.connection.on("Mentioned", (from, r, id) -> mentioned.complete(List.of(from, r, id)),
                String.class, String.class, Long.class);
        a.invoke("SendToRoom", room, "hey @" + b.user + ", look");
        List<Object> mention = TestHubTest.join(mentioned, "Mentioned");
        assertEquals(List.of(a.user, room), mention.subList(0, 2));
        long id = (Long) mention.get(2);

        CompletableFuture<List<Object>> receipt = new CompletableFuture<>();
        a.connection.on("ReadReceipt", (who, r, messageId) -> receipt.complete(List.of(who, r, messageId)),
                String.class, String.class, Long.class);
        b.invoke("MarkRead", room, id);
        assertEquals(List.of(b.user, room, id), TestHubTest.join(receipt, "ReadReceipt"));
    }

    /** {@code UploadChunks}' result. */
    static final class UploadResult {
        long bytes;
        String sha256;
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void uploadsAndRoomMembers(Transport transport, Protocol protocol) throws Exception {
        Clients.assumeProtocol(protocol);
        String tag = transport.ordinal() + "" + protocol.ordinal();
        String room = "members" + tag;
        Chatter a = new Chatter("ann4" + tag, null, transport, protocol);
        Chatter b = new Chatter("bob4" + tag, null, transport, protocol);

        List<Long> progress = new CopyOnWriteArrayList<>();
        a.connection.on("UploadProgress", progress::add, Long.class);
        // Paced: over long polling the Java client's sends may overtake each other (docs/compatibility.md).
        Observable<String> chunks = Observable.just("abc", "def")
                .concatMap(chunk -> Observable.just(chunk).delay(50, TimeUnit.MILLISECONDS))
                .concatWith(io.reactivex.rxjava3.core.Completable.timer(50, TimeUnit.MILLISECONDS));
        UploadResult result = get(a.connection.invoke(UploadResult.class, "UploadChunks", chunks), WAIT_MS, "UploadChunks");
        assertEquals(6, result.bytes);
        assertEquals("bef57ec7f53a6d40beb640a780a639c83bc29ac8a9816f1fc6c5c6dcd93c4721", result.sha256);
        waitUntil(() -> progress.size() == 2, WAIT_MS, () -> "two UploadProgress calls, got " + progress);
        assertEquals(List.of(3L, 6L), progress);

        a.invoke("JoinRoom", room);
        b.invoke("JoinRoom", room);
        assertEquals(List.of(a.user, b.user), get(a.connection.invoke(STRINGS, "RoomMembers", room)));
        b.invoke("LeaveRoom", room);
        assertEquals(List.of(a.user), get(a.connection.invoke(STRINGS, "RoomMembers", room)));
    }

    @Test
    void theChatNeedsASignedInUser() {
        HubConnection anonymous = com.microsoft.signalr.HubConnectionBuilder.create(server.url + "/hubs/chat").build();
        Throwable error = errorOf(anonymous.start());
        assertEquals("Unexpected status code returned from negotiate: 401 Unauthorized.", error.getMessage());
    }

    @Test
    void badInputsGetClearErrors() throws Exception {
        Chatter eve = new Chatter("eve", null, Transport.WEBSOCKETS, Protocol.JSON);
        Throwable error = errorOf(eve.connection.invoke("SendMessage", "   "));
        assertInstanceOf(HubException.class, error);
        assertEquals(prefix("SendMessage") + "Message is empty.", error.getMessage());
        assertEquals(prefix("SendMessage") + "Message is longer than 4000 characters.",
                errorOf(eve.connection.invoke("SendMessage", "x".repeat(4001))).getMessage());
        assertEquals(prefix("SendMessage") + "Message contains control characters.",
                errorOf(eve.connection.invoke("SendMessage", "bell\u0007")).getMessage());
        assertTrue(errorOf(eve.connection.invoke("JoinRoom", "no spaces")).getMessage().contains("Room names are 1 to 64"));
        assertEquals(prefix("RecentMessages") + "Not your conversation.",
                errorOf(eve.connection.invoke(MESSAGES, "RecentMessages", "dm:ann:bob", 10)).getMessage());
    }

    @Test
    void moderationMuteDeleteAndKick() throws Exception {
        Chatter admin = new Chatter("mod", "Admin", Transport.WEBSOCKETS, Protocol.JSON);
        Chatter troll = new Chatter("troll", null, Transport.WEBSOCKETS, Protocol.JSON);
        assertEquals("Failed to invoke 'MuteUser' because user is unauthorized",
                errorOf(troll.connection.invoke("MuteUser", "mod", 5)).getMessage());
        admin.invoke("MuteUser", "troll", 5);
        assertTrue(errorOf(troll.connection.invoke("SendMessage", "spam")).getMessage()
                .startsWith(prefix("SendMessage") + "You are muted until "));
        admin.invoke("MuteUser", "troll", 0);

        admin.invoke("JoinRoom", "mods");
        troll.invoke("JoinRoom", "mods");
        troll.invoke("SendToRoom", "mods", "bad words");
        StoredMessage message = Clients.<List<StoredMessage>>get(admin.connection.invoke(MESSAGES, "RecentMessages", "mods", 1)).get(0);
        CompletableFuture<Long> deleted = new CompletableFuture<>();
        troll.connection.on("MessageDeleted", deleted::complete, Long.class);
        admin.invoke("DeleteMessage", message.id);
        assertEquals(message.id, TestHubTest.join(deleted, "MessageDeleted"));
        List<StoredMessage> none = get(admin.connection.invoke(MESSAGES, "RecentMessages", "mods", 10));
        assertEquals(0, none.size());

        admin.invoke("SendToRoom", "mods", "mine");
        StoredMessage mine = Clients.<List<StoredMessage>>get(admin.connection.invoke(MESSAGES, "RecentMessages", "mods", 1)).get(0);
        assertTrue(errorOf(troll.connection.invoke("DeleteMessage", mine.id)).getMessage()
                .contains("Only the author or an admin can delete a message."));

        assertEquals(1, (long) get(admin.connection.invoke(Long.class, "KickUser", "troll")));
        Exception closedWith = TestHubTest.join(troll.closed, "the kick to close the connection");
        assertNotNull(closedWith, "a kick closes with an error");
        assertTrue(closedWith.getMessage().contains("You were removed by mod."), closedWith.getMessage());
    }
}
