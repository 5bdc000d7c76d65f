//! Criterion benchmarks of the MQTT codec: decoding and encoding one PUBLISH, and decoding a
//! buffer of pipelined PUBLISH packets as a subscriber's socket delivers them.

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use harbormq::codec::{
    decode_packet, encode_publish, encode_publish_parts, MqttCodec, Packet, PacketId, Publish, QoS,
    Role,
};
use harbormq::topic::TopicName;
use std::hint::black_box;
use tokio_util::codec::Decoder;

const LIMIT: usize = 1 << 20;
const PIPELINED: usize = 1_000;

fn publish(payload_len: usize) -> Publish {
    Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: TopicName::new("bench/sensor/42/temperature").unwrap(),
        packet_id: PacketId::new(42),
        payload: Bytes::from(vec![0xA5; payload_len]),
        properties: None,
    }
}

fn encoded(publish: &Publish, copies: usize) -> BytesMut {
    let mut dst = BytesMut::new();
    for _ in 0..copies {
        encode_publish(publish, &mut dst).unwrap();
    }
    dst
}

fn bench_single(c: &mut Criterion) {
    for (name, len) in [("64B", 64), ("1KiB", 1024)] {
        let p = publish(len);
        let bytes = encoded(&p, 1);
        let mut group = c.benchmark_group(format!("publish_{name}"));
        group.throughput(Throughput::Elements(1));
        group.bench_function("decode", |b| {
            b.iter_batched_ref(
                || bytes.clone(),
                |buf| decode_packet(black_box(buf), Role::Client, LIMIT).unwrap(),
                BatchSize::SmallInput,
            )
        });
        let mut dst = BytesMut::with_capacity(2 * bytes.len());
        group.bench_function("encode", |b| {
            b.iter(|| {
                dst.clear();
                encode_publish(black_box(&p), &mut dst).unwrap();
            })
        });
        group.bench_function("encode_parts", |b| {
            b.iter(|| {
                dst.clear();
                encode_publish_parts(
                    false,
                    QoS::AtLeastOnce,
                    false,
                    black_box("bench/sensor/42/temperature"),
                    PacketId::new(42),
                    black_box(&p.payload),
                    &mut dst,
                )
                .unwrap();
            })
        });
        group.finish();
    }
}

fn bench_pipelined(c: &mut Criterion) {
    let bytes = encoded(&publish(64), PIPELINED);
    let mut group = c.benchmark_group("pipelined_1000_publish_64B");
    group.throughput(Throughput::Elements(PIPELINED as u64));
    group.bench_function("decode", |b| {
        b.iter_batched_ref(
            || bytes.clone(),
            |buf| {
                let mut codec = MqttCodec::client(LIMIT);
                let mut count = 0;
                while let Some(packet) = codec.decode(buf).unwrap() {
                    count += usize::from(matches!(packet, Packet::Publish(_)));
                    black_box(packet);
                }
                assert_eq!(count, PIPELINED);
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_single, bench_pipelined);
criterion_main!(benches);
