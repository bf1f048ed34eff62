//! Authentication and authorization: every refused credential gets 401 with an empty body on negotiate
//! and transports; a connection belongs to its user; roles guard methods; `Clients.User` reaches every
//! connection of a user.

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::*;
use hubcast_gateway::HubOptions;
use hubcast_gateway::auth::JwtAuth;
use hubcast_protocol::{HubMessage, Protocol};

fn required() -> HubOptions {
    HubOptions {
        require_authentication: true,
        ..HubOptions::default()
    }
}

#[tokio::test]
async fn refused_credentials_get_401_with_an_empty_body() {
    let server = start_with(required(), Some(JwtAuth::hmac(SECRET))).await;
    let addr = server.addr;
    let negotiate = |auth: Option<String>| async move {
        let header = auth.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = header
            .as_deref()
            .map(|h| vec![("authorization", h)])
            .unwrap_or_default();
        http(
            addr,
            "POST",
            "/hub/negotiate?negotiateVersion=1",
            &headers,
            b"",
        )
        .await
    };
    for (what, token) in [
        ("missing", None),
        (
            "bad signature",
            Some(token(b"other secret", "ann", &[], 60)),
        ),
        ("expired", Some(token(SECRET, "ann", &[], -120))),
        ("garbage", Some("not.a.token".to_owned())),
    ] {
        let response = negotiate(token).await;
        assert_eq!((response.status, response.body.len()), (401, 0), "{what}");
    }
    assert_eq!(
        negotiate(Some(token(SECRET, "ann", &[], 60))).await.status,
        200
    );
    // The query parameter works on hub paths (browsers' WebSockets and EventSource).
    let query = format!(
        "/hub/negotiate?negotiateVersion=1&access_token={}",
        token(SECRET, "ann", &[], 60)
    );
    assert_eq!(http(addr, "POST", &query, &[], b"").await.status, 200);
    // Transports are guarded too.
    assert_eq!(ws_open(addr, "/hub").await.err(), Some(401));
    let (_, connection) = {
        let t = token(SECRET, "ann", &[], 60);
        let response = http(
            addr,
            "POST",
            "/hub/negotiate?negotiateVersion=1",
            &[("authorization", &format!("Bearer {t}"))],
            b"",
        )
        .await;
        let json = response.json();
        (
            json["connectionId"].as_str().unwrap().to_owned(),
            json["connectionToken"].as_str().unwrap().to_owned(),
        )
    };
    assert_eq!(
        http(addr, "GET", &format!("/hub?id={connection}"), &[], b"")
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn a_connection_belongs_to_its_user() {
    let server = start_with(required(), Some(JwtAuth::hmac(SECRET))).await;
    let addr = server.addr;
    let ann = format!("Bearer {}", token(SECRET, "ann", &[], 60));
    let bob = format!("Bearer {}", token(SECRET, "bob", &[], 60));
    let path = negotiated_path(addr, &ann).await;
    assert_eq!(
        http(addr, "GET", &path, &[("authorization", &ann)], b"")
            .await
            .status,
        200
    );
    // Another user cannot poll, post to or delete ann's connection.
    assert_eq!(
        http(addr, "GET", &path, &[("authorization", &bob)], b"")
            .await
            .status,
        403
    );
    assert_eq!(
        http(addr, "POST", &path, &[("authorization", &bob)], b"x")
            .await
            .status,
        403
    );
    assert_eq!(
        http(addr, "DELETE", &path, &[("authorization", &bob)], b"")
            .await
            .status,
        403
    );
    assert_eq!(
        http(addr, "DELETE", &path, &[("authorization", &ann)], b"")
            .await
            .status,
        202
    );
}

#[tokio::test]
async fn identity_roles_and_user_targets() {
    // Authentication optional: anonymous callers are welcome, tokens still identify users.
    let server = start_with(HubOptions::default(), Some(JwtAuth::hmac(SECRET))).await;
    let addr = server.addr;
    let open = |user: Option<(&str, &[&str])>| {
        let query =
            user.map(|(name, roles)| format!("?access_token={}", token(SECRET, name, roles, 60)));
        async move {
            HubClient::connect_to(
                addr,
                &format!("/hub{}", query.unwrap_or_default()),
                Protocol::Json,
                1,
            )
            .await
        }
    };
    let mut anonymous = open(None).await;
    let mut ann = open(Some(("ann", &[]))).await;
    let mut ann_again = open(Some(("ann", &["admin"]))).await;

    anonymous
        .send_json(r#"{"type":1,"invocationId":"1","target":"WhoAmI","arguments":[]}"#)
        .await;
    assert_eq!(
        result::<Option<String>>(completion(anonymous.next_non_ping(SECOND * 5).await).1),
        None
    );
    ann.send_json(r#"{"type":1,"invocationId":"1","target":"WhoAmI","arguments":[]}"#)
        .await;
    assert_eq!(
        result::<Option<String>>(completion(ann.next_non_ping(SECOND * 5).await).1).as_deref(),
        Some("ann")
    );

    ann.send_json(r#"{"type":1,"invocationId":"2","target":"Admin","arguments":[]}"#)
        .await;
    assert_eq!(
        error_text(completion(ann.next_non_ping(SECOND * 5).await).1),
        "Failed to invoke 'Admin' because user is unauthorized"
    );
    anonymous
        .send_json(r#"{"type":1,"invocationId":"2","target":"admin","arguments":[]}"#)
        .await;
    assert_eq!(
        error_text(completion(anonymous.next_non_ping(SECOND * 5).await).1),
        "Failed to invoke 'admin' because user is unauthorized"
    );
    ann_again
        .send_json(r#"{"type":1,"invocationId":"2","target":"Admin","arguments":[]}"#)
        .await;
    assert_eq!(
        result::<String>(completion(ann_again.next_non_ping(SECOND * 5).await).1),
        "admin things"
    );

    // Clients.User reaches both of ann's connections and nobody else.
    anonymous
        .send_json(r#"{"type":1,"target":"ToUser","arguments":["ann","hi ann"]}"#)
        .await;
    for client in [&mut ann, &mut ann_again] {
        let Some(HubMessage::Invocation(call)) = client.next_non_ping(SECOND * 5).await else {
            panic!()
        };
        assert_eq!(call.target, "ForUser");
    }
    assert!(
        anonymous
            .next_non_ping(std::time::Duration::from_millis(200))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn an_expiring_token_closes_its_connection_when_asked_to() {
    let options = HubOptions {
        close_on_authentication_expiration: true,
        ..required()
    };
    let server = start_with(options, Some(JwtAuth::hmac(SECRET))).await;
    let path = format!("/hub?access_token={}", token(SECRET, "ann", &[], 1));
    let mut client = HubClient::connect_to(server.addr, &path, Protocol::Json, 1).await;
    let started = std::time::Instant::now();
    let close = loop {
        match client.next(SECOND * 5).await.unwrap() {
            HubMessage::Close(close) => break close,
            _ => continue,
        }
    };
    assert!(close.allow_reconnect);
    assert_eq!(
        close.error.as_deref(),
        Some("Connection closed with an error.")
    );
    assert!(started.elapsed() <= std::time::Duration::from_secs(3));
    // Without the option, the same token keeps its connection.
    let server = start_with(required(), Some(JwtAuth::hmac(SECRET))).await;
    let path = format!("/hub?access_token={}", token(SECRET, "ann", &[], 1));
    let mut client = HubClient::connect_to(server.addr, &path, Protocol::Json, 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    client
        .send_json(r#"{"type":1,"invocationId":"1","target":"WhoAmI","arguments":[]}"#)
        .await;
    assert_eq!(
        result::<Option<String>>(completion(client.next_non_ping(SECOND * 5).await).1).as_deref(),
        Some("ann")
    );
}

#[tokio::test]
async fn session_cookies_sign_in_and_out() {
    use hubcast_sessions::SessionCookies;
    let sessions = SessionCookies::new(b"cookie secret", std::time::Duration::from_secs(3600));
    let server = start_with_sessions(required(), Some(JwtAuth::hmac(SECRET)), Some(sessions)).await;
    let addr = server.addr;
    // Exchanging a valid bearer token for a cookie.
    assert_eq!(
        http(addr, "POST", "/auth/login", &[], b"").await.status,
        401
    );
    let bearer = format!("Bearer {}", token(SECRET, "ann", &["admin"], 60));
    let login = login(addr, &bearer).await;
    assert_eq!(login.status, 200);
    let set_cookie = login.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let negotiate = http(
        addr,
        "POST",
        "/hub/negotiate?negotiateVersion=1",
        &[("cookie", &cookie)],
        b"",
    )
    .await;
    assert_eq!(negotiate.status, 200);
    // A tampered cookie is no cookie.
    let tampered = format!("{cookie}x");
    assert_eq!(
        http(
            addr,
            "POST",
            "/hub/negotiate?negotiateVersion=1",
            &[("cookie", &tampered)],
            b""
        )
        .await
        .status,
        401
    );
    // Behind https the cookie is Secure.
    let secure = http(
        addr,
        "POST",
        "/auth/login",
        &[("authorization", &bearer), ("x-forwarded-proto", "https")],
        b"",
    )
    .await;
    assert!(
        secure.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Secure")
    );
    // Logout clears it; the dev login is off unless enabled.
    let logout = http(addr, "POST", "/auth/logout", &[("cookie", &cookie)], b"").await;
    assert_eq!(logout.status, 204);
    assert!(
        logout.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        http(addr, "POST", "/auth/dev-login?user=eve", &[], b"")
            .await
            .status,
        404
    );

    // With the dev login, anyone signs in as anyone (development only) and gets a usable token.
    let sessions = SessionCookies::new(b"cookie secret", std::time::Duration::from_secs(3600))
        .with_dev_login();
    let dev = start_with_sessions(required(), None, Some(sessions)).await;
    let login = http(
        dev.addr,
        "POST",
        "/auth/dev-login?user=eve&role=admin",
        &[],
        b"",
    )
    .await;
    assert_eq!(login.status, 200);
    let access_token = login.json()["accessToken"].as_str().unwrap().to_owned();
    let path = format!("/hub?access_token={access_token}");
    let mut client = HubClient::connect_to(dev.addr, &path, Protocol::Json, 1).await;
    client
        .send_json(r#"{"type":1,"invocationId":"1","target":"Admin","arguments":[]}"#)
        .await;
    assert_eq!(
        result::<String>(completion(client.next_non_ping(SECOND * 5).await).1),
        "admin things"
    );
    assert_eq!(
        http(dev.addr, "POST", "/auth/dev-login", &[], b"")
            .await
            .status,
        400
    );
}

#[test]
fn algorithm_confusion_is_refused() {
    // A test key pair (generated for these tests; not a secret).
    let public = include_bytes!("rsa_public.pem");
    let private = include_bytes!("rsa_private.pem");
    let auth = JwtAuth::public_key_pem(public).unwrap();
    let now = jsonwebtoken::get_current_timestamp();
    let claims = serde_json::json!({ "sub": "ann", "exp": now + 60 });
    let rs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(private).unwrap(),
    )
    .unwrap();
    assert_eq!(auth.validate(&rs256).unwrap().id.as_str(), "ann");
    // HS256 "signed" with the public key as the HMAC secret: the classic confusion attack.
    let confused = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(public),
    )
    .unwrap();
    assert!(auth.validate(&confused).is_err());
}

/// `POST /auth/login` with `authorization`.
async fn login(addr: std::net::SocketAddr, authorization: &str) -> HttpResponse {
    http(
        addr,
        "POST",
        "/auth/login",
        &[("authorization", authorization)],
        b"",
    )
    .await
}

/// Negotiates a connection with `authorization` and returns its transport path.
async fn negotiated_path(addr: std::net::SocketAddr, authorization: &str) -> String {
    let json = http(
        addr,
        "POST",
        "/hub/negotiate?negotiateVersion=1",
        &[("authorization", authorization)],
        b"",
    )
    .await
    .json();
    format!("/hub?id={}", json["connectionToken"].as_str().unwrap())
}

/// A token signed with `secret` carrying `claims` (plus an `exp` a minute away).
fn signed(secret: &[u8], mut claims: serde_json::Value) -> String {
    claims["exp"] = (jsonwebtoken::get_current_timestamp() + 60).into();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

/// Regression (issue 17, item 1): with the session secret defaulting to the JWT secret, a token minted
/// for another audience or issuer fell back to the session validator and was accepted.
#[tokio::test]
async fn the_configured_issuer_and_audience_bind_every_bearer_token() {
    use hubcast_sessions::SessionCookies;
    let auth = JwtAuth::hmac(SECRET)
        .with_issuer("https://idp")
        .with_audience("hubcast");
    let sessions = SessionCookies::new(SECRET, std::time::Duration::from_secs(3600));
    let server = start_with_sessions(required(), Some(auth), Some(sessions)).await;
    let addr = server.addr;
    let negotiate = |token: String| async move {
        let bearer = format!("Bearer {token}");
        let headers = [("authorization", bearer.as_str())];
        let negotiate = http(
            addr,
            "POST",
            "/hub/negotiate?negotiateVersion=1",
            &headers,
            b"",
        );
        let login = http(addr, "POST", "/auth/login", &headers, b"");
        (negotiate.await.status, login.await.status)
    };
    let good = serde_json::json!({"sub": "ann", "iss": "https://idp", "aud": "hubcast"});
    assert_eq!(negotiate(signed(SECRET, good)).await, (200, 200));
    for (what, claims) in [
        (
            "other audience",
            serde_json::json!({"sub": "ann", "iss": "https://idp", "aud": "billing"}),
        ),
        (
            "other issuer",
            serde_json::json!({"sub": "ann", "iss": "https://evil", "aud": "hubcast"}),
        ),
        ("neither", serde_json::json!({"sub": "ann"})),
        (
            "session claims, signed with the secret itself",
            serde_json::json!({"sub": "ann", "iss": "hubcast", "aud": "hubcast-session",
                "typ": "session", "sid": "forged"}),
        ),
    ] {
        assert_eq!(
            negotiate(signed(SECRET, claims)).await,
            (401, 401),
            "{what}"
        );
    }
}

/// Regression (issue 17, item 4): a session outlived the token it was exchanged for, and the cookie still
/// worked after logout.
#[tokio::test]
async fn sessions_end_with_their_token_and_at_logout() {
    use hubcast_sessions::SessionCookies;
    let sessions = SessionCookies::new(b"cookie secret", std::time::Duration::from_secs(24 * 3600));
    let server = start_with_sessions(required(), Some(JwtAuth::hmac(SECRET)), Some(sessions)).await;
    let addr = server.addr;
    let bearer = format!("Bearer {}", token(SECRET, "ann", &[], 30));
    let login = login(addr, &bearer).await;
    assert_eq!(login.status, 200);
    let set_cookie = login.headers["set-cookie"].to_str().unwrap().to_owned();
    let max_age: u64 = set_cookie
        .split(';')
        .find_map(|part| part.trim().strip_prefix("Max-Age="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(max_age <= 30, "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let session_token = login.json()["accessToken"].as_str().unwrap().to_owned();
    let negotiate = |headers: Vec<(&'static str, String)>| async move {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        http(
            addr,
            "POST",
            "/hub/negotiate?negotiateVersion=1",
            &headers,
            b"",
        )
        .await
        .status
    };
    assert_eq!(negotiate(vec![("cookie", cookie.clone())]).await, 200);
    let as_bearer = ("authorization", format!("Bearer {session_token}"));
    assert_eq!(negotiate(vec![as_bearer.clone()]).await, 200);
    let logout = http(addr, "POST", "/auth/logout", &[("cookie", &cookie)], b"").await;
    assert_eq!(logout.status, 204);
    assert_eq!(negotiate(vec![("cookie", cookie)]).await, 401);
    assert_eq!(negotiate(vec![as_bearer]).await, 401);
}

/// Regression (issue 17, item 11): the connection went to whoever attached first, so another user with
/// a leaked connection token took it and locked the negotiating user out.
#[tokio::test]
async fn a_leaked_connection_token_is_useless_to_another_user() {
    let server = start_with(required(), Some(JwtAuth::hmac(SECRET))).await;
    let addr = server.addr;
    let ann = format!("Bearer {}", token(SECRET, "ann", &[], 60));
    let bob = format!("Bearer {}", token(SECRET, "bob", &[], 60));
    let path = negotiated_path(addr, &ann).await;
    // Bob comes first, on every transport request: refused, and nothing is attached.
    for method in ["GET", "POST", "DELETE"] {
        let response = http(addr, method, &path, &[("authorization", &bob)], b"x").await;
        assert_eq!(response.status, 403, "{method}");
    }
    let first = http(addr, "GET", &path, &[("authorization", &ann)], b"").await;
    assert_eq!(first.status, 200);
}
