//! Newtype ids shared by the gateway, the backplanes and the control API. They are cheap to clone
//! (`Arc<str>`) because the same id sits in several indexes at once.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Wraps a string.
            pub fn new(value: impl Into<Arc<str>>) -> Self {
                Self(value.into())
            }

            /// The id as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self::new(value)
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self::new(value)
            }
        }
    };
}

id!(
    /// The public id of a connection (`Context.ConnectionId` in .NET); never the secret token.
    ConnectionId
);
impl ConnectionId {
    /// A new random id, `{tag}.{random}` on a node with a routing tag (so a send to it goes straight
    /// to that node: [`node_of`]), else just `{random}`.
    pub fn generate(tag: Option<&str>) -> Result<Self, hubcast_protocol::ids::RandomError> {
        let random = hubcast_protocol::ids::random_id()?;
        Ok(Self::new(match tag {
            Some(tag) => format!("{tag}.{random}"),
            None => random,
        }))
    }
}

/// The node a connection id names (`{tag}.{random}`), if it names one.
pub fn node_of(connection: &ConnectionId) -> Option<&str> {
    connection
        .as_str()
        .split_once('.')
        .map(|(tag, _)| tag)
        .filter(|tag| !tag.is_empty())
}

id!(
    /// A user id, as taken from the authenticated identity.
    UserId
);
id!(
    /// A group name (case-sensitive, as in the .NET default lifetime manager).
    GroupName
);
