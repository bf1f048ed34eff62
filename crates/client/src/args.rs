//! Typed arguments: tuples of `serde` values become a hub message's argument list, and an incoming
//! argument list becomes a tuple again. `()` is "no arguments"; `(T,)` is one.

use hubcast_protocol::{Arguments, NamingPolicy, Protocol, RawValue};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Values that can be sent as the arguments of an invocation: tuples of up to eight `Serialize` values,
/// or an already built [`Arguments`] list.
pub trait ToArguments {
    /// Encodes every argument in `protocol`.
    fn to_arguments(&self, protocol: Protocol, naming: NamingPolicy) -> Result<Arguments>;
}

/// Values that can be built from the arguments of a server-to-client invocation: tuples of up to eight
/// `Deserialize` values (extra arguments are ignored, missing ones are an error), or the raw
/// [`Arguments`] themselves.
pub trait FromArguments: Sized {
    /// Decodes the argument list.
    fn from_arguments(arguments: &Arguments) -> Result<Self>;
}

impl ToArguments for Arguments {
    fn to_arguments(&self, _: Protocol, _: NamingPolicy) -> Result<Arguments> {
        Ok(self.clone())
    }
}

impl FromArguments for Arguments {
    fn from_arguments(arguments: &Arguments) -> Result<Self> {
        Ok(arguments.clone())
    }
}

pub(crate) fn encode<T: Serialize + ?Sized>(
    protocol: Protocol,
    value: &T,
    naming: NamingPolicy,
) -> Result<RawValue> {
    RawValue::encode(protocol, value, naming).map_err(Error::value)
}

pub(crate) fn decode<T: DeserializeOwned>(value: &RawValue) -> Result<T> {
    value.deserialize().map_err(Error::value)
}

fn argument<T: DeserializeOwned>(arguments: &Arguments, index: usize) -> Result<T> {
    let value = arguments.get(index).ok_or_else(|| {
        Error::Value(format!(
            "expected at least {} arguments, got {}",
            index + 1,
            arguments.len()
        ))
    })?;
    decode(value)
}

macro_rules! tuple_arguments {
    ($($name:ident $index:tt),*) => {
        impl<$($name: Serialize),*> ToArguments for ($($name,)*) {
            #[allow(unused_variables)]
            fn to_arguments(&self, protocol: Protocol, naming: NamingPolicy) -> Result<Arguments> {
                Ok(Arguments(vec![$(encode(protocol, &self.$index, naming)?),*]))
            }
        }

        impl<$($name: DeserializeOwned),*> FromArguments for ($($name,)*) {
            #[allow(unused_variables)]
            fn from_arguments(arguments: &Arguments) -> Result<Self> {
                Ok(($(argument::<$name>(arguments, $index)?,)*))
            }
        }
    };
}

tuple_arguments!();
tuple_arguments!(A 0);
tuple_arguments!(A 0, B 1);
tuple_arguments!(A 0, B 1, C 2);
tuple_arguments!(A 0, B 1, C 2, D 3);
tuple_arguments!(A 0, B 1, C 2, D 3, E 4);
tuple_arguments!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_arguments!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_arguments!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuples_round_trip_in_both_protocols() {
        for protocol in [Protocol::Json, Protocol::MessagePack] {
            let args = ("ann", 7, vec![1u8, 2])
                .to_arguments(protocol, NamingPolicy::CamelCase)
                .unwrap();
            assert_eq!(args.len(), 3);
            let (a, b, c): (String, i32, Vec<u8>) = FromArguments::from_arguments(&args).unwrap();
            assert_eq!((a.as_str(), b, c), ("ann", 7, vec![1, 2]));
        }
    }

    #[test]
    fn missing_and_mistyped_arguments_are_errors() {
        let args = ("ann",)
            .to_arguments(Protocol::Json, NamingPolicy::CamelCase)
            .unwrap();
        let missing = <(String, String)>::from_arguments(&args).unwrap_err();
        assert!(matches!(missing, Error::Value(ref m) if m.contains("at least 2")));
        assert!(matches!(
            <(i32,)>::from_arguments(&args),
            Err(Error::Value(_))
        ));
        assert!(
            ().to_arguments(Protocol::Json, NamingPolicy::CamelCase)
                .unwrap()
                .is_empty()
        );
    }
}
