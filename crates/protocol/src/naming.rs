//! placeholder
use serde::{Deserialize, Serialize};
/// p
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NamingPolicy {
    /// c
    #[default]
    CamelCase,
    /// a
    AsDeclared,
}
/// w
pub fn to_json_writer<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
    _policy: NamingPolicy,
) -> serde_json::Result<()> {
    serde_json::to_writer(out, value)
}
/// r
pub fn from_json_str<'de, T: Deserialize<'de>>(text: &'de str) -> serde_json::Result<T> {
    serde_json::from_str(text)
}
