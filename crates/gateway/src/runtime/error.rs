//! Errors of hub methods and the exact texts clients get for them (protocol notes §4.3).
//!
//! A [`HubError`] made with [`HubError::new`] is the `HubException` of .NET: its message always reaches
//! the client. Any other error (converted with `?` from a `std::error::Error`, or made with
//! [`HubError::internal`]) is masked as `An unexpected error occurred invoking 'X' on the server.` unless
//! detailed errors are enabled.

use std::borrow::Cow;
use std::fmt;

/// An error returned by a hub method or lifecycle handler.
pub struct HubError {
    /// `None` for a HubException (always shown); otherwise the type name shown with detailed errors.
    type_name: Option<Cow<'static, str>>,
    message: String,
}

impl HubError {
    /// An error whose message is meant for the client (.NET `HubException`).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            type_name: None,
            message: message.into(),
        }
    }

    /// An internal error: clients see only the generic text unless detailed errors are on, then
    /// `<type_name>: <message>`.
    pub fn internal(type_name: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self {
            type_name: Some(type_name.into()),
            message: message.into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// `<Type>: <message>` as appended to client-facing texts; `None` when it must stay hidden.
    pub(crate) fn detail(&self, detailed: bool) -> Option<String> {
        match &self.type_name {
            None => Some(format!("HubException: {}", self.message)),
            Some(type_name) if detailed => Some(format!("{type_name}: {}", self.message)),
            Some(_) => None,
        }
    }
}

impl fmt::Debug for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.type_name {
            None => write!(f, "HubException({:?})", self.message),
            Some(t) => write!(f, "{t}({:?})", self.message),
        }
    }
}

impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HubError {
    fn from(error: E) -> Self {
        let full = std::any::type_name::<E>();
        let short = full.split('<').next().unwrap_or(full);
        let short = short.rsplit("::").next().unwrap_or(short);
        Self::internal(short.to_owned(), error.to_string())
    }
}

/// Runs hub code, turning a panic into an internal error (`what` names what panicked), so that a bug
/// in one method fails that call instead of the connection.
pub(crate) async fn catch_panic<T>(
    future: impl std::future::Future<Output = Result<T, HubError>>,
    what: &'static str,
) -> Result<T, HubError> {
    use futures_util::FutureExt;
    std::panic::AssertUnwindSafe(future)
        .catch_unwind()
        .await
        .unwrap_or_else(|_| {
            Err(HubError::internal(
                "PanicException",
                format!("{what} panicked"),
            ))
        })
}

/// `<prefix>` or `<prefix> <detail>`.
fn with_detail(prefix: String, detail: Option<String>) -> String {
    match detail {
        Some(detail) => format!("{prefix} {detail}"),
        None => prefix,
    }
}

/// The Completion error for a method that failed.
pub(crate) fn invocation_failed(target: &str, error: &HubError, detailed: bool) -> String {
    with_detail(
        format!("An unexpected error occurred invoking '{target}' on the server."),
        error.detail(detailed),
    )
}

/// The Completion error for a method the caller lacks the role for.
pub(crate) fn unauthorized(target: &str) -> String {
    format!("Failed to invoke '{target}' because user is unauthorized")
}

/// The Completion error for a call over its rate limit.
pub(crate) fn rate_limited(target: &str) -> String {
    format!("Failed to invoke '{target}' because the rate limit was exceeded.")
}

/// The Completion error for an unknown method.
pub(crate) fn unknown_method(target: &str) -> String {
    format!("Unknown hub method '{target}'")
}

/// The Completion error for arguments that could not be bound.
pub(crate) fn binding_failed(target: &str, detail: &BindingError, detailed: bool) -> String {
    match detail {
        // .NET raises these as HubExceptions from the invocation itself.
        BindingError::StreamCount { .. } => {
            invocation_failed(target, &HubError::new(detail.to_string()), detailed)
        }
        BindingError::IdInUse(_) => detail.to_string(),
        BindingError::Count { .. } | BindingError::Type(_) => with_detail(
            format!("Failed to invoke '{target}' due to an error on the server."),
            detailed.then(|| format!("InvalidDataException: {detail}")),
        ),
    }
}

/// The Completion error for a plain Invocation of a streaming method.
pub(crate) fn streaming_needs_stream_invocation(target: &str) -> String {
    format!(
        "The client attempted to invoke the streaming '{target}' method with a non-streaming invocation."
    )
}

/// The Completion error for a stream that failed after it started.
pub(crate) fn stream_failed(error: &HubError, detailed: bool) -> String {
    with_detail(
        "An error occurred on the server while streaming results.".to_owned(),
        error.detail(detailed),
    )
}

/// The Completion error for a StreamInvocation of a method that does not stream.
pub(crate) fn not_streaming(target: &str) -> String {
    format!(
        "The client attempted to invoke the non-streaming '{target}' method with a streaming invocation."
    )
}

/// Why arguments could not be bound to a method's parameters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// Wrong number of arguments.
    #[error("Invocation provides {provided} argument(s) but target expects {expected}.")]
    Count {
        /// Arguments the client sent.
        provided: usize,
        /// Parameters the method takes.
        expected: usize,
    },
    /// The client sent a different number of streams than the method takes.
    #[error("Client sent {provided} stream(s), Hub method expects {expected}.")]
    StreamCount {
        /// Streams the client named.
        provided: usize,
        /// Stream parameters the method takes.
        expected: usize,
    },
    /// A stream id of the invocation is already used by an open stream.
    #[error("Invocation ID '{0}' is already in use.")]
    IdInUse(String),
    /// An argument did not fit its parameter's type.
    #[error(
        "Error binding arguments. Make sure that the types of the provided values match the types of the hub method being invoked."
    )]
    Type(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_match_dotnet() {
        let hub = HubError::new("nope");
        assert_eq!(
            invocation_failed("Send", &hub, false),
            "An unexpected error occurred invoking 'Send' on the server. HubException: nope"
        );
        let internal = HubError::internal("InvalidOperationException", "An error occurred.");
        assert_eq!(
            invocation_failed("ThrowException", &internal, false),
            "An unexpected error occurred invoking 'ThrowException' on the server."
        );
        assert_eq!(
            invocation_failed("ThrowException", &internal, true),
            "An unexpected error occurred invoking 'ThrowException' on the server. InvalidOperationException: An error occurred."
        );
        let io: HubError = std::io::Error::other("disk").into();
        assert_eq!(format!("{io:?}"), "Error(\"disk\")");
        let count = BindingError::Count {
            provided: 2,
            expected: 1,
        };
        assert_eq!(
            binding_failed("Echo", &count, true),
            "Failed to invoke 'Echo' due to an error on the server. InvalidDataException: Invocation provides 2 argument(s) but target expects 1."
        );
        assert_eq!(
            binding_failed("Echo", &count, false),
            "Failed to invoke 'Echo' due to an error on the server."
        );
    }
}
