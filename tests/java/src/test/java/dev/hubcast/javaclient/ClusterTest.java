package dev.hubcast.javaclient;

import static dev.hubcast.javaclient.Clients.WAIT_MS;
import static dev.hubcast.javaclient.Clients.await;
import static dev.hubcast.javaclient.Clients.build;
import static dev.hubcast.javaclient.Clients.builder;
import static dev.hubcast.javaclient.Clients.get;
import static dev.hubcast.javaclient.Clients.waitUntil;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.microsoft.signalr.HubConnection;
import dev.hubcast.javaclient.Clients.Protocol;
import dev.hubcast.javaclient.Clients.Transport;
import io.reactivex.rxjava3.core.Single;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Two hubcast nodes over one real Redis (started here on a free port, stopped by pid): a Java client on node
 * A joins a group, and a group send made on node B, by the official JavaScript client or by another Java
 * client, reaches it exactly once.
 */
class ClusterTest {
    static final String SECRET = "java-cluster-test-secret-of-enough-length";
    static Process redis;
    static HubcastServer nodeA;
    static HubcastServer nodeB;
    final List<HubConnection> open = new CopyOnWriteArrayList<>();

    @BeforeAll
    static void startCluster() throws Exception {
        int port;
        try (ServerSocket socket = new ServerSocket(0)) {
            port = socket.getLocalPort();
        }
        redis = new ProcessBuilder("redis-server", "--port", String.valueOf(port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--protected-mode", "no")
                .redirectErrorStream(true).start();
        Runtime.getRuntime().addShutdownHook(new Thread(redis::destroyForcibly));
        waitForLine(redis, "Ready to accept connections", 10_000);
        Map<String, String> env = Map.of(
                "HUBCAST_BACKPLANE", "redis://127.0.0.1:" + port,
                "HUBCAST_JWT_SECRET", SECRET,
                "HUBCAST_DEV_AUTH", "true",
                "HUBCAST_HISTORY", "none");
        nodeA = HubcastServer.start(env);
        nodeB = HubcastServer.start(env);
    }

    @AfterAll
    static void stopCluster() throws Exception {
        if (nodeA != null) {
            nodeA.close();
        }
        if (nodeB != null) {
            nodeB.close();
        }
        if (redis != null) {
            redis.destroyForcibly();
            redis.waitFor(10, TimeUnit.SECONDS);
        }
    }

    @AfterEach
    void stopClients() {
        open.forEach(Clients::stop);
        open.clear();
    }

    /** Reads {@code process}' output on a daemon thread until {@code text} appears. */
    static void waitForLine(Process process, String text, long ms) throws Exception {
        CompletableFuture<Void> seen = new CompletableFuture<>();
        StringBuffer output = new StringBuffer();
        Thread reader = new Thread(() -> {
            try (BufferedReader lines = new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8))) {
                String line;
                while ((line = lines.readLine()) != null) {
                    output.append(line).append('\n');
                    if (line.contains(text)) {
                        seen.complete(null);
                    }
                }
            } catch (IOException ignored) {
                // The process is gone.
            }
            seen.completeExceptionally(new IllegalStateException("exited before '" + text + "':\n" + output));
        }, "redis-output");
        reader.setDaemon(true);
        reader.start();
        try {
            seen.get(ms, TimeUnit.MILLISECONDS);
        } catch (Exception e) {
            process.destroyForcibly();
            throw new IllegalStateException("redis-server did not start: " + e.getMessage() + "\n" + output, e);
        }
    }

    static List<Arguments> matrix() {
        return Clients.matrix().collect(Collectors.toList());
    }

    /** A started {@code /cluster} client that records every {@code Message(text)}. */
    final class Member {
        final HubConnection connection;
        final List<String> got = new CopyOnWriteArrayList<>();
        final String id;

        Member(HubcastServer node, Transport transport, Protocol protocol) {
            connection = build(node.url + "/cluster", transport, protocol);
            connection.on("Message", got::add, String.class);
            Clients.started(connection);
            open.add(connection);
            id = get(connection.invoke(String.class, "Id"));
        }

        void waitFor(int count) {
            waitUntil(() -> got.size() >= count, WAIT_MS, () -> count + " messages, got " + got);
        }
    }

    /** Lets in-flight messages land, so duplicates would show. */
    static void settle() throws InterruptedException {
        Thread.sleep(300);
    }

    // ---- the official JavaScript client on the other node ----

    static Path jsClient() {
        String dir = System.getenv("HUBCAST_JS_CLIENT_DIR");
        Path path = dir == null || dir.isEmpty() ? null : Path.of(dir, "@microsoft", "signalr");
        Assumptions.assumeTrue(path != null && Files.isDirectory(path),
                "no @microsoft/signalr under HUBCAST_JS_CLIENT_DIR (" + dir + "): run npm ci in tests/node");
        return path;
    }

    /**
     * Runs {@code node -e} with the official JS client: connects to {@code url} (with a dev-login token of
     * {@code user} from {@code tokenNode} when given), invokes {@code method} with the JSON {@code args}, stops.
     */
    static void jsInvoke(String url, String user, HubcastServer tokenNode, String method, String argsJson) throws Exception {
        Path client = jsClient();
        String token = user == null ? "" : tokenNode.devLogin(user);
        String script = String.join("\n",
                "const signalR = require(process.env.JS_CLIENT);",
                "(async () => {",
                "  const token = process.env.JS_TOKEN;",
                "  const connection = new signalR.HubConnectionBuilder()",
                "    .withUrl(process.env.JS_URL, token ? { accessTokenFactory: () => token } : {})",
                "    .configureLogging(signalR.LogLevel.None).build();",
                "  await connection.start();",
                "  try {",
                "    await connection.invoke(process.env.JS_METHOD, ...JSON.parse(process.env.JS_ARGS));",
                "  } finally {",
                "    await connection.stop();",
                "  }",
                "})().catch((error) => { console.error(String(error)); process.exit(1); });");
        ProcessBuilder builder = new ProcessBuilder("node", "-e", script).redirectErrorStream(true);
        builder.environment().putAll(Map.of("JS_CLIENT", client.toString(), "JS_URL", url, "JS_TOKEN", token,
                "JS_METHOD", method, "JS_ARGS", argsJson));
        Process node = builder.start();
        if (!node.waitFor(20, TimeUnit.SECONDS)) {
            node.destroyForcibly();
            throw new AssertionError("node did not finish within 20 s");
        }
        String output = new String(node.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertEquals(0, node.exitValue(), "node -e failed: " + output);
    }

    @Test
    void connectionIdsNameTheirNode() {
        Member a = new Member(nodeA, Transport.WEBSOCKETS, Protocol.JSON);
        Member b = new Member(nodeB, Transport.WEBSOCKETS, Protocol.JSON);
        assertTrue(a.id.matches("[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]{22}"), a.id);
        assertNotEquals(a.id.split("\\.")[0], b.id.split("\\.")[0]);
        // The Java client's own id is the one the server uses.
        assertEquals(a.id, a.connection.getConnectionId());
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void aGroupSendFromTheJsClientOnNodeBReachesTheJavaClientOnNodeA(Transport transport, Protocol protocol) throws Exception {
        Clients.assumeProtocol(protocol);
        jsClient();
        String group = "java-js-" + transport.ordinal() + protocol.ordinal();
        Member a = new Member(nodeA, transport, protocol);
        await(a.connection.invoke("AddToGroup", a.id, group));
        jsInvoke(nodeB.url + "/cluster", null, null, "ToGroup", "[\"" + group + "\", \"from js on B\"]");
        a.waitFor(1);
        settle();
        assertEquals(List.of("from js on B"), a.got);
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void aGroupSendFromAJavaClientOnNodeBReachesTheJavaClientOnNodeA(Transport transport, Protocol protocol) throws Exception {
        Clients.assumeProtocol(protocol);
        String group = "java-java-" + transport.ordinal() + protocol.ordinal();
        Member a = new Member(nodeA, transport, protocol);
        Member b = new Member(nodeB, transport, protocol);
        await(a.connection.invoke("AddToGroup", a.id, group));
        await(b.connection.invoke("ToGroup", group, "from java on B"));
        a.waitFor(1);
        // Node B adds A's connection to another group; a send from A itself then reaches it too.
        await(b.connection.invoke("AddToGroup", a.id, group + "-remote"));
        await(a.connection.invoke("ToGroup", group + "-remote", "added by B"));
        a.waitFor(2);
        await(a.connection.invoke("RemoveFromGroup", a.id, group));
        await(b.connection.invoke("ToGroup", group, "after leaving"));
        settle();
        assertEquals(List.of("from java on B", "added by B"), a.got);
        assertEquals(List.of(), b.got);
    }

    @ParameterizedTest(name = "{0} + {1}")
    @MethodSource("matrix")
    void aClientResultAskedOnNodeBIsAnsweredByTheJavaClientOnNodeA(Transport transport, Protocol protocol) {
        Clients.assumeProtocol(protocol);
        Member a = new Member(nodeA, transport, protocol);
        Member b = new Member(nodeB, transport, protocol);
        a.connection.onWithResult("Ask", question -> Single.just("answer to " + question), String.class);
        assertEquals("answer to life", get(b.connection.invoke(String.class, "Ask", a.id, "life")));
    }

    @Test
    void aChatRoomMessageFromTheJsClientOnNodeBReachesTheJavaClientOnNodeA() throws Exception {
        jsClient();
        String token = nodeA.devLogin("javaann");
        HubConnection ann = builder(nodeA.url + "/hubs/chat", Transport.WEBSOCKETS, Protocol.JSON)
                .withAccessTokenProvider(Single.just(token)).build();
        List<String> heard = new CopyOnWriteArrayList<>();
        ann.on("ReceiveMessage", (from, message, utc) -> heard.add(from + ": " + message),
                String.class, String.class, String.class);
        Clients.started(ann);
        open.add(ann);
        await(ann.invoke("JoinRoom", "cluster-room"));
        // Node B signs the JS user in with the shared secret; its SendToRoom goes through Redis to node A.
        jsInvoke(nodeB.url + "/hubs/chat", "jsbob", nodeB, "SendToRoom", "[\"cluster-room\", \"hello from node B\"]");
        waitUntil(() -> heard.contains("jsbob: hello from node B"), WAIT_MS, () -> "the room message, got " + heard);
        settle();
        assertEquals(1, heard.stream().filter(m -> m.equals("jsbob: hello from node B")).count(), heard.toString());
    }
}
