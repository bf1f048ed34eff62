//! Tests of the .NET payload conventions.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use super::*;
use chrono::{TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// Serializes like the MessagePack hub protocol does.
fn to_msgpack<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    value
        .serialize(&mut rmp_serde::Serializer::new(&mut out).with_struct_map())
        .unwrap();
    out
}

fn from_msgpack<'a, T: Deserialize<'a>>(data: &'a [u8]) -> Result<T, rmp_serde::decode::Error> {
    rmp_serde::from_slice(data)
}

/// Same, through a reader (bytes are copied rather than borrowed).
fn from_msgpack_read<T: for<'a> Deserialize<'a>>(
    data: &[u8],
) -> Result<T, rmp_serde::decode::Error> {
    rmp_serde::from_read(std::io::Cursor::new(data))
}

fn hex(data: &[u8]) -> String {
    data.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn unhex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, nanos: u32) -> DateTime {
    DateTime(
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
            + chrono::Duration::nanoseconds(i64::from(nanos)),
    )
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap()
}

// ---- DateTime: MessagePack ----

#[test]
fn date_time_msgpack_32bit_form() {
    let value = utc(2000, 1, 1, 0, 0, 0, 0);
    let encoded = to_msgpack(&value);
    assert_eq!(hex(&encoded), "d6 ff 38 6d 43 80");
    assert_eq!(from_msgpack::<DateTime>(&encoded).unwrap(), value);
    assert_eq!(from_msgpack_read::<DateTime>(&encoded).unwrap(), value);
    // Epoch itself.
    assert_eq!(
        hex(&to_msgpack(&utc(1970, 1, 1, 0, 0, 0, 0))),
        "d6 ff 00 00 00 00"
    );
}

#[test]
fn date_time_msgpack_64bit_form() {
    let value = utc(2024, 5, 6, 7, 8, 9, 123_000_000);
    let encoded = to_msgpack(&value);
    assert_eq!(hex(&encoded), "d7 ff 1d 53 53 00 66 38 81 d9");
    assert_eq!(from_msgpack::<DateTime>(&encoded).unwrap(), value);
    assert_eq!(from_msgpack_read::<DateTime>(&encoded).unwrap(), value);
    // Seconds beyond u32 without nanos still fit the 64-bit form.
    let value = DateTime(chrono::DateTime::from_timestamp(1 << 32, 0).unwrap());
    let encoded = to_msgpack(&value);
    assert_eq!(hex(&encoded), "d7 ff 00 00 00 01 00 00 00 00");
    assert_eq!(from_msgpack::<DateTime>(&encoded).unwrap(), value);
    // Full nanosecond precision is kept; largest 34-bit seconds.
    let value = DateTime(chrono::DateTime::from_timestamp((1 << 34) - 1, 999_999_999).unwrap());
    let encoded = to_msgpack(&value);
    assert_eq!(encoded.len(), 10);
    assert_eq!(encoded[..2], [0xd7, 0xff]);
    assert_eq!(from_msgpack::<DateTime>(&encoded).unwrap(), value);
}

#[test]
fn date_time_msgpack_96bit_form() {
    let value = utc(1969, 12, 31, 23, 59, 59, 0);
    let encoded = to_msgpack(&value);
    assert_eq!(
        hex(&encoded),
        "c7 0c ff 00 00 00 00 ff ff ff ff ff ff ff ff"
    );
    assert_eq!(from_msgpack::<DateTime>(&encoded).unwrap(), value);

    let value = utc(1900, 1, 1, 0, 0, 0, 500_000_000);
    let encoded = to_msgpack(&value);
    assert_eq!(
        hex(&encoded),
        "c7 0c ff 1d cd 65 00 ff ff ff ff 7c 55 81 80"
    );
    assert_eq!(from_msgpack_read::<DateTime>(&encoded).unwrap(), value);

    let value = utc(2600, 1, 1, 0, 0, 0, 0);
    let encoded = to_msgpack(&value);
    assert_eq!(
        hex(&encoded),
        "c7 0c ff 00 00 00 00 00 00 00 04 a0 fe 72 80"
    );
    assert_eq!(from_msgpack::<DateTime>(&encoded).unwrap(), value);

    // First second past the 34-bit range.
    let value = DateTime(chrono::DateTime::from_timestamp(1 << 34, 0).unwrap());
    assert_eq!(to_msgpack(&value)[..3], [0xc7, 0x0c, 0xff]);

    // .NET DateTime.MinValue / MaxValue.
    for value in [
        utc(1, 1, 1, 0, 0, 0, 0),
        utc(9999, 12, 31, 23, 59, 59, 999_999_900),
    ] {
        let encoded = to_msgpack(&value);
        assert_eq!(encoded[..3], [0xc7, 0x0c, 0xff]);
        assert_eq!(from_msgpack::<DateTime>(&encoded).unwrap(), value);
    }
}

#[test]
fn date_time_msgpack_reads_non_minimal_forms() {
    // 2000-01-01T00:00:00Z in the 64-bit and 96-bit forms.
    let expected = utc(2000, 1, 1, 0, 0, 0, 0);
    let t64 = unhex("d7 ff 00 00 00 00 38 6d 43 80");
    let t96 = unhex("c7 0c ff 00 00 00 00 00 00 00 00 38 6d 43 80");
    assert_eq!(from_msgpack::<DateTime>(&t64).unwrap(), expected);
    assert_eq!(from_msgpack::<DateTime>(&t96).unwrap(), expected);
    // ext32 / ext16 headers with a 12-byte payload.
    let t96_ext16 = unhex("c8 00 0c ff 00 00 00 00 00 00 00 00 38 6d 43 80");
    assert_eq!(from_msgpack::<DateTime>(&t96_ext16).unwrap(), expected);
}

#[test]
fn date_time_msgpack_accepts_strings() {
    let encoded = to_msgpack("2024-05-06T07:08:09.123Z");
    assert_eq!(
        from_msgpack::<DateTime>(&encoded).unwrap(),
        utc(2024, 5, 6, 7, 8, 9, 123_000_000)
    );
    let encoded = to_msgpack("2000-01-01T02:00:00+02:00");
    assert_eq!(
        from_msgpack_read::<DateTime>(&encoded).unwrap(),
        utc(2000, 1, 1, 0, 0, 0, 0)
    );
}

#[test]
fn date_time_msgpack_rejects_malformed() {
    let bad = [
        "d4 ff 00",                                              // 1-byte payload
        "d5 ff 00 00",                                           // 2-byte payload
        "c7 05 ff 00 00 00 00 00",                               // 5-byte payload
        "c7 00 ff",                                              // empty payload
        "d8 ff 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00", // 16-byte payload
        "d6 05 38 6d 43 80",                                     // wrong extension type
        "d6 00 38 6d 43 80",                                     // wrong extension type
        "d7 ff ff ff ff fc 00 00 00 00",                         // 64-bit nanos > 999999999
        "c7 0c ff 3b 9a ca 00 00 00 00 00 00 00 00 00",          // 96-bit nanos = 1e9
        "c7 0c ff 00 00 00 00 7f ff ff ff ff ff ff ff",          // seconds out of range
        "d6 ff 38 6d 43",                                        // truncated
        "2a",                                                    // integer
        "c4 04 38 6d 43 80",                                     // bin
        "a3 61 62 63",                                           // unparsable string
        "c0",                                                    // nil
    ];
    for input in bad {
        let data = unhex(input);
        assert!(
            from_msgpack::<DateTime>(&data).is_err(),
            "{input} should fail"
        );
        assert!(
            from_msgpack_read::<DateTime>(&data).is_err(),
            "{input} should fail (read)"
        );
    }
}

// ---- DateTime: JSON ----

#[test]
fn date_time_json_output() {
    let cases = [
        (utc(2000, 1, 1, 0, 0, 0, 0), "2000-01-01T00:00:00Z"),
        (
            utc(2024, 5, 6, 7, 8, 9, 123_000_000),
            "2024-05-06T07:08:09.123Z",
        ),
        (
            utc(2024, 5, 6, 7, 8, 9, 100),
            "2024-05-06T07:08:09.0000001Z",
        ),
        (
            utc(2024, 5, 6, 7, 8, 9, 123_456_789),
            "2024-05-06T07:08:09.1234567Z",
        ),
        (utc(2024, 5, 6, 7, 8, 9, 99), "2024-05-06T07:08:09Z"),
        (
            utc(2024, 5, 6, 7, 8, 9, 500_000_000),
            "2024-05-06T07:08:09.5Z",
        ),
        (utc(1, 1, 1, 0, 0, 0, 0), "0001-01-01T00:00:00Z"),
        (
            utc(9999, 12, 31, 23, 59, 59, 999_999_900),
            "9999-12-31T23:59:59.9999999Z",
        ),
        (utc(1969, 7, 20, 20, 17, 40, 0), "1969-07-20T20:17:40Z"),
    ];
    for (value, text) in cases {
        assert_eq!(json(&value), format!("\"{text}\""));
        assert_eq!(value.to_string(), text);
    }
}

#[test]
fn date_time_json_leap_second_is_clamped() {
    let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
        .unwrap()
        .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
        .unwrap()
        .and_utc();
    assert_eq!(json(&DateTime(leap)), "\"2016-12-31T23:59:59.9999999Z\"");
    let back: DateTime = from_msgpack(&to_msgpack(&DateTime(leap))).unwrap();
    assert_eq!(back, utc(2016, 12, 31, 23, 59, 59, 999_999_999));
}

#[test]
fn date_time_json_input() {
    let cases = [
        ("2000-01-01T00:00:00Z", utc(2000, 1, 1, 0, 0, 0, 0)),
        ("2000-01-01T00:00:00z", utc(2000, 1, 1, 0, 0, 0, 0)),
        (
            "2024-05-06T07:08:09.123Z",
            utc(2024, 5, 6, 7, 8, 9, 123_000_000),
        ),
        (
            "2024-05-06T07:08:09.1234567Z",
            utc(2024, 5, 6, 7, 8, 9, 123_456_700),
        ),
        (
            "2024-05-06T07:08:09.123456789Z",
            utc(2024, 5, 6, 7, 8, 9, 123_456_789),
        ),
        (
            "2024-05-06T09:08:09.123+02:00",
            utc(2024, 5, 6, 7, 8, 9, 123_000_000),
        ),
        ("2024-05-06T00:08:09-07:00", utc(2024, 5, 6, 7, 8, 9, 0)),
        ("2024-05-06T07:08:09", utc(2024, 5, 6, 7, 8, 9, 0)),
        (
            "2024-05-06T07:08:09.1234567",
            utc(2024, 5, 6, 7, 8, 9, 123_456_700),
        ),
        (
            "2024-05-06 07:08:09.5",
            utc(2024, 5, 6, 7, 8, 9, 500_000_000),
        ),
        ("2000-01-01", utc(2000, 1, 1, 0, 0, 0, 0)),
        ("0001-01-01T00:00:00", utc(1, 1, 1, 0, 0, 0, 0)),
    ];
    for (text, expected) in cases {
        let parsed: DateTime = serde_json::from_str(&format!("\"{text}\"")).unwrap();
        assert_eq!(parsed, expected, "{text}");
    }
}

#[test]
fn date_time_json_rejects_malformed() {
    for input in [
        "\"\"",
        "\"yesterday\"",
        "\"2000-13-01T00:00:00Z\"",
        "\"2000-01-01T25:00:00Z\"",
        "\"2000-01-01T00:00:00+25:00\"",
        "\"2000-01-01T00:00:00Zjunk\"",
        "946684800",
        "null",
        "[]",
        "{}",
    ] {
        assert!(
            serde_json::from_str::<DateTime>(input).is_err(),
            "{input} should fail"
        );
    }
}

#[test]
fn date_time_round_trips() {
    for value in [
        utc(2000, 1, 1, 0, 0, 0, 0),
        utc(2024, 5, 6, 7, 8, 9, 123_456_700),
        utc(1900, 2, 28, 12, 0, 0, 1_000),
        utc(2600, 6, 1, 0, 0, 0, 100),
        utc(1, 1, 1, 0, 0, 0, 0),
        utc(9999, 12, 31, 23, 59, 59, 999_999_900),
    ] {
        let back: DateTime = serde_json::from_str(&json(&value)).unwrap();
        assert_eq!(back, value);
        let back: DateTime = from_msgpack(&to_msgpack(&value)).unwrap();
        assert_eq!(back, value);
    }
    // JSON truncates to 100 ns ticks, MessagePack keeps nanoseconds.
    let value = utc(2024, 5, 6, 7, 8, 9, 123_456_789);
    let back: DateTime = serde_json::from_str(&json(&value)).unwrap();
    assert_eq!(back, utc(2024, 5, 6, 7, 8, 9, 123_456_700));
    let back: DateTime = from_msgpack(&to_msgpack(&value)).unwrap();
    assert_eq!(back, value);
}

// ---- Bytes ----

#[test]
fn bytes_encodings() {
    let value = Bytes(vec![1, 2, 3]);
    assert_eq!(json(&value), "\"AQID\"");
    assert_eq!(hex(&to_msgpack(&value)), "c4 03 01 02 03");
    assert_eq!(json(&Bytes(vec![0xfb, 0xff])), "\"+/8=\"");
    assert_eq!(json(&Bytes(vec![0xfb])), "\"+w==\"");
    assert_eq!(json(&Bytes::default()), "\"\"");
    assert_eq!(hex(&to_msgpack(&Bytes::default())), "c4 00");
    let big = Bytes(vec![7; 300]);
    assert_eq!(to_msgpack(&big)[..3], [0xc5, 0x01, 0x2c]);
}

#[test]
fn bytes_round_trips() {
    for value in [
        Bytes::default(),
        Bytes(vec![0]),
        Bytes((0..=255).collect()),
        Bytes(vec![9; 70_000]),
    ] {
        let back: Bytes = serde_json::from_str(&json(&value)).unwrap();
        assert_eq!(back, value);
        let encoded = to_msgpack(&value);
        assert_eq!(from_msgpack::<Bytes>(&encoded).unwrap(), value);
        assert_eq!(from_msgpack_read::<Bytes>(&encoded).unwrap(), value);
    }
}

#[test]
fn bytes_lenient_input() {
    let expected = Bytes(vec![1, 2, 3]);
    assert_eq!(serde_json::from_str::<Bytes>("[1,2,3]").unwrap(), expected);
    assert_eq!(
        serde_json::from_str::<Bytes>("[]").unwrap(),
        Bytes::default()
    );
    assert_eq!(
        serde_json::from_str::<Bytes>("\"+w\"").unwrap(),
        Bytes(vec![0xfb])
    );
    assert_eq!(
        from_msgpack::<Bytes>(&unhex("93 01 02 03")).unwrap(),
        expected
    );
    assert_eq!(
        from_msgpack::<Bytes>(&to_msgpack("AQID")).unwrap(),
        expected
    );
    assert_eq!(
        from_msgpack_read::<Bytes>(&to_msgpack("AQID")).unwrap(),
        expected
    );
}

#[test]
fn bytes_rejects_malformed() {
    for input in [
        "\"!!!!\"",
        "\"AQ=D\"",
        "\"A\"",
        "[1,2,300]",
        "[-1]",
        "[1.5]",
        "[\"a\"]",
        "5",
        "{}",
        "null",
    ] {
        assert!(
            serde_json::from_str::<Bytes>(input).is_err(),
            "{input} should fail"
        );
    }
    for input in [
        "a4 21 21 21 21",    // "!!!!"
        "93 01 02 cd 01 2c", // [1, 2, 300]
        "2a",
        "c0",
        "d6 ff 38 6d 43 80",
        "c4 05 01 02", // truncated bin
    ] {
        let data = unhex(input);
        assert!(from_msgpack::<Bytes>(&data).is_err(), "{input} should fail");
        assert!(
            from_msgpack_read::<Bytes>(&data).is_err(),
            "{input} should fail (read)"
        );
    }
}

// ---- Guid ----

const GUID_TEXT: &str = "67e55044-10b1-426f-9247-bb680e5fe0c8";

fn sample_guid() -> Guid {
    Guid(uuid::Uuid::parse_str(GUID_TEXT).unwrap())
}

#[test]
fn guid_encodings() {
    let value = sample_guid();
    assert_eq!(json(&value), format!("\"{GUID_TEXT}\""));
    let mut expected = vec![0xd9, 36];
    expected.extend_from_slice(GUID_TEXT.as_bytes());
    assert_eq!(to_msgpack(&value), expected);
    assert_eq!(value.to_string(), GUID_TEXT);
    assert_eq!(
        json(&Guid::default()),
        "\"00000000-0000-0000-0000-000000000000\""
    );
}

#[test]
fn guid_round_trips_and_lenient_input() {
    let value = sample_guid();
    assert_eq!(serde_json::from_str::<Guid>(&json(&value)).unwrap(), value);
    assert_eq!(from_msgpack::<Guid>(&to_msgpack(&value)).unwrap(), value);
    assert_eq!(
        from_msgpack_read::<Guid>(&to_msgpack(&value)).unwrap(),
        value
    );
    for text in [
        "67E55044-10B1-426F-9247-BB680E5FE0C8",
        "{67e55044-10b1-426f-9247-bb680e5fe0c8}",
        "67e5504410b1426f9247bb680e5fe0c8",
        "urn:uuid:67e55044-10b1-426f-9247-bb680e5fe0c8",
    ] {
        assert_eq!(
            serde_json::from_str::<Guid>(&json(&text)).unwrap(),
            value,
            "{text}"
        );
        assert_eq!(
            from_msgpack::<Guid>(&to_msgpack(text)).unwrap(),
            value,
            "{text}"
        );
    }
    let mut bin = vec![0xc4, 16];
    bin.extend_from_slice(value.as_bytes());
    assert_eq!(from_msgpack::<Guid>(&bin).unwrap(), value);
    assert_eq!(from_msgpack_read::<Guid>(&bin).unwrap(), value);
}

#[test]
fn guid_rejects_malformed() {
    for input in [
        "\"\"",
        "\"67e55044-10b1-426f-9247-bb680e5fe0c\"",
        "\"67e55044-10b1-426f-9247-bb680e5fe0cz\"",
        "\"not a guid\"",
        "42",
        "null",
        "[1,2,3]",
    ] {
        assert!(
            serde_json::from_str::<Guid>(input).is_err(),
            "{input} should fail"
        );
    }
    let mut bin15 = vec![0xc4, 15];
    bin15.extend_from_slice(&[0; 15]);
    for data in [
        bin15,
        to_msgpack("not a guid"),
        unhex("2a"),
        unhex("c0"),
        unhex("d6 ff 38 6d 43 80"),
    ] {
        assert!(
            from_msgpack::<Guid>(&data).is_err(),
            "{} should fail",
            hex(&data)
        );
    }
}

// ---- In structs, Option and Vec ----

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    name: String,
    id: Guid,
    sent_at: DateTime,
    data: Bytes,
    count: i32,
    maybe_at: Option<DateTime>,
    maybe_data: Option<Bytes>,
    ids: Vec<Guid>,
    times: Vec<DateTime>,
}

fn sample_payload() -> Payload {
    Payload {
        name: "x".to_owned(),
        id: sample_guid(),
        sent_at: utc(2000, 1, 1, 0, 0, 0, 0),
        data: Bytes(vec![1, 2, 3]),
        count: 7,
        maybe_at: Some(utc(2024, 5, 6, 7, 8, 9, 123_000_000)),
        maybe_data: None,
        ids: vec![sample_guid(), Guid::default()],
        times: vec![
            utc(1969, 12, 31, 23, 59, 59, 0),
            utc(2000, 1, 1, 0, 0, 0, 0),
        ],
    }
}

#[test]
fn struct_json() {
    let value = sample_payload();
    let text = json(&value);
    assert_eq!(
        text,
        format!(
            "{{\"name\":\"x\",\"id\":\"{GUID_TEXT}\",\"sentAt\":\"2000-01-01T00:00:00Z\",\
             \"data\":\"AQID\",\"count\":7,\"maybeAt\":\"2024-05-06T07:08:09.123Z\",\
             \"maybeData\":null,\"ids\":[\"{GUID_TEXT}\",\"00000000-0000-0000-0000-000000000000\"],\
             \"times\":[\"1969-12-31T23:59:59Z\",\"2000-01-01T00:00:00Z\"]}}"
        )
    );
    assert_eq!(serde_json::from_str::<Payload>(&text).unwrap(), value);
    // Through serde_json::Value too (how a gateway may buffer arguments).
    let tree = serde_json::to_value(&value).unwrap();
    assert_eq!(serde_json::from_value::<Payload>(tree).unwrap(), value);
}

#[test]
fn struct_msgpack() {
    let value = sample_payload();
    let encoded = to_msgpack(&value);
    let mut expected = unhex("89 a4 6e 61 6d 65 a1 78 a2 69 64 d9 24");
    expected.extend_from_slice(GUID_TEXT.as_bytes());
    expected.extend(unhex("a6 73 65 6e 74 41 74 d6 ff 38 6d 43 80"));
    expected.extend(unhex("a4 64 61 74 61 c4 03 01 02 03"));
    expected.extend(unhex("a5 63 6f 75 6e 74 07"));
    expected.extend(unhex(
        "a7 6d 61 79 62 65 41 74 d7 ff 1d 53 53 00 66 38 81 d9",
    ));
    expected.extend(unhex("a9 6d 61 79 62 65 44 61 74 61 c0"));
    expected.extend(unhex("a3 69 64 73 92 d9 24"));
    expected.extend_from_slice(GUID_TEXT.as_bytes());
    expected.extend(unhex("d9 24"));
    expected.extend_from_slice(b"00000000-0000-0000-0000-000000000000");
    expected.extend(unhex("a5 74 69 6d 65 73 92"));
    expected.extend(unhex(
        "c7 0c ff 00 00 00 00 ff ff ff ff ff ff ff ff d6 ff 38 6d 43 80",
    ));
    assert_eq!(hex(&encoded), hex(&expected));
    assert_eq!(from_msgpack::<Payload>(&encoded).unwrap(), value);
    assert_eq!(from_msgpack_read::<Payload>(&encoded).unwrap(), value);
    // The array-struct form decodes too.
    let compact = rmp_serde::to_vec(&value).unwrap();
    assert_eq!(from_msgpack::<Payload>(&compact).unwrap(), value);
}

#[test]
fn option_and_vec_top_level() {
    let values: Vec<Option<DateTime>> = vec![None, Some(utc(2000, 1, 1, 0, 0, 0, 0))];
    let encoded = to_msgpack(&values);
    assert_eq!(hex(&encoded), "92 c0 d6 ff 38 6d 43 80");
    assert_eq!(
        from_msgpack::<Vec<Option<DateTime>>>(&encoded).unwrap(),
        values
    );
    assert_eq!(json(&values), "[null,\"2000-01-01T00:00:00Z\"]");
    let text = json(&values);
    assert_eq!(
        serde_json::from_str::<Vec<Option<DateTime>>>(&text).unwrap(),
        values
    );

    let blobs: Vec<Bytes> = vec![Bytes(vec![1]), Bytes::default()];
    assert_eq!(hex(&to_msgpack(&blobs)), "92 c4 01 01 c4 00");
    assert_eq!(json(&blobs), "[\"AQ==\",\"\"]");
    assert_eq!(
        from_msgpack::<Vec<Bytes>>(&to_msgpack(&blobs)).unwrap(),
        blobs
    );

    let maybe: Option<Guid> = Some(sample_guid());
    assert_eq!(
        from_msgpack::<Option<Guid>>(&to_msgpack(&maybe)).unwrap(),
        maybe
    );
    assert_eq!(from_msgpack::<Option<Guid>>(&unhex("c0")).unwrap(), None);
    assert_eq!(serde_json::from_str::<Option<Bytes>>("null").unwrap(), None);
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Plain {
    #[serde(with = "crate::dotnet::date_time")]
    at: chrono::DateTime<Utc>,
    #[serde(with = "crate::dotnet::bytes")]
    data: Vec<u8>,
    #[serde(with = "crate::dotnet::guid")]
    id: uuid::Uuid,
    note: String,
}

#[test]
fn with_modules_on_plain_types() {
    let value = Plain {
        at: *utc(2000, 1, 1, 0, 0, 0, 0),
        data: vec![1, 2, 3],
        id: *sample_guid(),
        note: "hi".to_owned(),
    };
    let text = json(&value);
    assert_eq!(
        text,
        format!(
            "{{\"at\":\"2000-01-01T00:00:00Z\",\"data\":\"AQID\",\"id\":\"{GUID_TEXT}\",\"note\":\"hi\"}}"
        )
    );
    assert_eq!(serde_json::from_str::<Plain>(&text).unwrap(), value);
    let encoded = to_msgpack(&value);
    let mut expected =
        unhex("84 a2 61 74 d6 ff 38 6d 43 80 a4 64 61 74 61 c4 03 01 02 03 a2 69 64 d9 24");
    expected.extend_from_slice(GUID_TEXT.as_bytes());
    expected.extend(unhex("a4 6e 6f 74 65 a2 68 69"));
    assert_eq!(hex(&encoded), hex(&expected));
    assert_eq!(from_msgpack::<Plain>(&encoded).unwrap(), value);
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Untagged {
    Event { at: DateTime, id: Guid, data: Bytes },
    Text(String),
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Outer {
    name: String,
    #[serde(flatten)]
    inner: Inner,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Inner {
    at: DateTime,
    id: Guid,
    data: Bytes,
}

/// serde buffers untagged enums and flattened structs in its `Content`,
/// whose deserializer claims to be human readable even for MessagePack.
#[test]
fn buffered_content_in_both_protocols() {
    let event = Untagged::Event {
        at: utc(2024, 5, 6, 7, 8, 9, 123_000_000),
        id: sample_guid(),
        data: Bytes(vec![1, 2, 3]),
    };
    let encoded = to_msgpack(&event);
    assert_eq!(from_msgpack::<Untagged>(&encoded).unwrap(), event);
    assert_eq!(from_msgpack_read::<Untagged>(&encoded).unwrap(), event);
    assert_eq!(
        serde_json::from_str::<Untagged>(&json(&event)).unwrap(),
        event
    );
    let text = Untagged::Text("hello".to_owned());
    assert_eq!(from_msgpack::<Untagged>(&to_msgpack(&text)).unwrap(), text);

    let outer = Outer {
        name: "n".to_owned(),
        inner: Inner {
            at: utc(1900, 1, 1, 0, 0, 0, 500_000_000),
            id: sample_guid(),
            data: Bytes(vec![0xfb, 0xff]),
        },
    };
    let encoded = to_msgpack(&outer);
    // Flattening still writes the extension value and bin.
    assert!(hex(&encoded).contains("c7 0c ff 1d cd 65 00 ff ff ff ff 7c 55 81 80"));
    assert!(hex(&encoded).contains("c4 02 fb ff"));
    assert_eq!(from_msgpack::<Outer>(&encoded).unwrap(), outer);
    assert_eq!(serde_json::from_str::<Outer>(&json(&outer)).unwrap(), outer);
}

/// Mutated and random input only ever yields errors.
#[test]
fn garbage_never_panics() {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as u8
    };
    let seeds = [
        to_msgpack(&sample_payload()),
        to_msgpack(&utc(2024, 5, 6, 7, 8, 9, 123_000_000)),
        to_msgpack(&utc(1900, 1, 1, 0, 0, 0, 500_000_000)),
        to_msgpack(&sample_guid()),
        json(&sample_payload()).into_bytes(),
        b"\"2024-05-06T07:08:09.1234567+02:00\"".to_vec(),
    ];
    for round in 0..4000 {
        let mut data = seeds[round % seeds.len()].clone();
        for _ in 0..=(next() % 4) {
            let len = data.len();
            if len == 0 {
                break;
            }
            let at = usize::from(next()) * 7 % len;
            match next() % 3 {
                0 => data[at] = next(),
                1 => data.truncate(at),
                _ => data.insert(at, next()),
            }
        }
        let _ = from_msgpack::<Payload>(&data);
        let _ = from_msgpack::<DateTime>(&data);
        let _ = from_msgpack::<Bytes>(&data);
        let _ = from_msgpack::<Guid>(&data);
        let _ = from_msgpack::<Untagged>(&data);
        let _ = serde_json::from_slice::<Payload>(&data);
        let _ = serde_json::from_slice::<DateTime>(&data);
    }
}

#[test]
fn conversions() {
    let now = *utc(2024, 5, 6, 7, 8, 9, 0);
    let wrapped = DateTime::from(now);
    assert_eq!(chrono::DateTime::<Utc>::from(wrapped), now);
    assert_eq!(wrapped.timestamp(), now.timestamp());

    let mut blob = Bytes::from(vec![1, 2]);
    blob.push(3);
    assert_eq!(blob.as_slice(), &[1, 2, 3]);
    assert_eq!(Vec::<u8>::from(blob.clone()), vec![1, 2, 3]);
    assert_eq!(Bytes::from(&[1u8, 2, 3][..]), blob);

    let id = uuid::Uuid::nil();
    assert_eq!(uuid::Uuid::from(Guid::from(id)), id);
    assert!(Guid::from(id).is_nil());
}
