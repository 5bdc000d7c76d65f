//! The errors of the codec layer: why bytes are not a valid packet, and why a packet cannot be written.
//! Each protocol violation names the normative statement of the MQTT specification it breaks.

use crate::topic::TopicError;
use std::io;

/// Why the bytes received are not a valid MQTT packet; every variant except `Io` is a protocol violation.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The remaining length continues past its fourth byte.
    #[error("[MQTT-2.2.3] malformed remaining length: more than 4 bytes")]
    MalformedRemainingLength,
    /// The packet is larger than the configured maximum.
    #[error("packet of {size} bytes exceeds the maximum packet size of {limit} bytes")]
    PacketTooLarge {
        /// Size of the whole packet, fixed header included.
        size: usize,
        /// The configured maximum.
        limit: usize,
    },
    /// The control packet type is 0 or 15, both reserved.
    #[error("[MQTT-2.2.1] reserved control packet type {0}")]
    ReservedPacketType(u8),
    /// The packet type may only travel in the other direction.
    #[error("[MQTT-2.2.1] {packet} must not be sent by a {sender}")]
    WrongDirection {
        /// Name of the packet type.
        packet: &'static str,
        /// The side that sent it: "client" or "server".
        sender: &'static str,
    },
    /// The reserved flag bits of the fixed header are not the values the packet type requires.
    #[error("[MQTT-2.2.2-2] invalid fixed header flags {flags:#x} for {packet}")]
    InvalidFlags {
        /// Name of the packet type.
        packet: &'static str,
        /// The low nibble of the first byte.
        flags: u8,
    },
    /// A PUBLISH carries QoS 3.
    #[error("[MQTT-3.3.1-4] PUBLISH with QoS 3")]
    InvalidPublishQoS,
    /// A QoS 0 PUBLISH has the DUP flag set.
    #[error("[MQTT-3.3.1-2] DUP flag set on a QoS 0 PUBLISH")]
    DupOnQoS0,
    /// A string is not well-formed UTF-8 (this includes encoded surrogates U+D800 to U+DFFF).
    #[error("[MQTT-1.5.3-1] string in {packet} is not well-formed UTF-8")]
    InvalidUtf8 {
        /// Name of the packet type.
        packet: &'static str,
    },
    /// A string contains U+0000.
    #[error("[MQTT-1.5.3-2] string in {packet} contains the null character U+0000")]
    NullCharacter {
        /// Name of the packet type.
        packet: &'static str,
    },
    /// A topic name or filter breaks the topic rules.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// A packet identifier is 0.
    #[error("[MQTT-2.3.1-1] packet identifier 0 in {packet}")]
    ZeroPacketId {
        /// Name of the packet type.
        packet: &'static str,
    },
    /// The packet ends before all of its fields.
    #[error("[MQTT-2.2.3] {packet} ends before its fields do")]
    Truncated {
        /// Name of the packet type.
        packet: &'static str,
    },
    /// The packet has bytes after its last field.
    #[error("[MQTT-2.2.3] {packet} has {extra} bytes after its last field")]
    TrailingBytes {
        /// Name of the packet type.
        packet: &'static str,
        /// How many bytes are left over.
        extra: usize,
    },
    /// The protocol name does not match the protocol level.
    #[error("[MQTT-3.1.2-1] protocol name {name:?} does not match protocol level {level}")]
    InvalidProtocolName {
        /// The protocol name sent, lossily decoded.
        name: String,
        /// The protocol level sent.
        level: u8,
    },
    /// CONNECT names a protocol level the broker does not speak; the frame has been consumed so the
    /// caller can answer CONNACK 0x01 and close.
    #[error("[MQTT-3.1.2-2] unsupported protocol level {0}")]
    UnsupportedProtocolLevel(u8),
    /// The reserved bit of the CONNECT flags is set.
    #[error("[MQTT-3.1.2-3] reserved CONNECT flag is set")]
    ConnectReservedFlag,
    /// Will QoS is not 0 while the will flag is 0.
    #[error("[MQTT-3.1.2-13] will QoS {0} without the will flag")]
    WillQoSWithoutWill(u8),
    /// Will QoS is 3.
    #[error("[MQTT-3.1.2-14] will QoS 3")]
    InvalidWillQoS,
    /// Will retain is set while the will flag is 0.
    #[error("[MQTT-3.1.2-15] will retain without the will flag")]
    WillRetainWithoutWill,
    /// The password flag is set without the user name flag.
    #[error("[MQTT-3.1.2-22] password flag without user name flag")]
    PasswordWithoutUsername,
    /// The CONNACK acknowledge flags use reserved bits.
    #[error("[MQTT-3.2.2.1] CONNACK acknowledge flags {0:#x} use reserved bits")]
    ConnAckReservedFlags(u8),
    /// The CONNACK return code is not 0 to 5.
    #[error("[MQTT-3.2.2.3] reserved CONNACK return code {0}")]
    InvalidConnectReturnCode(u8),
    /// SUBSCRIBE carries no topic filter.
    #[error("[MQTT-3.8.3-3] SUBSCRIBE without topic filters")]
    NoSubscribeFilters,
    /// A requested QoS byte of SUBSCRIBE has reserved bits set or asks for QoS 3.
    #[error("[MQTT-3.8.3-4] requested QoS byte {0:#x} has reserved bits set or asks for QoS 3")]
    InvalidRequestedQoS(u8),
    /// SUBACK carries no return code.
    #[error("[MQTT-3.9.3-1] SUBACK without return codes")]
    NoSubAckReturnCodes,
    /// A SUBACK return code is not 0x00, 0x01, 0x02 or 0x80.
    #[error("[MQTT-3.9.3-2] reserved SUBACK return code {0:#x}")]
    InvalidSubAckReturnCode(u8),
    /// UNSUBSCRIBE carries no topic filter.
    #[error("[MQTT-3.10.3-2] UNSUBSCRIBE without topic filters")]
    NoUnsubscribeFilters,
    /// A Variable Byte Integer continues past its fourth byte.
    #[error("[MQTT-1.5.5-1] malformed variable byte integer in {packet}")]
    MalformedVarint {
        /// Name of the packet type.
        packet: &'static str,
    },
    /// A property identifier the specification does not define.
    #[error("[MQTT-2.2.2] unknown property identifier {id:#x}")]
    UnknownProperty {
        /// The identifier read.
        id: u32,
    },
    /// A property the packet may not carry.
    #[error("[MQTT-2.2.2] property {id:#x} is not allowed in {packet}")]
    PropertyNotAllowed {
        /// The property identifier.
        id: u8,
        /// Where it was found.
        packet: &'static str,
    },
    /// A property given twice where the specification allows it once (a Protocol Error, section 2.2.2.2).
    #[error("property {id:#x} given more than once in {packet} (section 2.2.2.2)")]
    DuplicateProperty {
        /// The property identifier.
        id: u8,
        /// Where it was found.
        packet: &'static str,
    },
    /// A property value outside what the specification allows (a 0 where 0 is forbidden, a flag above 1).
    #[error("[MQTT-2.2.2] property {id:#x} has a value the specification forbids")]
    InvalidPropertyValue {
        /// The property identifier.
        id: u8,
    },
    /// A reason code the packet may not carry.
    #[error("[MQTT-2.4] reason code {code:#x} is not allowed in {packet}")]
    InvalidReasonCode {
        /// Name of the packet type.
        packet: &'static str,
        /// The code read.
        code: u8,
    },
    /// Retain Handling 3 in the subscription options of SUBSCRIBE.
    #[error("[MQTT-3.8.3-6 in 5.0] Retain Handling 3 is reserved")]
    InvalidRetainHandling,
    /// Reading from the transport failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

impl DecodeError {
    /// The MQTT 5.0 reason code a server sends in DISCONNECT for this error: 0x95 for a packet over the limit,
    /// 0x82 for what the specification calls a Protocol Error (a packet from the wrong side, a property repeated
    /// where it may appear once or with a forbidden value, Retain Handling 3), 0x81 for bytes that are not a
    /// packet (section 4.13).
    pub fn reason_code(&self) -> crate::codec::ReasonCode {
        use crate::codec::ReasonCode;
        match self {
            DecodeError::PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            DecodeError::WrongDirection { .. }
            | DecodeError::InvalidPropertyValue { .. }
            | DecodeError::DuplicateProperty { .. }
            | DecodeError::InvalidRetainHandling => ReasonCode::PROTOCOL_ERROR,
            _ => ReasonCode::MALFORMED_PACKET,
        }
    }
}

/// Why a packet value cannot be written to the wire.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The packet body does not fit in the four-byte remaining length.
    #[error("[MQTT-2.2.3] remaining length {0} exceeds 268435455 bytes")]
    PacketTooLarge(usize),
    /// A string or length-prefixed binary field is longer than 65,535 bytes.
    #[error("[MQTT-1.5.3] {field} of {len} bytes exceeds 65535 bytes")]
    FieldTooLong {
        /// Which field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// A QoS 1 or 2 PUBLISH has no packet identifier.
    #[error("[MQTT-2.3.1-1] QoS {0} PUBLISH without a packet identifier")]
    MissingPacketId(u8),
    /// A QoS 0 PUBLISH has a packet identifier.
    #[error("[MQTT-2.3.1-5] QoS 0 PUBLISH with a packet identifier")]
    UnexpectedPacketId,
    /// A QoS 0 PUBLISH has the DUP flag set.
    #[error("[MQTT-3.3.1-2] DUP flag set on a QoS 0 PUBLISH")]
    DupOnQoS0,
    /// SUBSCRIBE, SUBACK or UNSUBSCRIBE has an empty list.
    #[error("[MQTT-3.8.3-3] [MQTT-3.10.3-2] {0} must carry at least one entry")]
    EmptyList(&'static str),
    /// A Subscription Identifier of 0 or above 268,435,455.
    #[error("[MQTT-3.8.2.1.2] subscription identifier {0} is out of range")]
    InvalidSubscriptionIdentifier(u32),
    /// The packet does not exist at the protocol level it is written for.
    #[error("{0} does not exist before MQTT 5.0")]
    NotInLevel(&'static str),
    /// A property value a receiver would refuse (a Payload Format Indicator above 1, a string with U+0000).
    #[error("PUBLISH properties would be refused: {0}")]
    InvalidProperty(DecodeError),
    /// CONNECT has a password but no user name.
    #[error("[MQTT-3.1.2-22] password without a user name")]
    PasswordWithoutUsername,
    /// Writing to the transport failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}
