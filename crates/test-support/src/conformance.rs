//! `hubcast serve --conformance`: what the official SignalR client's functional tests expect of their
//! server (protocol notes §6.1): `/testhub` and `/testhub-nowebsockets` (PascalCase JSON, detailed
//! errors) with its streaming methods, the raw `/echo` endpoint, the `/redirect…` negotiate redirect,
//! `/clientresult/{connectionId}` (a client result), `/authorizedhub` with `/generateJwtToken`, and the
//! negotiate cookies;
//! plus `/bench`, the hub the load generator drives, and `/cluster`, which exposes every send target,
//! group change, client result and presence listing as a method so multi-node tests can drive them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use chrono::TimeZone;
use futures_util::stream;
use http::{HeaderValue, Response, StatusCode, header};
use hubcast_backplane::ConnectionId;
use hubcast_gateway::auth::JwtAuth;
use hubcast_gateway::hub::ClientStream;
use hubcast_gateway::{
    Body, Context, EchoHandler, GatewayBuilder, Hub, HubContext, HubError, HubOptions,
};
use hubcast_http::bytes as response_bytes;
use hubcast_protocol::dotnet;
use hubcast_protocol::negotiate::{NegotiateResponse, query_param};
use hubcast_protocol::{NamingPolicy, Transport};
use serde::{Deserialize, Serialize};

/// The state of the test hubs.
#[derive(Default)]
pub struct TestHub;

type Ctx = Context<TestHub>;

/// As in .NET, a missing or null `Name` binds as null and a missing `Value` as 0 (the Java client's
/// Gson leaves null fields out).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CustomObject {
    name: Option<String>,
    value: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ComplexObject {
    string: String,
    int_array: Vec<i32>,
    byte_array: dotnet::Bytes,
    guid: dotnet::Guid,
    date_time: dotnet::DateTime,
}

/// The test hub's methods.
pub fn test_hub(name: &str) -> Hub<TestHub> {
    Hub::builder(name, TestHub)
        // `string` in .NET: null binds, and comes back.
        .method("Echo", |_: Ctx, message: Option<String>| async move {
            Ok(message)
        })
        .method("GetCallerConnectionId", |ctx: Ctx| async move {
            Ok(ctx.connection_id().to_string())
        })
        .method("GetNumRedirects", |ctx: Ctx| async move {
            Ok(ctx
                .request()
                .query("numRedirects")
                .and_then(|n| n.parse::<i64>().ok())
                .unwrap_or(0))
        })
        .method("ThrowException", |_: Ctx, message: String| async move {
            Err::<(), _>(HubError::internal("InvalidOperationException", message))
        })
        .method("InvokeWithString", |ctx: Ctx, message: String| async move {
            ctx.clients().caller().send("Message", &(message,)).await?;
            Ok(())
        })
        .method(
            "SendCustomObject",
            |ctx: Ctx, object: CustomObject| async move {
                ctx.clients()
                    .caller()
                    .send("CustomObject", &(object,))
                    .await?;
                Ok(())
            },
        )
        .method("GetActiveTransportName", |ctx: Ctx| async move {
            Ok(ctx.transport().name())
        })
        .method(
            "EchoComplexObject",
            |_: Ctx, object: ComplexObject| async move { Ok(object) },
        )
        .method(
            "SendComplexObject",
            |_: Ctx| async move { Ok(complex_object()) },
        )
        .method("GetContentTypeHeader", |ctx: Ctx| async move {
            Ok(ctx.request().header("Content-Type").map(str::to_owned))
        })
        .method("GetHeader", |ctx: Ctx, name: String| async move {
            Ok(ctx.request().header(&name).map(str::to_owned))
        })
        .method("GetCookie", |ctx: Ctx, name: String| async move {
            Ok(ctx.request().cookie(&name))
        })
        .stream("Stream", |_: Ctx| async move {
            Ok(stream::iter(["a", "b", "c"].map(Ok::<_, HubError>)))
        })
        .stream("InfiniteStream", |ctx: Ctx| async move {
            let cancelled = ctx.cancellation();
            let caller = ctx.clients().caller();
            tokio::spawn(async move {
                cancelled.cancelled().await;
                let _ = caller.send("StreamCanceled", &NO_ARGS).await;
            });
            Ok(stream::pending::<Result<String, HubError>>())
        })
        .stream("EmptyStream", |_: Ctx| async move {
            Ok(stream::empty::<Result<i32, HubError>>())
        })
        .stream(
            "StreamThrowException",
            |_: Ctx, message: String| async move {
                Err::<stream::Empty<Result<String, HubError>>, _>(HubError::internal(
                    "InvalidOperationException",
                    message,
                ))
            },
        )
        .method(
            "StreamingConcat",
            |_: Ctx, mut parts: ClientStream<String>| async move {
                let mut all = String::new();
                while let Some(part) = parts.recv().await {
                    all.push_str(&part?);
                }
                Ok(all)
            },
        )
        .build()
}

fn complex_object() -> ComplexObject {
    ComplexObject {
        string: "hello world".to_owned(),
        int_array: vec![1, 2, 3],
        byte_array: dotnet::Bytes(vec![1, 2, 3]),
        guid: dotnet::Guid(uuid::Uuid::from_bytes([
            0, 1, 2, 3, 4, 5, 6, 7, 7, 6, 5, 4, 3, 2, 1, 0,
        ])),
        date_time: dotnet::DateTime(
            chrono::Utc
                .with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
                .single()
                .unwrap_or_default(),
        ),
    }
}

/// The load-test hub at `/bench`: `Broadcast(payload)` sends `Broadcast(payload)` to every connection,
/// `Join(group)` and `SendToGroup(group, payload)` exercise groups, `SendToUser(user, payload)` users.
/// The load generator uses it.
pub fn bench_hub() -> Hub<TestHub> {
    Hub::builder("Bench", TestHub)
        .method("Broadcast", |ctx: Ctx, payload: String| async move {
            ctx.clients().all().send("Broadcast", &(payload,)).await?;
            Ok(())
        })
        .method("Join", |ctx: Ctx, group: String| async move {
            ctx.groups().add(ctx.connection_id(), group).await?;
            Ok(())
        })
        .method(
            "SendToGroup",
            |ctx: Ctx, group: String, payload: String| async move {
                ctx.clients()
                    .group(group)
                    .send("Broadcast", &(payload,))
                    .await?;
                Ok(())
            },
        )
        .method(
            "SendToUser",
            |ctx: Ctx, user: String, payload: String| async move {
                ctx.clients()
                    .user(user)
                    .send("Broadcast", &(payload,))
                    .await?;
                Ok(())
            },
        )
        .build()
}

/// The multi-node test hub at `/cluster`: each send target, group change, client result and presence
/// listing of [`HubContext`] as a method. Sends invoke `Message(text)` on the recipients; `Ask(id,
/// question)` invokes `Ask(question)` on connection `id` and returns its answer.
pub fn cluster_hub() -> Hub<TestHub> {
    fn failed(error: impl std::fmt::Display) -> HubError {
        HubError::new(error.to_string())
    }
    Hub::builder("Cluster", TestHub)
        .method("Id", |ctx: Ctx| async move {
            Ok(ctx.connection_id().to_string())
        })
        .method("Broadcast", |ctx: Ctx, text: String| async move {
            ctx.clients().all().send("Message", &(text,)).await?;
            Ok(())
        })
        .method("Others", |ctx: Ctx, text: String| async move {
            ctx.clients().others().send("Message", &(text,)).await?;
            Ok(())
        })
        .method(
            "ToGroup",
            |ctx: Ctx, group: String, text: String| async move {
                ctx.clients().group(group).send("Message", &(text,)).await?;
                Ok(())
            },
        )
        .method(
            "ToGroupExcept",
            |ctx: Ctx, group: String, excluded: Vec<String>, text: String| async move {
                let excluded = excluded.into_iter().map(ConnectionId::from).collect();
                ctx.clients()
                    .group_except(group, excluded)
                    .send("Message", &(text,))
                    .await?;
                Ok(())
            },
        )
        .method(
            "ToGroups",
            |ctx: Ctx, groups: Vec<String>, text: String| async move {
                let groups = groups.into_iter().map(Into::into).collect();
                ctx.clients()
                    .groups_of(groups)
                    .send("Message", &(text,))
                    .await?;
                Ok(())
            },
        )
        .method(
            "ToUser",
            |ctx: Ctx, user: String, text: String| async move {
                ctx.clients().user(user).send("Message", &(text,)).await?;
                Ok(())
            },
        )
        .method(
            "ToUsers",
            |ctx: Ctx, users: Vec<String>, text: String| async move {
                let users = users.into_iter().map(Into::into).collect();
                ctx.clients().users(users).send("Message", &(text,)).await?;
                Ok(())
            },
        )
        .method(
            "ToConnections",
            |ctx: Ctx, ids: Vec<String>, text: String| async move {
                let ids = ids.into_iter().map(ConnectionId::from).collect();
                ctx.clients().clients(ids).send("Message", &(text,)).await?;
                Ok(())
            },
        )
        .method(
            "AddToGroup",
            |ctx: Ctx, id: String, group: String| async move {
                ctx.groups()
                    .add(&ConnectionId::from(id), group)
                    .await
                    .map_err(failed)
            },
        )
        .method(
            "RemoveFromGroup",
            |ctx: Ctx, id: String, group: String| async move {
                ctx.groups()
                    .remove(&ConnectionId::from(id), group)
                    .await
                    .map_err(failed)
            },
        )
        .method("Ask", |ctx: Ctx, id: String, question: String| async move {
            ctx.clients()
                .client(ConnectionId::from(id))
                .invoke_timeout::<String, _>("Ask", &(question,), std::time::Duration::from_secs(5))
                .await
                .map_err(failed)
        })
        .method("OnlineUsers", |ctx: Ctx| async move {
            let users = ctx.clients().online_users().await.map_err(failed)?;
            Ok(users
                .into_iter()
                .map(|(user, n)| (user.to_string(), n))
                .collect::<Vec<_>>())
        })
        .method("UserConnections", |ctx: Ctx, user: String| async move {
            let mut ids: Vec<String> = ctx
                .clients()
                .user_connections(&user.into())
                .await
                .map_err(failed)?
                .into_iter()
                .map(|id| id.to_string())
                .collect();
            ids.sort();
            Ok(ids)
        })
        .method("GroupMembers", |ctx: Ctx, group: String| async move {
            let mut members: Vec<(String, Option<String>)> = ctx
                .clients()
                .group_members(&group.into())
                .await
                .map_err(failed)?
                .into_iter()
                .map(|m| (m.connection.to_string(), m.user.map(|u| u.to_string())))
                .collect();
            members.sort();
            Ok(members)
        })
        .build()
}

/// The issuer and audience of the test server's tokens.
const TEST_ISSUER: &str = "SignalRTestServer";
const TEST_AUDIENCE: &str = "SignalRTests";

/// A token like the .NET test server's `/generateJwtToken`: NameIdentifier `testuser`, issuer
/// `SignalRTestServer`, audience `SignalRTests`, valid for 5 seconds (plus the validation leeway).
/// Signed with the conformance hubs' own random key: no other hub accepts it.
fn test_token(secret: &[u8]) -> Option<String> {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = serde_json::json!({
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier": "testuser",
        "iss": TEST_ISSUER,
        "aud": TEST_AUDIENCE,
        "nbf": now,
        "exp": now + 5,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .ok()
}

/// The test server's `UncreatableHub`, whose constructor needs a service nobody provides: every
/// connection completes its handshake, then closes with the error .NET sends when the hub cannot be
/// created.
fn uncreatable_hub() -> Hub<TestHub> {
    Hub::builder("UncreatableHub", TestHub)
        .on_connected(|_: Ctx| async move {
            Err(HubError::internal(
                "InvalidOperationException",
                "Unable to resolve service for type 'System.Object' while attempting to activate \
                 'FunctionalTests.UncreatableHub'.",
            ))
        })
        .build()
}

/// `/echoredirect…`: a method-preserving redirect (307) to the same path under `/echo`, query kept, as
/// the test server's middleware answers every method but OPTIONS (204 there, like its CORS middleware).
/// The location is absolute when the request names its host (node's EventSource polyfill follows no
/// relative redirect), relative otherwise (as .NET writes it).
fn echo_redirect(
    method: &http::Method,
    uri: &http::Uri,
    headers: &http::HeaderMap,
) -> Response<Body> {
    if method == http::Method::OPTIONS {
        return response_bytes(StatusCode::NO_CONTENT, "text/plain", Bytes::new());
    }
    let path = uri.path();
    let rest = path.get("/echoredirect".len()..).unwrap_or("");
    let origin = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .map(|host| {
            let https = headers
                .get("x-forwarded-proto")
                .is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https"));
            format!("{}://{host}", if https { "https" } else { "http" })
        })
        .unwrap_or_default();
    let location = match uri.query() {
        Some(query) => format!("{origin}/echo{rest}?{query}"),
        None => format!("{origin}/echo{rest}"),
    };
    let mut response = response_bytes(StatusCode::TEMPORARY_REDIRECT, "text/plain", Bytes::new());
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// No arguments (an empty array in both protocols).
const NO_ARGS: [(); 0] = [];

/// Filled in once the gateway is built: the `/clientresult/{id}` route invokes the test hub through it.
pub type TestHubHandle = Arc<OnceLock<HubContext>>;

/// Mounts the conformance endpoints on `builder`; fill the returned handle with the `TestHub` context
/// once the gateway is built. `/authorizedhub` accepts only the tokens of `/generateJwtToken`, signed
/// with a key made up for this process.
pub fn mount(
    builder: GatewayBuilder,
    base: &HubOptions,
) -> anyhow::Result<(GatewayBuilder, TestHubHandle)> {
    let secret = hubcast_protocol::ids::random_id()?.into_bytes();
    let auth = JwtAuth::hmac(&secret)
        .with_issuer(TEST_ISSUER)
        .with_audience(TEST_AUDIENCE);
    let handle: TestHubHandle = Arc::new(OnceLock::new());
    let options = HubOptions {
        enable_detailed_errors: true,
        json_naming_policy: NamingPolicy::AsDeclared,
        allow_stateful_reconnects: true,
        ..base.clone()
    };
    let no_websockets = HubOptions {
        transports: vec![Transport::ServerSentEvents, Transport::LongPolling],
        ..options.clone()
    };
    let authorized = HubOptions {
        require_authentication: true,
        ..options.clone()
    };
    let redirects = Arc::new(AtomicU64::new(0));
    let results_hub = handle.clone();
    let builder = builder
        .hub("/testhub", test_hub("TestHub"), options.clone())
        .hub(
            "/testhub-nowebsockets",
            test_hub("TestHubNoWebSockets"),
            no_websockets,
        )
        .connection_handler("/echo", EchoHandler, base.clone())
        .hub("/bench", bench_hub(), base.clone())
        .hub("/cluster", cluster_hub(), base.clone())
        .hub(
            "/authorizedhub",
            Hub::builder("AuthorizedHub", TestHub)
                // `string` in .NET: null binds, and comes back.
                .method("Echo", |_: Ctx, message: Option<String>| async move {
                    Ok(message)
                })
                .build(),
            authorized,
        )
        .endpoint_authentication("/authorizedhub", auth)
        .hub("/uncreatable", uncreatable_hub(), options)
        .route(
            "/echoredirect",
            Arc::new(|request| {
                let response = echo_redirect(request.method(), request.uri(), request.headers());
                Box::pin(async move { response })
            }),
        )
        .route(
            "/bad-negotiate",
            Arc::new(|request| {
                let status = if request.method() == http::Method::OPTIONS {
                    StatusCode::NO_CONTENT
                } else {
                    StatusCode::BAD_REQUEST
                };
                let body = Bytes::from_static(b"Some response from server");
                Box::pin(async move { response_bytes(status, "text/plain", body) })
            }),
        )
        .route(
            "/generatejwttoken",
            Arc::new(move |_| {
                let token = test_token(&secret);
                Box::pin(async move {
                    match token {
                        Some(token) => {
                            response_bytes(StatusCode::OK, "text/plain", Bytes::from(token))
                        }
                        None => response_bytes(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "text/plain",
                            Bytes::new(),
                        ),
                    }
                })
            }),
        )
        .route(
            "/redirect",
            Arc::new(move |request| {
                let count = redirects.fetch_add(1, Ordering::Relaxed) + 1;
                let base_url = query_param(request.uri().query().unwrap_or(""), "baseUrl")
                    .map(|v| v.into_owned())
                    .unwrap_or_default();
                let body = NegotiateResponse::redirect(
                    format!("{base_url}/testHub?numRedirects={count}"),
                    None,
                );
                Box::pin(async move {
                    response_bytes(
                        StatusCode::OK,
                        "application/json",
                        Bytes::from(body.to_json()),
                    )
                })
            }),
        )
        .route(
            "/clientresult/",
            Arc::new(move |request| {
                let hub = results_hub.get().cloned();
                let id = request
                    .uri()
                    .path()
                    .rsplit('/')
                    .next()
                    .unwrap_or("")
                    .to_owned();
                Box::pin(async move {
                    let Some(hub) = hub else {
                        return response_bytes(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "text/plain",
                            Bytes::new(),
                        );
                    };
                    let text = match hub
                        .client(ConnectionId::from(id))
                        .invoke::<i64, _>("Result", &NO_ARGS)
                        .await
                    {
                        Ok(value) => value.to_string(),
                        Err(error) => error.to_string(),
                    };
                    response_bytes(StatusCode::OK, "text/plain", Bytes::from(text))
                })
            }),
        )
        .negotiate_hook(Arc::new(|_, headers| {
            for cookie in [
                "testCookie=testValue; path=/",
                "testCookie2=testValue2; path=/",
                "expiredCookie=doesntmatter; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT",
            ] {
                headers.append(header::SET_COOKIE, HeaderValue::from_static(cookie));
            }
        }));
    Ok((builder, handle))
}
