//! `hubcast chat`: a console client of the chat hub (the seed's appendix A console client, grown up),
//! built on `hubcast-client`. Lines typed go to the current room (or to everyone before joining one);
//! commands start with `/` (see [`HELP`]). Everything the hub sends is printed one line per event.

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hubcast_client::{Error, HubConnection, HubConnectionBuilder, Protocol};
use hubcast_protocol::dotnet::DateTime;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Options of `hubcast chat`.
#[derive(Debug, Args)]
pub(crate) struct ChatArgs {
    /// The chat hub's URL.
    #[arg(
        long,
        default_value = "http://127.0.0.1:8080/hubs/chat",
        env = "HUBCAST_CHAT_URL"
    )]
    url: String,
    /// Bearer token (a JWT the server accepts).
    #[arg(long, env = "HUBCAST_CHAT_TOKEN", conflicts_with = "user")]
    token: Option<String>,
    /// Sign in as this user through the server's dev login (dev mode servers only).
    #[arg(long)]
    user: Option<String>,
    /// Room to join at start.
    #[arg(long)]
    room: Option<String>,
    /// Hub protocol.
    #[arg(long, value_parser = ["json", "messagepack"], default_value = "json")]
    protocol: String,
}

const HELP: &str = "commands: /join ROOM, /leave, /dm USER TEXT, /history [N], /who, /members, \
/typing on|off, /help, /quit; other lines go to the current room (or everyone before /join)";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DevLogin {
    access_token: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HistoryEntry {
    id: i64,
    from_user: String,
    content: String,
    utc: DateTime,
}

fn clock(utc: &DateTime) -> String {
    utc.format("%H:%M:%S").to_string()
}

/// Signs in through `POST {origin}/auth/dev-login?user=NAME` and returns the access token.
async fn dev_login(hub_url: &str, user: &str) -> anyhow::Result<String> {
    let uri: http::Uri = hub_url.parse().context("invalid --url")?;
    let authority = uri.authority().context("--url has no host")?;
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("user", user)
        .finish();
    let request = http::Request::post(format!("http://{authority}/auth/dev-login?{query}"))
        .body(Full::new(Bytes::new()))?;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let response = client.request(request).await.context("dev login")?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!(
            "dev login refused ({status}): {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(serde_json::from_slice::<DevLogin>(&body)?.access_token)
}

/// Runs the console client until `/quit`, the end of input, or the connection closing for good.
pub(crate) async fn run(args: ChatArgs) -> anyhow::Result<()> {
    let token = match (&args.token, &args.user) {
        (Some(token), _) => Some(token.clone()),
        (None, Some(user)) => Some(dev_login(&args.url, user).await?),
        (None, None) => None,
    };
    let mut builder = HubConnectionBuilder::new(&args.url)
        .with_automatic_reconnect()
        .with_protocol(if args.protocol == "messagepack" {
            Protocol::MessagePack
        } else {
            Protocol::Json
        });
    if let Some(token) = token {
        builder = builder.with_access_token(token);
    }
    let connection = builder.build()?;
    register_handlers(&connection);
    let (closed_tx, mut closed) = tokio::sync::mpsc::unbounded_channel();
    connection.on_closed(move |error| {
        let _ = closed_tx.send(error);
    });
    connection.start().await.context("connecting")?;
    println!("connected to {} ({HELP})", args.url);

    let mut room = None;
    if let Some(first) = &args.room {
        room = join(&connection, first).await;
    }
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        let line = tokio::select! {
            line = lines.next_line() => line?,
            error = closed.recv() => {
                bail!("connection closed: {}", error.flatten().map_or("stopped".to_owned(), |e| e.to_string()));
            }
        };
        let Some(line) = line else { break };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line == "/quit" {
            break;
        }
        if let Err(error) = command(&connection, &mut room, line).await {
            println!("! {error}");
        }
    }
    connection.stop().await;
    println!("bye");
    Ok(())
}

fn register_handlers(connection: &HubConnection) {
    connection.on(
        "ReceiveMessage",
        |(user, message, utc): (String, String, DateTime)| {
            println!("[{}] {user}: {message}", clock(&utc));
        },
    );
    connection.on("Typing", |(user, typing): (String, bool)| {
        if typing {
            println!("* {user} is typing");
        } else {
            println!("* {user} stopped typing");
        }
    });
    connection.on("Mentioned", |(from, room, _id): (String, String, i64)| {
        println!("* {from} mentioned you in {room}");
    });
    connection.on("MessageDeleted", |(id,): (i64,)| {
        println!("* message {id} was deleted");
    });
    connection.on("ReadReceipt", |(user, room, id): (String, String, i64)| {
        println!("* {user} read {room} up to {id}");
    });
    connection.on_reconnecting(|error| println!("! connection lost ({error}); reconnecting"));
    connection.on_reconnected(|_| println!("* reconnected"));
}

async fn join(connection: &HubConnection, room: &str) -> Option<String> {
    match connection.invoke::<()>("JoinRoom", (room,)).await {
        Ok(()) => {
            println!("* joined {room}");
            let _ = history(connection, room, 20).await;
            Some(room.to_owned())
        }
        Err(error) => {
            println!("! cannot join {room}: {error}");
            None
        }
    }
}

async fn history(connection: &HubConnection, room: &str, take: i64) -> Result<(), Error> {
    let entries: Vec<HistoryEntry> = connection.invoke("RecentMessages", (room, take)).await?;
    println!("* history of {room}: {} messages", entries.len());
    for entry in entries {
        println!(
            "  #{} [{}] {}: {}",
            entry.id,
            clock(&entry.utc),
            entry.from_user,
            entry.content
        );
    }
    Ok(())
}

/// One input line.
async fn command(
    connection: &HubConnection,
    room: &mut Option<String>,
    line: &str,
) -> Result<(), Error> {
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    let rest = rest.trim();
    match word {
        "/help" => println!("{HELP}"),
        "/join" if !rest.is_empty() => {
            if let Some(joined) = join(connection, rest).await {
                *room = Some(joined);
            }
        }
        "/leave" => match room.take() {
            Some(left) => {
                connection
                    .invoke::<()>("LeaveRoom", (left.as_str(),))
                    .await?;
                println!("* left {left}");
            }
            None => println!("! not in a room"),
        },
        "/dm" => match rest.split_once(' ') {
            Some((user, text)) => {
                connection
                    .invoke::<()>("SendDirect", (user, text.trim()))
                    .await?
            }
            None => println!("! usage: /dm USER TEXT"),
        },
        "/history" => match room {
            Some(current) => {
                let take = rest.parse().unwrap_or(20);
                history(connection, current, take).await?;
            }
            None => println!("! join a room first"),
        },
        "/who" => {
            let users: Vec<String> = connection.invoke("OnlineUsers", ()).await?;
            println!("* online: {}", users.join(", "));
        }
        "/members" => match room {
            Some(current) => {
                let users: Vec<String> = connection
                    .invoke("RoomMembers", (current.as_str(),))
                    .await?;
                println!("* in {current}: {}", users.join(", "));
            }
            None => println!("! join a room first"),
        },
        "/typing" => {
            connection
                .invoke::<()>("SetTyping", (rest != "off",))
                .await?
        }
        _ if word.starts_with('/') => println!("! unknown command; {HELP}"),
        _ => match room {
            Some(current) => {
                connection
                    .invoke::<()>("SendToRoom", (current.as_str(), line))
                    .await?;
            }
            None => connection.invoke::<()>("SendMessage", (line,)).await?,
        },
    }
    Ok(())
}
