//! Property naming policy for hub payloads, with .NET `System.Text.Json` semantics.
//!
//! Why: .NET SignalR's JSON protocol writes property names in camelCase by default
//! (`JsonNamingPolicy.CamelCase`) and reads them case-insensitively
//! (`PropertyNameCaseInsensitive`), while Rust types declare snake_case fields. So a hub
//! chooses [`NamingPolicy::CamelCase`] (the default, what .NET clients expect) or
//! [`NamingPolicy::AsDeclared`] (the names exactly as serde declares them).
//!
//! How: this module applies the choice at runtime without an intermediate value tree.
//! [`RenameSerializer`] wraps any serde `Serializer` and renames struct and struct-variant
//! fields as they stream past; [`FieldMatchDeserializer`] wraps any serde `Deserializer`
//! and, wherever serde names the field list (`deserialize_struct`, struct variants), maps
//! each incoming key onto the declared field it matches ignoring ASCII case and `_`. Both
//! wrap every nested value, so the policy reaches all depths. Map keys, enum variant names
//! and type names are never renamed (.NET's `DictionaryKeyPolicy` is null by default).
//! Serde's `SerializeStruct` takes `&'static str` keys, so each distinct converted name is
//! leaked once into a global cache; only static declared names are converted, so the cache
//! is bounded by the program's types.
//!
//! Limits: serde serializes `#[serde(flatten)]` structs as maps and deserializes them, and
//! untagged / internally tagged enums, from a buffer it reads itself; fields reached that
//! way are neither renamed on output nor matched loosely on input. A tagged enum's tag and
//! content keys are struct fields to serde, so the policy renames them on output (an
//! internal tag is then read back exactly: use a lower-case tag such as `"type"`).

use serde::de::{self, DeserializeSeed, Deserializer, Visitor};
use serde::ser::{self, Serialize, Serializer};
use std::collections::HashMap;
use std::fmt;
use std::sync::{OnceLock, PoisonError, RwLock};

/// How declared (serde) field names are written on the wire.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum NamingPolicy {
    /// camelCase, like .NET's `JsonNamingPolicy.CamelCase` (`from_user` -> `fromUser`).
    #[default]
    CamelCase,
    /// The names exactly as serde declares them (after `#[serde(rename)]`).
    AsDeclared,
}

impl NamingPolicy {
    /// Returns the wire name of a declared field name; allocation-free once it is cached.
    pub fn apply(self, declared: &'static str) -> &'static str {
        let first_upper = declared.chars().next().is_some_and(char::is_uppercase);
        if self == NamingPolicy::AsDeclared || !(first_upper || declared.contains('_')) {
            return declared; // already camelCase: the common case never touches the cache
        }
        static CACHE: OnceLock<RwLock<HashMap<&'static str, &'static str>>> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        let read = cache.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(&name) = read.get(declared) {
            return name;
        }
        drop(read);
        let converted = camel_case(declared);
        let mut map = cache.write().unwrap_or_else(PoisonError::into_inner);
        map.entry(declared).or_insert_with(|| {
            if converted == declared {
                declared
            } else {
                Box::leak(converted.into_boxed_str())
            }
        })
    }
}

/// Names containing `_` are snake_case: the first word follows .NET's rule, later words get
/// an upper-case initial, underscores go (as serde's `rename_all = "camelCase"`: `_x` -> `x`).
fn camel_case(name: &str) -> String {
    if !name.contains('_') {
        return dotnet_camel(name);
    }
    let mut out = String::with_capacity(name.len());
    for word in name.split('_').filter(|w| !w.is_empty()) {
        if out.is_empty() {
            out.push_str(&dotnet_camel(word));
        } else {
            let mut chars = word.chars();
            out.extend(chars.next().into_iter().flat_map(char::to_uppercase));
            out.push_str(chars.as_str());
        }
    }
    if out.is_empty() { name.to_owned() } else { out }
}

/// .NET `JsonCamelCaseNamingPolicy`: unchanged unless the first char is upper case; else
/// lower-case the leading upper-case run, except its last letter when a non-upper-case char
/// other than a space follows ("URLValue" -> "urlValue", "ID" -> "id", "AB1" -> "aB1").
fn dotnet_camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars().peekable();
    let mut i = 0;
    while let Some(c) = chars.next() {
        if i <= 1 && !c.is_uppercase() {
            out.push(c);
            break;
        }
        match chars.peek() {
            Some(&next) if i > 0 && !next.is_uppercase() => {
                if next == ' ' {
                    out.extend(c.to_lowercase());
                } else {
                    out.push(c);
                }
                break;
            }
            _ => out.extend(c.to_lowercase()),
        }
        i += 1;
    }
    out.extend(chars);
    out
}

/// Serializes `value` as JSON into `out`, renaming struct fields and struct-variant fields
/// per `policy` (map keys, enum variant names and newtype/struct *type* names are NOT
/// renamed: .NET's `DictionaryKeyPolicy` is null by default).
pub fn to_json_writer<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
    policy: NamingPolicy,
) -> serde_json::Result<()> {
    let mut ser = serde_json::Serializer::new(out);
    match policy {
        NamingPolicy::AsDeclared => value.serialize(&mut ser),
        NamingPolicy::CamelCase => value.serialize(RenameSerializer::new(&mut ser, policy)),
    }
}

/// Deserializes JSON text, matching incoming object keys to the struct's declared field
/// names ignoring ASCII case and underscores (`"fromUser"`, `"FromUser"`, `"from_user"` all
/// match field `from_user`; `"IntArray"` matches a field declared `"intArray"`). Keys with
/// no match are passed through unchanged (so `#[serde(deny_unknown_fields)]` and
/// `#[serde(flatten)]` behave as usual for them).
pub fn from_json_str<'de, T: de::Deserialize<'de>>(text: &'de str) -> serde_json::Result<T> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = T::deserialize(FieldMatchDeserializer::new(&mut de))?;
    de.end()?;
    Ok(value)
}

// ------------------------------------------------------------------------ serialization

/// A `Serializer` adapter that renames struct and struct-variant field names per a
/// [`NamingPolicy`], at every depth, and forwards everything else to the inner serializer.
pub struct RenameSerializer<S> {
    inner: S,
    policy: NamingPolicy,
}

impl<S> RenameSerializer<S> {
    /// Wraps `inner`, applying `policy` to every struct field name it meets.
    pub fn new(inner: S, policy: NamingPolicy) -> Self {
        RenameSerializer { inner, policy }
    }
}

/// A value serialized through a [`RenameSerializer`] (propagates the policy).
struct Renamed<'a, T: ?Sized>(&'a T, NamingPolicy);

impl<T: Serialize + ?Sized> Serialize for Renamed<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(RenameSerializer::new(serializer, self.1))
    }
}

/// The compound state of a [`RenameSerializer`] (seq, tuple, map, struct and variant forms);
/// wraps every element so that the policy propagates.
pub struct RenameCompound<C>(C, NamingPolicy);

type Str = &'static str;

macro_rules! forward_ser {
    ($($m:ident($($a:ident: $t:ty),*);)*) => {$(
        fn $m(self, $($a: $t),*) -> Result<S::Ok, S::Error> { self.inner.$m($($a),*) }
    )*};
}
macro_rules! forward_ser_value {
    ($($m:ident($($a:ident: $t:ty),*);)*) => {$(
        fn $m<T: Serialize + ?Sized>(self, $($a: $t,)* v: &T) -> Result<S::Ok, S::Error> {
            self.inner.$m($($a,)* &Renamed(v, self.policy))
        }
    )*};
}
macro_rules! forward_ser_compound {
    ($($m:ident($($a:ident: $t:ty),*) -> $assoc:ident;)*) => {$(
        fn $m(self, $($a: $t),*) -> Result<Self::$assoc, S::Error> {
            Ok(RenameCompound(self.inner.$m($($a),*)?, self.policy))
        }
    )*};
}

impl<S: Serializer> Serializer for RenameSerializer<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = RenameCompound<S::SerializeSeq>;
    type SerializeTuple = RenameCompound<S::SerializeTuple>;
    type SerializeTupleStruct = RenameCompound<S::SerializeTupleStruct>;
    type SerializeTupleVariant = RenameCompound<S::SerializeTupleVariant>;
    type SerializeMap = RenameCompound<S::SerializeMap>;
    type SerializeStruct = RenameCompound<S::SerializeStruct>;
    type SerializeStructVariant = RenameCompound<S::SerializeStructVariant>;

    forward_ser! {
        serialize_bool(v: bool); serialize_i8(v: i8); serialize_i16(v: i16);
        serialize_i32(v: i32); serialize_i64(v: i64); serialize_i128(v: i128);
        serialize_u8(v: u8); serialize_u16(v: u16); serialize_u32(v: u32); serialize_u64(v: u64);
        serialize_u128(v: u128); serialize_f32(v: f32); serialize_f64(v: f64);
        serialize_char(v: char); serialize_str(v: &str); serialize_bytes(v: &[u8]);
        serialize_none(); serialize_unit(); serialize_unit_struct(name: Str);
        serialize_unit_variant(name: Str, index: u32, variant: Str);
    }
    forward_ser_value! {
        serialize_some(); serialize_newtype_struct(name: Str);
        serialize_newtype_variant(name: Str, index: u32, variant: Str);
    }
    forward_ser_compound! {
        serialize_seq(len: Option<usize>) -> SerializeSeq;
        serialize_tuple(len: usize) -> SerializeTuple;
        serialize_tuple_struct(name: Str, len: usize) -> SerializeTupleStruct;
        serialize_tuple_variant(name: Str, i: u32, var: Str, len: usize) -> SerializeTupleVariant;
        serialize_map(len: Option<usize>) -> SerializeMap;
        serialize_struct(name: Str, len: usize) -> SerializeStruct;
        serialize_struct_variant(name: Str, i: u32, var: Str, len: usize)
            -> SerializeStructVariant;
    }
    fn collect_str<T: fmt::Display + ?Sized>(self, v: &T) -> Result<S::Ok, S::Error> {
        self.inner.collect_str(v)
    }
    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

macro_rules! compound_elements {
    ($($tr:ident::$m:ident;)*) => {$(
        impl<C: ser::$tr> ser::$tr for RenameCompound<C> {
            type Ok = C::Ok;
            type Error = C::Error;
            fn $m<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), C::Error> {
                self.0.$m(&Renamed(v, self.1))
            }
            fn end(self) -> Result<C::Ok, C::Error> { self.0.end() }
        }
    )*};
}
compound_elements! {
    SerializeSeq::serialize_element; SerializeTuple::serialize_element;
    SerializeTupleStruct::serialize_field; SerializeTupleVariant::serialize_field;
}

macro_rules! compound_fields {
    ($($tr:ident;)*) => {$(
        impl<C: ser::$tr> ser::$tr for RenameCompound<C> {
            type Ok = C::Ok;
            type Error = C::Error;
            fn serialize_field<T>(&mut self, key: Str, v: &T) -> Result<(), C::Error>
            where
                T: Serialize + ?Sized,
            {
                self.0.serialize_field(self.1.apply(key), &Renamed(v, self.1))
            }
            fn skip_field(&mut self, key: Str) -> Result<(), C::Error> {
                self.0.skip_field(self.1.apply(key))
            }
            fn end(self) -> Result<C::Ok, C::Error> { self.0.end() }
        }
    )*};
}
compound_fields! { SerializeStruct; SerializeStructVariant; }

/// Keys go through the adapter too: a string key is never renamed, only struct fields
/// nested inside a key would be.
impl<C: ser::SerializeMap> ser::SerializeMap for RenameCompound<C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), C::Error> {
        self.0.serialize_key(&Renamed(key, self.1))
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), C::Error> {
        self.0.serialize_value(&Renamed(v, self.1))
    }
    fn serialize_entry<K, V>(&mut self, key: &K, v: &V) -> Result<(), C::Error>
    where
        K: Serialize + ?Sized,
        V: Serialize + ?Sized,
    {
        let policy = self.1;
        self.0
            .serialize_entry(&Renamed(key, policy), &Renamed(v, policy))
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

// ---------------------------------------------------------------------- deserialization

type Fields = &'static [&'static str];

/// A `Deserializer` adapter that matches object keys to a struct's declared field names
/// ignoring ASCII case and underscores, at every depth; everything else is forwarded.
pub struct FieldMatchDeserializer<D> {
    inner: D,
    /// Set while this deserializer reads a struct's key: that struct's declared fields.
    key_of: Fields,
}

impl<D> FieldMatchDeserializer<D> {
    /// Wraps `inner`.
    pub fn new(inner: D) -> Self {
        FieldMatchDeserializer { inner, key_of: &[] }
    }
}

/// The declared field that `key` matches ignoring ASCII case and `_`, unless it is exact.
fn remap(fields: Fields, key: &str) -> Option<Str> {
    if fields.is_empty() || fields.contains(&key) {
        return None;
    }
    fields.iter().copied().find(|field| loose_eq(field, key))
}

fn loose_eq(a: &str, b: &str) -> bool {
    fn fold(s: &str) -> impl Iterator<Item = u8> {
        s.bytes()
            .filter(|&c| c != b'_')
            .map(|c| c.to_ascii_lowercase())
    }
    fold(a).eq(fold(b))
}

/// A seed whose value is read through a [`FieldMatchDeserializer`].
struct Seed<S>(S, Fields);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;
    fn deserialize<D: Deserializer<'de>>(self, inner: D) -> Result<S::Value, D::Error> {
        let key_of = self.1;
        self.0.deserialize(FieldMatchDeserializer { inner, key_of })
    }
}

/// A wrapped visitor: nested accesses are wrapped, and strings remapped when reading a key.
/// `.1`: the declared fields of the struct being read (its map's keys are matched to them);
/// `.2`: set while reading a struct's key, that struct's fields.
struct Wrap<V>(V, Fields, Fields);

/// Wraps the seq, map, enum and variant accesses handed to a visitor.
struct Access<A>(A, Fields);

macro_rules! forward_de {
    ($($m:ident($($a:ident: $t:ty),*);)*) => {$(
        fn $m<V: Visitor<'de>>(self, $($a: $t,)* visitor: V) -> Result<V::Value, D::Error> {
            self.inner.$m($($a,)* Wrap(visitor, &[], self.key_of))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for FieldMatchDeserializer<D> {
    type Error = D::Error;

    forward_de! {
        deserialize_any(); deserialize_bool(); deserialize_i8(); deserialize_i16();
        deserialize_i32(); deserialize_i64(); deserialize_i128(); deserialize_u8();
        deserialize_u16(); deserialize_u32(); deserialize_u64(); deserialize_u128();
        deserialize_f32(); deserialize_f64(); deserialize_char(); deserialize_str();
        deserialize_string(); deserialize_bytes(); deserialize_byte_buf(); deserialize_option();
        deserialize_unit(); deserialize_unit_struct(name: Str);
        deserialize_newtype_struct(name: Str); deserialize_seq(); deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: Str, len: usize); deserialize_map();
        deserialize_identifier(); deserialize_ignored_any();
        deserialize_enum(name: Str, variants: Fields);
    }
    fn deserialize_struct<V>(self, name: Str, fields: Fields, v: V) -> Result<V::Value, D::Error>
    where
        V: Visitor<'de>,
    {
        self.inner
            .deserialize_struct(name, fields, Wrap(v, fields, self.key_of))
    }
    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($m:ident($($t:ty)?);)*) => {$(
        fn $m<E: de::Error>(self, $(v: $t)?) -> Result<V::Value, E> { self.0.$m($(v as $t)?) }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }
    forward_visit! {
        visit_bool(bool); visit_i8(i8); visit_i16(i16); visit_i32(i32); visit_i64(i64);
        visit_i128(i128); visit_u8(u8); visit_u16(u16); visit_u32(u32); visit_u64(u64);
        visit_u128(u128); visit_f32(f32); visit_f64(f64); visit_char(char);
        visit_none(); visit_unit();
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
        match remap(self.2, v) {
            Some(field) => self.0.visit_borrowed_str(field),
            None => self.0.visit_str(v),
        }
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<V::Value, E> {
        self.0.visit_borrowed_str(remap(self.2, v).unwrap_or(v))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<V::Value, E> {
        match remap(self.2, &v) {
            Some(field) => self.0.visit_borrowed_str(field),
            None => self.0.visit_string(v),
        }
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<V::Value, E> {
        match remap_bytes(self.2, v) {
            Some(field) => self.0.visit_borrowed_bytes(field.as_bytes()),
            None => self.0.visit_bytes(v),
        }
    }
    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<V::Value, E> {
        let field = remap_bytes(self.2, v);
        self.0.visit_borrowed_bytes(field.map_or(v, str::as_bytes))
    }
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<V::Value, E> {
        match remap_bytes(self.2, &v) {
            Some(field) => self.0.visit_borrowed_bytes(field.as_bytes()),
            None => self.0.visit_byte_buf(v),
        }
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.0.visit_some(FieldMatchDeserializer::new(d))
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.0.visit_newtype_struct(FieldMatchDeserializer::new(d))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.0.visit_seq(Access(seq, &[]))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(Access(map, self.1))
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.0.visit_enum(Access(data, &[]))
    }
}

fn remap_bytes(fields: Fields, key: &[u8]) -> Option<Str> {
    remap(fields, std::str::from_utf8(key).ok()?)
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Access<A> {
    type Error = A::Error;
    fn next_element_seed<T>(&mut self, s: T) -> Result<Option<T::Value>, A::Error>
    where
        T: DeserializeSeed<'de>,
    {
        self.0.next_element_seed(Seed(s, &[]))
    }
    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Access<A> {
    type Error = A::Error;
    fn next_key_seed<K>(&mut self, k: K) -> Result<Option<K::Value>, A::Error>
    where
        K: DeserializeSeed<'de>,
    {
        self.0.next_key_seed(Seed(k, self.1))
    }
    fn next_value_seed<T>(&mut self, v: T) -> Result<T::Value, A::Error>
    where
        T: DeserializeSeed<'de>,
    {
        self.0.next_value_seed(Seed(v, &[]))
    }
    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Access<A> {
    type Error = A::Error;
    type Variant = Access<A::Variant>;
    fn variant_seed<T>(self, s: T) -> Result<(T::Value, Self::Variant), A::Error>
    where
        T: DeserializeSeed<'de>,
    {
        let (value, variant) = self.0.variant_seed(Seed(s, &[]))?;
        Ok((value, Access(variant, &[])))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Access<A> {
    type Error = A::Error;
    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, s: T) -> Result<T::Value, A::Error> {
        self.0.newtype_variant_seed(Seed(s, &[]))
    }
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, Wrap(v, &[], &[]))
    }
    fn struct_variant<V: Visitor<'de>>(self, fields: Fields, v: V) -> Result<V::Value, A::Error> {
        self.0.struct_variant(fields, Wrap(v, fields, &[]))
    }
}

#[cfg(test)]
mod tests;
