//! MQTT 5.0 User Properties (0x26, section 3.3.2.3.7) kept in their wire form: every `0x26, name, value`
//! one after another, checked once when decoded or built. A message's user properties are forwarded to
//! every subscriber as they arrived, in order [MQTT-3.3.2-17] [MQTT-3.3.2-18], so keeping them as one slice
//! of the read buffer makes decoding allocation-free and encoding one copy; they are typed only when read.

use super::error::{DecodeError, EncodeError};
use bytes::{BufMut, Bytes, BytesMut};
use serde::de::{Deserialize, Deserializer};
use serde::ser::{Serialize, SerializeSeq, Serializer};
use std::fmt;

/// The property identifier of a User Property.
const ID: u8 = 0x26;

/// An ordered list of (name, value) UTF-8 string pairs; names may repeat.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct UserProperties {
    /// `0x26, u16 length, name, u16 length, value` for each pair, every string valid UTF-8 without U+0000.
    wire: Bytes,
}

impl UserProperties {
    /// No user properties.
    pub const fn new() -> UserProperties {
        UserProperties { wire: Bytes::new() }
    }

    /// The pairs of `pairs`, in order; a name or value longer than 65,535 bytes is refused.
    pub fn from_pairs<K, V>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<UserProperties, EncodeError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut wire = BytesMut::new();
        for (name, value) in pairs {
            put_pair(&mut wire, name.as_ref(), value.as_ref())?;
        }
        Ok(UserProperties {
            wire: wire.freeze(),
        })
    }

    /// Appends one pair; a name or value longer than 65,535 bytes is refused.
    pub fn push(&mut self, name: &str, value: &str) -> Result<(), EncodeError> {
        let mut wire = BytesMut::with_capacity(self.wire.len() + 5 + name.len() + value.len());
        wire.put_slice(&self.wire);
        put_pair(&mut wire, name, value)?;
        self.wire = wire.freeze();
        Ok(())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.wire.is_empty()
    }

    /// How many pairs there are.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// The pairs in order.
    pub fn iter(&self) -> UserPropertyIter<'_> {
        UserPropertyIter { rest: &self.wire }
    }

    /// The pairs as owned strings, in order.
    pub fn to_vec(&self) -> Vec<(String, String)> {
        self.iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// The same pairs in an allocation of their own, so that a value kept for long does not keep alive the
    /// read buffer it was decoded from.
    pub fn detached(&self) -> UserProperties {
        UserProperties {
            wire: Bytes::copy_from_slice(&self.wire),
        }
    }

    /// The wire form: every pair with its property identifier, ready to be written into a property section.
    pub fn wire(&self) -> &[u8] {
        &self.wire
    }

    /// Pairs decoded from `wire`, which [`UserPropertySpans`] has checked.
    pub(crate) fn from_checked_wire(wire: Bytes) -> UserProperties {
        UserProperties { wire }
    }
}

fn put_pair(wire: &mut BytesMut, name: &str, value: &str) -> Result<(), EncodeError> {
    for (field, s) in [("user property name", name), ("user property value", value)] {
        if s.len() > usize::from(u16::MAX) {
            return Err(EncodeError::FieldTooLong {
                field,
                len: s.len(),
            });
        }
    }
    wire.reserve(5 + name.len() + value.len());
    wire.put_u8(ID);
    wire.put_u16(name.len() as u16);
    wire.put_slice(name.as_bytes());
    wire.put_u16(value.len() as u16);
    wire.put_slice(value.as_bytes());
    Ok(())
}

/// The pairs of a [`UserProperties`], in order.
pub struct UserPropertyIter<'a> {
    rest: &'a [u8],
}

impl<'a> UserPropertyIter<'a> {
    fn string(&mut self) -> Option<&'a str> {
        let len = usize::from(u16::from_be_bytes([
            *self.rest.first()?,
            *self.rest.get(1)?,
        ]));
        let s = self.rest.get(2..2 + len)?;
        self.rest = &self.rest[2 + len..];
        // Checked when the pairs were decoded or built; a failure here would be a bug, and ends the list.
        std::str::from_utf8(s).ok()
    }
}

impl<'a> Iterator for UserPropertyIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        self.rest = self.rest.get(1..)?;
        let pair = (self.string()?, self.string()?);
        Some(pair)
    }
}

impl fmt::Debug for UserProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Serialized as a sequence of (name, value) pairs, the form a list of string pairs has.
impl Serialize for UserProperties {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for pair in self.iter() {
            seq.serialize_element(&pair)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for UserProperties {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let pairs = Vec::<(String, String)>::deserialize(deserializer)?;
        UserProperties::from_pairs(pairs).map_err(serde::de::Error::custom)
    }
}

/// Collects the user properties of one property section while it is decoded: as a span of the section
/// while they come one after another (the usual case, no copy), copied only when other properties sit
/// between them.
#[derive(Default)]
pub(crate) struct UserPropertySpans {
    span: Option<(usize, usize)>,
    scattered: Option<BytesMut>,
}

impl UserPropertySpans {
    /// Checks the pair of the property at `section[start..]` (its identifier is the byte at `start`),
    /// records it, and returns where the next property starts.
    pub(crate) fn read(
        &mut self,
        section: &Bytes,
        start: usize,
        packet: &'static str,
    ) -> Result<usize, DecodeError> {
        let name_end = checked_string(section, start + 1, packet)?;
        let end = checked_string(section, name_end, packet)?;
        match (&mut self.span, &mut self.scattered) {
            (_, Some(copy)) => copy.put_slice(&section[start..end]),
            (None, None) => self.span = Some((start, end)),
            (Some((_, last)), None) if *last == start => *last = end,
            (Some((first, last)), None) => {
                let mut copy = BytesMut::from(&section[*first..*last]);
                copy.put_slice(&section[start..end]);
                self.scattered = Some(copy);
            }
        }
        Ok(end)
    }

    /// The pairs recorded; `section` itself when they are all it holds.
    pub(crate) fn finish(self, section: Bytes) -> UserProperties {
        match (self.span, self.scattered) {
            (_, Some(copy)) => UserProperties::from_checked_wire(copy.freeze()),
            (Some((0, last)), None) if last == section.len() => {
                UserProperties::from_checked_wire(section)
            }
            (Some((first, last)), None) => {
                UserProperties::from_checked_wire(section.slice(first..last))
            }
            (None, None) => UserProperties::new(),
        }
    }
}

/// Checks the UTF-8 string field at `bytes[at..]` for well-formedness and U+0000
/// [MQTT-1.5.4-1] [MQTT-1.5.4-2]; returns where it ends.
pub(super) fn checked_string(
    bytes: &[u8],
    at: usize,
    packet: &'static str,
) -> Result<usize, DecodeError> {
    let truncated = DecodeError::Truncated { packet };
    let len = match bytes.get(at..at + 2) {
        Some(&[hi, lo]) => usize::from(u16::from_be_bytes([hi, lo])),
        _ => return Err(truncated),
    };
    let end = at + 2 + len;
    let s = bytes.get(at + 2..end).ok_or(truncated)?;
    // Names and values are mostly short ASCII, which one pass accepts under both rules.
    if !s.iter().all(|b| b.wrapping_sub(1) < 0x7F) {
        if s.contains(&0) {
            return Err(DecodeError::NullCharacter { packet });
        }
        std::str::from_utf8(s).map_err(|_| DecodeError::InvalidUtf8 { packet })?;
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_keep_their_order_and_repeated_names() {
        let p = UserProperties::from_pairs([("a", "1"), ("b", "2"), ("a", "3")]).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(
            p.iter().collect::<Vec<_>>(),
            [("a", "1"), ("b", "2"), ("a", "3")]
        );
        let mut q = UserProperties::from_pairs([("a", "1"), ("b", "2")]).unwrap();
        q.push("a", "3").unwrap();
        assert_eq!(p, q);
    }

    #[test]
    fn a_string_longer_than_65535_bytes_is_refused() {
        let long = "x".repeat(65_536);
        assert!(matches!(
            UserProperties::from_pairs([("k", long.as_str())]),
            Err(EncodeError::FieldTooLong { .. })
        ));
        assert!(UserProperties::new().push(&long, "v").is_err());
    }

    #[test]
    fn pairs_separated_by_other_properties_are_joined() {
        // user property, Content Type, user property: the two pairs come back together, in order.
        let a = UserProperties::from_pairs([("a", "1")]).unwrap();
        let b = UserProperties::from_pairs([("b", "2")]).unwrap();
        let mut section = BytesMut::new();
        section.put_slice(a.wire());
        section.put_slice(&[0x03, 0, 1, b't']);
        section.put_slice(b.wire());
        let section = section.freeze();
        let mut spans = UserPropertySpans::default();
        let next = spans.read(&section, 0, "PUBLISH").unwrap();
        assert_eq!(next, a.wire().len());
        let end = spans.read(&section, next + 4, "PUBLISH").unwrap();
        assert_eq!(end, section.len());
        let joined = spans.finish(section);
        assert_eq!(joined.iter().collect::<Vec<_>>(), [("a", "1"), ("b", "2")]);
    }

    /// Decodes one property section holding the pair `name`, `value`.
    fn read_pair(name: &[u8], value: &[u8]) -> Result<UserProperties, DecodeError> {
        let mut section = BytesMut::new();
        section.put_u8(ID);
        for s in [name, value] {
            section.put_u16(s.len() as u16);
            section.put_slice(s);
        }
        let section = section.freeze();
        let mut spans = UserPropertySpans::default();
        assert_eq!(spans.read(&section, 0, "PUBLISH")?, section.len());
        Ok(spans.finish(section))
    }

    #[test]
    fn names_and_values_must_be_well_formed_utf8_without_null() {
        // [MQTT-1.5.4-1] [MQTT-1.5.4-2]
        let accepted = read_pair("clé".as_bytes(), "日本".as_bytes()).unwrap();
        assert_eq!(accepted.iter().collect::<Vec<_>>(), [("clé", "日本")]);
        assert!(matches!(
            read_pair(b"k\0", b"v"),
            Err(DecodeError::NullCharacter { .. })
        ));
        assert!(matches!(
            read_pair(b"k", &[0xC3]),
            Err(DecodeError::InvalidUtf8 { .. })
        ));
        assert!(matches!(
            read_pair(b"k", &[0xED, 0xA0, 0x80]),
            Err(DecodeError::InvalidUtf8 { .. })
        ));
        let mut cut = BytesMut::from(&[ID, 0, 1, b'k', 0, 5, b'v'][..]).freeze();
        assert!(matches!(
            UserPropertySpans::default().read(&cut, 0, "PUBLISH"),
            Err(DecodeError::Truncated { .. })
        ));
        cut.truncate(2);
        assert!(UserPropertySpans::default()
            .read(&cut, 0, "PUBLISH")
            .is_err());
    }

    #[test]
    fn serialized_like_a_list_of_string_pairs() {
        let p = UserProperties::from_pairs([("k", "v"), ("k", "w")]).unwrap();
        let config = bincode::config::standard();
        let as_pairs = bincode::serde::encode_to_vec(
            vec![("k".to_string(), "v".to_string()), ("k".into(), "w".into())],
            config,
        )
        .unwrap();
        assert_eq!(bincode::serde::encode_to_vec(&p, config).unwrap(), as_pairs);
        let (back, _): (UserProperties, usize) =
            bincode::serde::decode_from_slice(&as_pairs, config).unwrap();
        assert_eq!(back, p);
    }
}
