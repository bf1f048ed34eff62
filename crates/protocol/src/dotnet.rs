//! .NET payload conventions for hub method parameters and results.
//!
//! This module owns the wire representation of the three .NET types whose
//! encoding differs between SignalR's two hub protocols, so that a hub written
//! against this gateway exchanges exactly the payloads that the ASP.NET Core
//! SignalR server produces and that the official JavaScript and .NET clients
//! expect:
//!
//! | type | JSON protocol (System.Text.Json) | MessagePack protocol (MessagePack-CSharp) |
//! | --- | --- | --- |
//! | [`DateTime`] | ISO-8601 string in UTC, `2024-05-06T07:08:09.123Z` | timestamp extension type `-1` |
//! | [`Bytes`] (`byte[]`) | standard base64 string with padding | `bin` |
//! | [`Guid`] | `"D"` format string, 36 lowercase chars | the same string |
//!
//! The JavaScript MessagePack decoder used by `@microsoft/signalr-protocol-msgpack`
//! turns extension type `-1` into a `Date`, and the .NET client turns it into a
//! `DateTime`; a plain string would reach both as a string.
//!
//! Each type picks its output from [`Serializer::is_human_readable`]:
//! `serde_json` (the JSON hub protocol) is human readable, while `rmp_serde`
//! (the MessagePack hub protocol, serialized with `.with_struct_map()`) is not.
//! MessagePack extension values go through `rmp_serde`'s
//! [`MSGPACK_EXT_STRUCT_NAME`](rmp_serde::MSGPACK_EXT_STRUCT_NAME) newtype
//! convention, whose payload is the tuple `(i8 tag, bytes)`.
//!
//! Use the newtypes ([`DateTime`], [`Bytes`], [`Guid`]) as field, parameter or
//! result types (they also work inside `Option` and `Vec`), or annotate a field
//! of the plain foreign type with `#[serde(with = "crate::dotnet::date_time")]`,
//! [`bytes`] or [`guid`]. Both paths share the same code.
//!
//! Input does not depend on `is_human_readable()`: every type reads its
//! values with `deserialize_any` and accepts whichever representation it
//! finds. This also keeps MessagePack input working where serde buffers values
//! in its private `Content` (untagged or internally tagged enums,
//! `#[serde(flatten)]`), whose deserializer always claims to be human readable.
//!
//! Input is lenient where clients are known to differ: date/times accept any
//! RFC 3339 offset, a string without offset (taken as UTC, as .NET does for
//! `DateTimeKind.Unspecified`) and a date alone; MessagePack date/times also
//! accept such strings; byte arrays also accept arrays of numbers (and base64
//! strings in MessagePack); GUIDs accept every form `uuid` parses and, in
//! MessagePack, a 16-byte `bin` in RFC 4122 (big-endian) byte order.

use std::fmt;
use std::ops::{Deref, DerefMut};

use serde::de::{Deserialize, Deserializer};
use serde::ser::{Serialize, Serializer};

/// Serializes a byte slice with `serialize_bytes` (a MessagePack `bin`, or
/// the payload of an extension value).
struct RawBytes<'a>(&'a [u8]);

impl Serialize for RawBytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// Deserializes a byte buffer through [`bytes::deserialize`] (used for the
/// payload of an extension value).
struct ByteBuf(Vec<u8>);

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        bytes::deserialize(deserializer).map(ByteBuf)
    }
}

/// Serializes a MessagePack extension value the way `rmp_serde` expects it.
fn serialize_ext<S: Serializer>(serializer: S, tag: i8, data: &[u8]) -> Result<S::Ok, S::Error> {
    serializer.serialize_newtype_struct(rmp_serde::MSGPACK_EXT_STRUCT_NAME, &(tag, RawBytes(data)))
}

/// Reads the `(tag, data)` payload of a MessagePack extension value handed to
/// `Visitor::visit_newtype_struct` by `rmp_serde`.
fn deserialize_ext<'de, D: Deserializer<'de>>(deserializer: D) -> Result<(i8, Vec<u8>), D::Error> {
    let (tag, ByteBuf(data)) = <(i8, ByteBuf)>::deserialize(deserializer)?;
    Ok((tag, data))
}

// ---------------------------------------------------------------------------
// DateTime
// ---------------------------------------------------------------------------

/// `#[serde(with = "crate::dotnet::date_time")]` for `chrono::DateTime<Utc>`.
///
/// JSON: an ISO-8601 UTC string such as `2024-05-06T07:08:09.123Z`, with the
/// fraction only when non-zero, trimmed of trailing zeros and truncated to 7
/// digits (100 ns ticks, the precision of .NET `DateTime`).
///
/// MessagePack: the timestamp extension type `-1`, in the smallest of its
/// 32-bit, 64-bit and 96-bit forms. Nanoseconds are kept in full (the .NET
/// reader truncates them to ticks itself).
///
/// Input accepts RFC 3339 with any offset (converted to UTC), a date/time
/// without offset (taken as UTC), a date alone (midnight UTC), and in
/// MessagePack all three timestamp forms as well as those strings.
pub mod date_time {
    use std::fmt;

    use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike, Utc};
    use serde::de::{self, Deserializer, Visitor};
    use serde::ser::Serializer;

    /// The MessagePack extension type of timestamps.
    const TIMESTAMP_EXT: i8 = -1;
    /// Largest valid nanoseconds field of a MessagePack timestamp.
    const MAX_NANOS: u32 = 999_999_999;
    /// Seconds of the 64-bit timestamp form are 34 bits wide.
    const SECS_34_MASK: u64 = (1 << 34) - 1;

    /// Serializes a UTC date/time as .NET SignalR does in the current protocol.
    ///
    /// # Errors
    /// Only those of the underlying serializer.
    pub fn serialize<S: Serializer>(
        value: &chrono::DateTime<Utc>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(&Iso(*value))
        } else {
            let (secs, nanos) = timestamp_parts(value);
            super::serialize_ext(
                serializer,
                TIMESTAMP_EXT,
                encode_timestamp(secs, nanos).as_slice(),
            )
        }
    }

    /// Deserializes a UTC date/time from either protocol's representation.
    ///
    /// # Errors
    /// An unparsable string, a MessagePack extension other than a valid
    /// timestamp, an out-of-range instant, or any other kind of value.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<chrono::DateTime<Utc>, D::Error> {
        deserializer.deserialize_any(DateTimeVisitor)
    }

    /// Replaces a leap second (nanoseconds >= 1e9 in chrono) with the last
    /// representable instant of the preceding second, as neither .NET nor the
    /// MessagePack timestamp have leap seconds.
    fn without_leap_second(value: chrono::DateTime<Utc>) -> chrono::DateTime<Utc> {
        if value.nanosecond() > MAX_NANOS {
            value.with_nanosecond(MAX_NANOS).unwrap_or(value)
        } else {
            value
        }
    }

    /// Unix seconds and nanoseconds (< 1e9) of a date/time.
    fn timestamp_parts(value: &chrono::DateTime<Utc>) -> (i64, u32) {
        let value = without_leap_second(*value);
        (value.timestamp(), value.timestamp_subsec_nanos())
    }

    /// One of the three MessagePack timestamp payloads.
    enum Timestamp {
        /// Seconds only, as u32.
        T32([u8; 4]),
        /// 30-bit nanoseconds and 34-bit seconds.
        T64([u8; 8]),
        /// u32 nanoseconds and i64 seconds.
        T96([u8; 12]),
    }

    impl Timestamp {
        const fn as_slice(&self) -> &[u8] {
            match self {
                Self::T32(b) => b,
                Self::T64(b) => b,
                Self::T96(b) => b,
            }
        }
    }

    /// Picks the smallest timestamp form that holds `secs` and `nanos`
    /// (`nanos` must be < 1e9 and so fits in 30 bits).
    fn encode_timestamp(secs: i64, nanos: u32) -> Timestamp {
        if let Ok(unsigned) = u64::try_from(secs)
            && unsigned & !SECS_34_MASK == 0
        {
            if nanos == 0
                && let Ok(secs32) = u32::try_from(unsigned)
            {
                return Timestamp::T32(secs32.to_be_bytes());
            }
            return Timestamp::T64(((u64::from(nanos) << 34) | unsigned).to_be_bytes());
        }
        let mut out = [0u8; 12];
        let parts = nanos.to_be_bytes().into_iter().chain(secs.to_be_bytes());
        for (slot, byte) in out.iter_mut().zip(parts) {
            *slot = byte;
        }
        Timestamp::T96(out)
    }

    /// Decodes a timestamp payload of 4, 8 or 12 bytes.
    fn decode_timestamp(data: &[u8]) -> Result<chrono::DateTime<Utc>, String> {
        let (secs, nanos) = match data.len() {
            4 => {
                let raw = <[u8; 4]>::try_from(data).map_err(|e| e.to_string())?;
                (i64::from(u32::from_be_bytes(raw)), 0)
            }
            8 => {
                let raw = <[u8; 8]>::try_from(data).map_err(|e| e.to_string())?;
                let value = u64::from_be_bytes(raw);
                let nanos = u32::try_from(value >> 34).map_err(|e| e.to_string())?;
                let secs = i64::try_from(value & SECS_34_MASK).map_err(|e| e.to_string())?;
                (secs, nanos)
            }
            12 => {
                let (nanos, secs) = data
                    .split_first_chunk::<4>()
                    .ok_or_else(|| "truncated timestamp".to_owned())?;
                let secs = <[u8; 8]>::try_from(secs).map_err(|e| e.to_string())?;
                (i64::from_be_bytes(secs), u32::from_be_bytes(*nanos))
            }
            len => {
                return Err(format!(
                    "invalid MessagePack timestamp length {len} (expected 4, 8 or 12)"
                ));
            }
        };
        if nanos > MAX_NANOS {
            return Err(format!("invalid MessagePack timestamp nanoseconds {nanos}"));
        }
        chrono::DateTime::from_timestamp(secs, nanos)
            .ok_or_else(|| format!("MessagePack timestamp {secs}s out of range"))
    }

    /// Parses the ISO-8601 forms .NET and the JS clients send.
    fn parse_iso(text: &str) -> Option<chrono::DateTime<Utc>> {
        if let Ok(value) = chrono::DateTime::parse_from_rfc3339(text) {
            return Some(value.with_timezone(&Utc));
        }
        // No offset: .NET's DateTimeKind.Unspecified, taken as UTC.
        for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
            if let Ok(value) = NaiveDateTime::parse_from_str(text, format) {
                return Some(value.and_utc());
            }
        }
        NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .and_then(|date| date.and_hms_opt(0, 0, 0))
            .map(|value| value.and_utc())
    }

    /// Formats a date/time the way System.Text.Json writes a UTC `DateTime`.
    pub(super) struct Iso(pub(super) chrono::DateTime<Utc>);

    impl fmt::Display for Iso {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let value = without_leap_second(self.0);
            let year = value.year();
            if (0..=9999).contains(&year) {
                write!(f, "{year:04}")?;
            } else {
                write!(f, "{year:+05}")?;
            }
            write!(
                f,
                "-{:02}-{:02}T{:02}:{:02}:{:02}",
                value.month(),
                value.day(),
                value.hour(),
                value.minute(),
                value.second()
            )?;
            let mut ticks = value.timestamp_subsec_nanos() / 100;
            if ticks != 0 {
                let mut digits = 7;
                while ticks.is_multiple_of(10) {
                    ticks /= 10;
                    digits -= 1;
                }
                write!(f, ".{ticks:0digits$}")?;
            }
            f.write_str("Z")
        }
    }

    struct DateTimeVisitor;

    impl<'de> Visitor<'de> for DateTimeVisitor {
        type Value = chrono::DateTime<Utc>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an ISO-8601 date/time string or a MessagePack timestamp (extension -1)")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            parse_iso(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
        }

        fn visit_newtype_struct<D: Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> Result<Self::Value, D::Error> {
            let (tag, data) = super::deserialize_ext(deserializer)?;
            if tag != TIMESTAMP_EXT {
                return Err(de::Error::custom(format!(
                    "expected MessagePack timestamp extension -1, found extension {tag}"
                )));
            }
            decode_timestamp(&data).map_err(de::Error::custom)
        }
    }
}

/// A .NET `DateTime` in UTC: an ISO-8601 string in JSON, a timestamp
/// extension value in MessagePack (see [`date_time`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DateTime(pub chrono::DateTime<chrono::Utc>);

impl Deref for DateTime {
    type Target = chrono::DateTime<chrono::Utc>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl From<chrono::DateTime<chrono::Utc>> for DateTime {
    fn from(value: chrono::DateTime<chrono::Utc>) -> Self {
        Self(value)
    }
}

impl From<DateTime> for chrono::DateTime<chrono::Utc> {
    fn from(value: DateTime) -> Self {
        value.0
    }
}

/// The JSON protocol's text, e.g. `2024-05-06T07:08:09.123Z`.
impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        date_time::Iso(self.0).fmt(f)
    }
}

impl Serialize for DateTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        date_time::serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for DateTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        date_time::deserialize(deserializer).map(Self)
    }
}

// ---------------------------------------------------------------------------
// Bytes
// ---------------------------------------------------------------------------

/// `#[serde(with = "crate::dotnet::bytes")]` for `Vec<u8>` (a .NET `byte[]`).
///
/// JSON: a standard base64 string with padding. MessagePack: `bin`.
///
/// Input accepts, in both protocols, a base64 string (padding optional), an
/// array of numbers 0..=255, and binary data.
pub mod bytes {
    use std::fmt;

    use base64::Engine as _;
    use base64::display::Base64Display;
    use base64::engine::DecodePaddingMode;
    use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
    use serde::de::{self, Deserializer, SeqAccess, Visitor};
    use serde::ser::Serializer;

    /// Standard alphabet, padding optional on input.
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );

    /// Cap on preallocation from an untrusted sequence length hint.
    const MAX_PREALLOC: usize = 64 * 1024;

    /// Serializes bytes as .NET SignalR does in the current protocol.
    ///
    /// # Errors
    /// Only those of the underlying serializer.
    pub fn serialize<S: Serializer>(value: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(&Base64Display::new(value, &STANDARD))
        } else {
            serializer.serialize_bytes(value)
        }
    }

    /// Deserializes bytes from either protocol's representation.
    ///
    /// # Errors
    /// Invalid base64, an array element that is not an integer 0..=255, or
    /// any other kind of value.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_any(BytesVisitor)
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("binary data, a base64 string or an array of bytes")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            LENIENT
                .decode(v)
                .map_err(|e| E::custom(format_args!("invalid base64: {e}")))
        }

        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
            Ok(v)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_PREALLOC));
            while let Some(byte) = seq.next_element::<u8>()? {
                out.push(byte);
            }
            Ok(out)
        }
    }
}

/// A .NET `byte[]`: base64 in JSON, `bin` in MessagePack (see [`bytes`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bytes(pub Vec<u8>);

impl Deref for Bytes {
    type Target = Vec<u8>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Bytes {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(value: Vec<u8>) -> Self {
        Self(value)
    }
}

impl From<&[u8]> for Bytes {
    fn from(value: &[u8]) -> Self {
        Self(value.to_vec())
    }
}

impl From<Bytes> for Vec<u8> {
    fn from(value: Bytes) -> Self {
        value.0
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        bytes::serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        bytes::deserialize(deserializer).map(Self)
    }
}

// ---------------------------------------------------------------------------
// Guid
// ---------------------------------------------------------------------------

/// `#[serde(with = "crate::dotnet::guid")]` for `uuid::Uuid` (a .NET `Guid`).
///
/// Both protocols: the 36-character lowercase hyphenated string (.NET's `"D"`
/// format; MessagePack-CSharp also writes `Guid` as a string).
///
/// Input accepts every string form `uuid` parses (upper case, braces, no
/// hyphens, `urn:uuid:`), and binary data of exactly 16 bytes in RFC 4122
/// (big-endian) order, which is not .NET's `Guid.ToByteArray()` order.
pub mod guid {
    use std::fmt;

    use serde::de::{self, Deserializer, Visitor};
    use serde::ser::Serializer;
    use uuid::Uuid;

    /// Serializes a GUID as .NET SignalR does in both protocols.
    ///
    /// # Errors
    /// Only those of the underlying serializer.
    pub fn serialize<S: Serializer>(value: &Uuid, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buffer = Uuid::encode_buffer();
        serializer.serialize_str(value.hyphenated().encode_lower(&mut buffer))
    }

    /// Deserializes a GUID from either protocol's representation.
    ///
    /// # Errors
    /// A string `uuid` cannot parse, binary data not exactly 16 bytes long,
    /// or any other kind of value.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Uuid, D::Error> {
        deserializer.deserialize_any(GuidVisitor)
    }

    struct GuidVisitor;

    impl Visitor<'_> for GuidVisitor {
        type Value = Uuid;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a GUID string or 16 bytes")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Uuid::try_parse(v).map_err(|e| E::custom(format_args!("invalid GUID: {e}")))
        }

        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
            Uuid::from_slice(v).map_err(|e| E::custom(format_args!("invalid GUID: {e}")))
        }
    }
}

/// A .NET `Guid`: the lowercase hyphenated string in both protocols (see
/// [`guid`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Guid(pub uuid::Uuid);

impl Deref for Guid {
    type Target = uuid::Uuid;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl From<uuid::Uuid> for Guid {
    fn from(value: uuid::Uuid) -> Self {
        Self(value)
    }
}

impl From<Guid> for uuid::Uuid {
    fn from(value: Guid) -> Self {
        value.0
    }
}

/// The wire text, e.g. `67e55044-10b1-426f-9247-bb680e5fe0c8`.
impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl Serialize for Guid {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        guid::serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for Guid {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        guid::deserialize(deserializer).map(Self)
    }
}

#[cfg(test)]
mod tests;
