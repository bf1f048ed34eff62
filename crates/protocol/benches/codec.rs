//! Codec throughput: encode and decode of a small and a 1 KiB Invocation in both protocols, and the
//! cost of preparing a serialize-once message for fan-out. Numbers go in docs/benchmarks.md.

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hubcast_protocol::{
    HubMessage, Invocation, MessageReader, NamingPolicy, Protocol, SerializedMessage,
    encode_message,
};

fn small() -> HubMessage<(String, String, String), ()> {
    HubMessage::Invocation(Invocation::new(
        "ReceiveMessage",
        (
            "alice".to_owned(),
            "hello, world".to_owned(),
            "2026-11-22T10:00:00Z".to_owned(),
        ),
    ))
}

fn kib() -> HubMessage<(String, String, String), ()> {
    HubMessage::Invocation(Invocation::new(
        "ReceiveMessage",
        (
            "alice".to_owned(),
            "x".repeat(1024),
            "2026-11-22T10:00:00Z".to_owned(),
        ),
    ))
}

fn codec(c: &mut Criterion) {
    for (size, message) in [("small", small()), ("1KiB", kib())] {
        for protocol in Protocol::ALL {
            let bytes = encode_message(protocol, &message, NamingPolicy::CamelCase).unwrap();
            let mut group = c.benchmark_group(format!("{protocol}/{size}"));
            group.throughput(Throughput::Bytes(bytes.len() as u64));
            group.bench_function("encode", |b| {
                b.iter(|| {
                    encode_message(protocol, black_box(&message), NamingPolicy::CamelCase).unwrap()
                })
            });
            group.bench_function("decode", |b| {
                let mut reader = MessageReader::new(protocol, Some(32 * 1024));
                b.iter(|| {
                    reader.push(black_box(&bytes));
                    let Some(HubMessage::Invocation(inv)) = reader.next_message().unwrap() else {
                        unreachable!()
                    };
                    inv
                })
            });
            group.bench_function("decode+deserialize", |b| {
                let mut reader = MessageReader::new(protocol, Some(32 * 1024));
                b.iter(|| {
                    reader.push(black_box(&bytes));
                    let Some(HubMessage::Invocation(inv)) = reader.next_message().unwrap() else {
                        unreachable!()
                    };
                    let text: String = inv.arguments.get(1).unwrap().deserialize().unwrap();
                    text
                })
            });
            group.finish();
        }
    }
}

fn fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("fan-out");
    // One broadcast to 1,000 connections, half JSON and half MessagePack: encode each protocol once,
    // then hand every connection its reference-counted copy.
    group.throughput(Throughput::Elements(1000));
    group.bench_function("serialize-once/1000 connections", |b| {
        b.iter(|| {
            let message = SerializedMessage::new(small(), NamingPolicy::CamelCase);
            let mut total = 0;
            for i in 0..1000 {
                let protocol = if i % 2 == 0 {
                    Protocol::Json
                } else {
                    Protocol::MessagePack
                };
                total += message.get(protocol).unwrap().clone().len();
            }
            total
        })
    });
    group.bench_function("encode-per-connection/1000 connections", |b| {
        b.iter(|| {
            let message = small();
            let mut total = 0;
            for i in 0..1000 {
                let protocol = if i % 2 == 0 {
                    Protocol::Json
                } else {
                    Protocol::MessagePack
                };
                total += encode_message(protocol, &message, NamingPolicy::CamelCase)
                    .unwrap()
                    .len();
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, codec, fan_out);
criterion_main!(benches);
