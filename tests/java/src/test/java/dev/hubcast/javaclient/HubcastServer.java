package dev.hubcast.javaclient;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * One `hubcast serve --conformance` process on ephemeral ports (or a given listen port, to restart a
 * server where its clients expect it). Ready once it has logged its address and its admin listener
 * answers {@code /ready}. {@link #close()} stops it with SIGTERM, then SIGKILL after 3 s.
 */
final class HubcastServer implements AutoCloseable {
    private static final Duration START_TIMEOUT = Duration.ofSeconds(20);
    private static final Pattern LISTENING = Pattern.compile("listening on 127\\.0\\.0\\.1:(\\d+)");
    private static final Pattern ADMIN = Pattern.compile("admin=127\\.0\\.0\\.1:(\\d+)");
    static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

    private final Process process;
    private final StringBuffer log = new StringBuffer();
    final int port;
    final int adminPort;
    final String url;

    /** The binary: HUBCAST_BIN, else target/debug/hubcast of the repository. */
    static Path binary() {
        String fromEnv = System.getenv("HUBCAST_BIN");
        if (fromEnv != null && !fromEnv.isEmpty()) {
            return Path.of(fromEnv);
        }
        return Path.of(System.getProperty("user.dir"), "..", "..", "target", "debug", "hubcast").normalize();
    }

    static HubcastServer start() throws Exception {
        return start(0, Map.of());
    }

    static HubcastServer start(Map<String, String> env) throws Exception {
        return start(0, env);
    }

    /** Starts a server listening on {@code port} (0: any free one) with {@code env} added to the environment. */
    static HubcastServer start(int port, Map<String, String> env) throws Exception {
        return new HubcastServer(port, env);
    }

    private HubcastServer(int listenPort, Map<String, String> env) throws Exception {
        Path bin = binary();
        if (!Files.isExecutable(bin)) {
            throw new IllegalStateException("no hubcast binary at " + bin + " (set HUBCAST_BIN)");
        }
        List<String> command = new ArrayList<>(List.of(bin.toString(), "serve", "--conformance",
                "--listen", "127.0.0.1:" + listenPort, "--admin-listen", "127.0.0.1:0"));
        ProcessBuilder builder = new ProcessBuilder(command);
        Map<String, String> environment = builder.environment();
        environment.putIfAbsent("HUBCAST_HISTORY", "none");
        environment.putAll(env);
        environment.put("NO_COLOR", "1");
        builder.redirectOutput(ProcessBuilder.Redirect.DISCARD);
        process = builder.start();
        Runtime.getRuntime().addShutdownHook(new Thread(process::destroyForcibly));

        CompletableFuture<int[]> ports = new CompletableFuture<>();
        Thread reader = new Thread(() -> {
            try (BufferedReader lines = new BufferedReader(
                    new InputStreamReader(process.getErrorStream(), StandardCharsets.UTF_8))) {
                String line;
                while ((line = lines.readLine()) != null) {
                    log.append(line).append('\n');
                    Matcher listening = LISTENING.matcher(line);
                    Matcher admin = ADMIN.matcher(line);
                    if (listening.find() && admin.find()) {
                        ports.complete(new int[] {Integer.parseInt(listening.group(1)), Integer.parseInt(admin.group(1))});
                    }
                }
            } catch (IOException ignored) {
                // The process is gone.
            }
            ports.completeExceptionally(new IllegalStateException("hubcast exited early; stderr:\n" + log));
        }, "hubcast-stderr");
        reader.setDaemon(true);
        reader.start();

        int[] found;
        try {
            found = ports.get(START_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
        } catch (Exception e) {
            process.destroyForcibly();
            throw new IllegalStateException("hubcast did not start: " + e.getMessage() + "\nstderr:\n" + log, e);
        }
        port = found[0];
        adminPort = found[1];
        url = "http://127.0.0.1:" + port;
        waitReady();
    }

    private void waitReady() throws Exception {
        long deadline = System.nanoTime() + START_TIMEOUT.toNanos();
        HttpRequest ready = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + adminPort + "/ready"))
                .timeout(Duration.ofSeconds(2)).build();
        while (true) {
            try {
                if (HTTP.send(ready, HttpResponse.BodyHandlers.ofString()).statusCode() == 200) {
                    return;
                }
            } catch (IOException notYet) {
                // Not listening yet.
            }
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException("hubcast never answered /ready; stderr:\n" + log);
            }
            Thread.sleep(20);
        }
    }

    long pid() {
        return process.pid();
    }

    String stderr() {
        return log.toString();
    }

    /** Kills the process at once (no shutdown at all) and waits for it. */
    void kill() throws InterruptedException {
        process.destroyForcibly();
        process.waitFor(10, TimeUnit.SECONDS);
    }

    /** SIGTERM, then SIGKILL after 3 s. */
    @Override
    public void close() throws InterruptedException {
        if (!process.isAlive()) {
            return;
        }
        process.destroy();
        if (!process.waitFor(3, TimeUnit.SECONDS)) {
            process.destroyForcibly();
            process.waitFor(10, TimeUnit.SECONDS);
        }
    }

    // ---- HTTP helpers ----

    static HttpResponse<String> get(String url) throws Exception {
        return HTTP.send(HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(10)).build(),
                HttpResponse.BodyHandlers.ofString());
    }

    static HttpResponse<String> post(String url) throws Exception {
        return HTTP.send(HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(10))
                .POST(HttpRequest.BodyPublishers.noBody()).build(), HttpResponse.BodyHandlers.ofString());
    }

    /** A token from the conformance endpoint {@code /generateJwtToken} (valid for 5 s). */
    String testToken() throws Exception {
        HttpResponse<String> response = get(url + "/generateJwtToken");
        if (response.statusCode() != 200) {
            throw new IllegalStateException("/generateJwtToken answered " + response.statusCode());
        }
        return response.body();
    }

    /** A chat token for {@code user} from the dev login ({@code POST /auth/dev-login?user=…}). */
    String devLogin(String user) throws Exception {
        return devLogin(user, null);
    }

    String devLogin(String user, String role) throws Exception {
        String query = "user=" + java.net.URLEncoder.encode(user, StandardCharsets.UTF_8)
                + (role == null ? "" : "&role=" + role);
        HttpResponse<String> response = post(url + "/auth/dev-login?" + query);
        if (response.statusCode() != 200) {
            throw new IllegalStateException("dev-login answered " + response.statusCode() + ": " + response.body());
        }
        Map<?, ?> body = new com.google.gson.Gson().fromJson(response.body(), HashMap.class);
        return (String) body.get("accessToken");
    }
}
