//! Fuzz target: arbitrary bytes into the MQTT decoder in both roles, at MQTT 3.1.1 and at MQTT 5.0, through
//! `decode_packet_at` and through the tokio-util `Decoder` fed in small chunks. Whatever decodes must encode
//! (`encode_packet_at`, at the level it was decoded at) and decode back to the same packet. Run from the
//! repository root: `cargo fuzz run decode` (on a stable compiler, with `RUSTC_BOOTSTRAP=1`).
#![no_main]

use bytes::BytesMut;
use harbormq::codec::{decode_packet_at, encode_packet_at, MqttCodec, Packet, ProtocolLevel, Role};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

const LIMIT: usize = 1 << 16;

fn check_round_trip(packet: &Packet, role: Role, level: ProtocolLevel) {
    let mut bytes = BytesMut::new();
    encode_packet_at(packet, level, &mut bytes).expect("a decoded packet encodes");
    let again = decode_packet_at(&mut bytes, role, level, usize::MAX)
        .expect("an encoded packet decodes")
        .expect("an encoded packet is complete");
    assert_eq!(&again, packet);
    assert!(bytes.is_empty());
}

/// Decodes the whole input at once, starting at `level` and, like `MqttCodec`, taking the level of any
/// CONNECT decoded for what follows it.
fn whole(data: &[u8], role: Role, level: ProtocolLevel) -> Vec<Packet> {
    let mut level = level;
    let mut buf = BytesMut::from(data);
    let mut packets = Vec::new();
    while let Ok(Some(packet)) = decode_packet_at(&mut buf, role, level, LIMIT) {
        if let Packet::Connect(connect) = &packet {
            level = connect.level;
        }
        check_round_trip(&packet, role, level);
        packets.push(packet);
    }
    packets
}

fn chunked(data: &[u8], role: Role, level: ProtocolLevel, chunk: usize) -> Vec<Packet> {
    let mut codec = match role {
        Role::Server => MqttCodec::server(LIMIT),
        Role::Client => MqttCodec::client(LIMIT),
    }
    .at_level(level);
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(packet)) => packets.push(packet),
                Ok(None) => break,
                Err(_) => return packets,
            }
        }
    }
    packets
}

fuzz_target!(|data: &[u8]| {
    let chunk = usize::from(data.first().copied().unwrap_or(0) % 8) + 1;
    for level in [ProtocolLevel::V311, ProtocolLevel::V5] {
        for role in [Role::Server, Role::Client] {
            let at_once = whole(data, role, level);
            // Chunking may only change when packets become available, never which packets they are.
            assert_eq!(at_once, chunked(data, role, level, chunk));
        }
    }
});
