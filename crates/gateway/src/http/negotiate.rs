//! `POST {path}/negotiate`: creates a connection and answers with its ids and the endpoint's transports
//! (negotiate version 0 when the client sends none, as signalrcore does; 1 otherwise), or with
//! `{"error": …}` and status 200 for a version the server refuses.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hubcast_protocol::negotiate::{NegotiateRequest, NegotiateResponse};

use super::{Body, Refusal, bytes, text};
use crate::GatewayInner;
use crate::auth::User;
use crate::endpoint::Endpoint;
use std::net::SocketAddr;

pub(super) fn negotiate<B>(
    inner: &GatewayInner,
    endpoint: &Arc<Endpoint>,
    request: Request<B>,
    user: Option<User>,
    remote: SocketAddr,
) -> Response<Body> {
    if request.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    }
    let (parts, _) = request.into_parts();
    let asked = NegotiateRequest::from_query(parts.uri.query().unwrap_or(""));
    let options = endpoint.options();
    let body = match asked.select_version(options.minimum_protocol_version) {
        Err(error) => NegotiateResponse::error(error.to_string()),
        Ok(version) => match inner.manager.create(
            endpoint.mount.clone(),
            version,
            user.map(|u| u.id),
            Some(remote.ip()),
        ) {
            Err(error) => {
                tracing::error!(%error, "cannot create a connection id");
                return text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
            }
            Ok(None) => return Refusal::TooManyConnections.response(&inner.metrics),
            Ok(Some(connection)) => {
                let stateful = options.allow_stateful_reconnects && asked.use_stateful_reconnect;
                if stateful {
                    connection.set_stateful_negotiated();
                }
                NegotiateResponse::connection(
                    version,
                    connection.id.to_string(),
                    connection.token.to_string(),
                    options.transports.iter().copied(),
                    stateful,
                )
            }
        },
    };
    let mut response = bytes(StatusCode::OK, "application/json", body.to_json().into());
    if let Some(hook) = &inner.negotiate_hook {
        hook(&parts, response.headers_mut());
    }
    response
}
