//! Tests of the naming policy adapters.

#![allow(clippy::unwrap_used)]
use super::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

fn json<T: Serialize + ?Sized>(v: &T, policy: NamingPolicy) -> String {
    let mut out = Vec::new();
    to_json_writer(&mut out, v, policy).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn name_conversions() {
    let table = "from_user:fromUser _x:x user_id_2:userId2 __:__ ByteArray:byteArray \
        URLValue:urlValue ID:id A:a IOStream:ioStream already:already AB1:aB1 \
        intArray:intArray URL_path:urlPath :";
    for (declared, camel) in table.split_whitespace().map(|p| p.split_once(':').unwrap()) {
        assert_eq!(NamingPolicy::CamelCase.apply(declared), camel, "{declared}");
        assert_eq!(NamingPolicy::AsDeclared.apply(declared), declared);
    }
    assert_eq!(NamingPolicy::CamelCase.apply("ABC DEF"), "abc DEF");
    let cached = NamingPolicy::CamelCase.apply("cache_me");
    let again = NamingPolicy::CamelCase.apply("cache_me");
    assert!(std::ptr::eq(cached, again));
    assert_eq!(NamingPolicy::default(), NamingPolicy::CamelCase);
    let text = serde_json::to_string(&NamingPolicy::AsDeclared).unwrap();
    assert_eq!(text, "\"as-declared\"");
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Inner {
    field_one: u8,
    #[serde(rename = "RenamedField")]
    renamed: u8,
}

fn inner() -> Inner {
    Inner {
        field_one: 1,
        renamed: 2,
    }
}
const INNER: &str = r#"{"fieldOne":1,"renamedField":2}"#;

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
enum Choice {
    Unit,
    Boxed(Inner),
    Fields { some_field: u8, nested_inner: Inner },
    Tuple(Inner, u8),
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Wrapper(Inner);

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Outer {
    user_name: String,
    inner_list: Vec<Inner>,
    maybe_inner: Option<Inner>,
    by_key: BTreeMap<String, Inner>,
    pair: (Inner, u8),
    choices: Vec<Choice>,
    wrapped: Wrapper,
}

fn sample() -> Outer {
    let choices = vec![
        Choice::Unit,
        Choice::Boxed(inner()),
        Choice::Fields {
            some_field: 4,
            nested_inner: inner(),
        },
        Choice::Tuple(inner(), 5),
    ];
    Outer {
        user_name: "bob".into(),
        inner_list: vec![inner()],
        maybe_inner: Some(inner()),
        by_key: BTreeMap::from([("Some_Key".to_owned(), inner())]),
        pair: (inner(), 3),
        choices,
        wrapped: Wrapper(inner()),
    }
}

#[test]
fn serialize_renames_nested_fields_only() {
    let i = INNER;
    let choices = format!(
        r#"["Unit",{{"Boxed":{i}}},{{"Fields":{{"someField":4,"nestedInner":{i}}}}},{{"Tuple":[{i},5]}}]"#
    );
    let expected = format!(
        r#"{{"userName":"bob","innerList":[{i}],"maybeInner":{i},"byKey":{{"Some_Key":{i}}},"pair":[{i},3],"choices":{choices},"wrapped":{i}}}"#
    );
    assert_eq!(json(&sample(), NamingPolicy::CamelCase), expected);
    let declared = json(&sample(), NamingPolicy::AsDeclared);
    assert_eq!(declared, serde_json::to_string(&sample()).unwrap());
    assert!(declared.contains(r#""RenamedField":2"#));
}

#[test]
fn round_trips_both_policies() {
    for policy in [NamingPolicy::CamelCase, NamingPolicy::AsDeclared] {
        let text = json(&sample(), policy);
        let back: Outer = from_json_str(&text).unwrap();
        assert_eq!(back, sample(), "{policy:?}");
    }
}

#[derive(Deserialize, Debug, PartialEq)]
struct Msg {
    from_user: String,
    #[serde(rename = "intArray")]
    int_array: Vec<i32>,
    #[serde(default)]
    nested: Vec<Option<Inner>>,
}

#[test]
fn deserialize_matches_keys_loosely() {
    let want = Msg {
        from_user: "a".into(),
        int_array: vec![1],
        nested: vec![],
    };
    for text in [
        r#"{"fromUser":"a","intArray":[1]}"#,
        r#"{"FromUser":"a","IntArray":[1]}"#,
        r#"{"from_user":"a","int_array":[1]}"#,
        r#"{"FROMUSER":"a","intarray":[1],"unknown":{"x":1}}"#,
        r#"{"From\u0055ser":"a","intArray":[1]}"#,
    ] {
        assert_eq!(from_json_str::<Msg>(text).unwrap(), want, "{text}");
    }
    let text = r#"{"FromUser":"a","IntArray":[],"Nested":[null,{"FieldOne":1,"renamed_field":2}]}"#;
    let got: Msg = from_json_str(text).unwrap();
    assert_eq!(got.nested, vec![None, Some(inner())]);
    // Map keys are not remapped; map values are.
    let text = r#"{"Some_Key":{"FieldOne":1,"RenamedField":2}}"#;
    let map: BTreeMap<String, Inner> = from_json_str(text).unwrap();
    assert_eq!(map.get("Some_Key"), Some(&inner()));
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Strict {
    from_user: String,
}

#[test]
fn deny_unknown_fields_still_rejects() {
    assert!(from_json_str::<Strict>(r#"{"FromUser":"a"}"#).is_ok());
    let err = from_json_str::<Strict>(r#"{"FromUser":"a","bogus":1}"#).unwrap_err();
    assert!(err.to_string().contains("bogus"), "{err}");
}

#[derive(Deserialize)]
struct Borrowed<'a> {
    user_name: &'a str,
    #[serde(borrow)]
    other: std::borrow::Cow<'a, str>,
}

#[test]
fn borrowed_str_fields() {
    let text = String::from(r#"{"UserName":"bob","other":"x"}"#);
    let b: Borrowed<'_> = from_json_str(&text).unwrap();
    assert_eq!(b.user_name, "bob");
    assert!(matches!(b.other, std::borrow::Cow::Borrowed("x")));
}

#[test]
fn enums_round_trip() {
    for c in sample().choices {
        let text = json(&c, NamingPolicy::CamelCase);
        assert_eq!(from_json_str::<Choice>(&text).unwrap(), c, "{text}");
    }
    let text = r#"{"Fields":{"SomeField":1,"nested_inner":{"fieldOne":1,"RENAMEDFIELD":2}}}"#;
    let c: Choice = from_json_str(text).unwrap();
    assert_eq!(
        c,
        Choice::Fields {
            some_field: 1,
            nested_inner: inner()
        }
    );
}

/// Serializes and deserializes as whether its (de)serializer is human-readable.
#[derive(Debug, PartialEq)]
struct Probe(bool);

impl Serialize for Probe {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let readable = s.is_human_readable();
        s.serialize_bool(readable)
    }
}

impl<'de> Deserialize<'de> for Probe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let readable = d.is_human_readable();
        de::IgnoredAny::deserialize(d)?;
        Ok(Probe(readable))
    }
}

/// A compact (not human-readable) serializer of bools, through options and newtypes.
struct Compact;
type E = de::value::Error;
type Never = ser::Impossible<String, E>;

macro_rules! refuse {
    ($($m:ident$(<$g:ident>)?($($t:ty),*) -> $r:ty;)*) => {$(
        fn $m$(<$g: Serialize + ?Sized>)?(self, $(_: $t),*) -> Result<$r, E> {
            Err(ser::Error::custom("unsupported"))
        }
    )*};
}

impl Serializer for Compact {
    type Ok = String;
    type Error = E;
    type SerializeSeq = Never;
    type SerializeTuple = Never;
    type SerializeTupleStruct = Never;
    type SerializeTupleVariant = Never;
    type SerializeMap = Never;
    type SerializeStruct = Never;
    type SerializeStructVariant = Never;
    fn serialize_bool(self, v: bool) -> Result<String, E> {
        Ok(format!("readable={v}"))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<String, E> {
        v.serialize(self)
    }
    fn is_human_readable(&self) -> bool {
        false
    }
    refuse! {
        serialize_i8(i8) -> String; serialize_i16(i16) -> String;
        serialize_i32(i32) -> String; serialize_i64(i64) -> String;
        serialize_u8(u8) -> String; serialize_u16(u16) -> String;
        serialize_u32(u32) -> String; serialize_u64(u64) -> String;
        serialize_f32(f32) -> String; serialize_f64(f64) -> String;
        serialize_char(char) -> String; serialize_str(&str) -> String;
        serialize_bytes(&[u8]) -> String; serialize_none() -> String;
        serialize_unit() -> String;
        serialize_unit_struct(Str) -> String; serialize_unit_variant(Str, u32, Str) -> String;
        serialize_newtype_struct<T>(Str, &T) -> String;
        serialize_newtype_variant<T>(Str, u32, Str, &T) -> String;
        serialize_seq(Option<usize>) -> Never; serialize_tuple(usize) -> Never;
        serialize_tuple_struct(Str, usize) -> Never; serialize_map(Option<usize>) -> Never;
        serialize_tuple_variant(Str, u32, Str, usize) -> Never;
        serialize_struct(Str, usize) -> Never;
        serialize_struct_variant(Str, u32, Str, usize) -> Never;
    }
}

/// A compact deserializer offering `.0` nested `Some`s around a unit.
struct CompactDe(u8);
impl<'de> Deserializer<'de> for CompactDe {
    type Error = E;
    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, E> {
        match self.0 {
            0 => v.visit_unit(),
            n => v.visit_some(CompactDe(n - 1)),
        }
    }
    fn is_human_readable(&self) -> bool {
        false
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map struct
        enum identifier ignored_any
    }
}

#[test]
fn human_readable_is_forwarded() {
    fn compact<T: Serialize>(v: &T) -> Result<String, E> {
        v.serialize(RenameSerializer::new(Compact, NamingPolicy::CamelCase))
    }
    assert_eq!(compact(&Probe(true)).unwrap(), "readable=false");
    assert_eq!(compact(&Some(Probe(true))).unwrap(), "readable=false");
    assert_eq!(json(&[Probe(false)], NamingPolicy::CamelCase), "[true]");
    let p = Probe::deserialize(FieldMatchDeserializer::new(CompactDe(0))).unwrap();
    assert_eq!(p, Probe(false));
    let p = Option::<Probe>::deserialize(FieldMatchDeserializer::new(CompactDe(1))).unwrap();
    assert_eq!(p, Some(Probe(false)));
    assert_eq!(from_json_str::<Probe>("null").unwrap(), Probe(true));
}
