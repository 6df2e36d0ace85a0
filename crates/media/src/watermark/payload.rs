//! The 64 embedded bits: a 16-bit server tag, a 32-bit image tag and a
//! CRC-16 over both, most significant bit first (the order
//! `numpy.unpackbits` gives the reference's `bytes` payloads).

/// The number of bits the watermark embeds: 48 payload bits and a 16-bit check.
pub(crate) const EMBEDDED_BITS: usize = 64;

/// What an invisible watermark carries: which server made an image and
/// which image it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WatermarkPayload {
    /// A tag for the server (or deployment) that generated the image.
    pub server: u16,
    /// A tag for the image, e.g. the low 32 bits of a hash of its id.
    pub image: u32,
}

impl WatermarkPayload {
    /// The payload as 12 lower-case hex characters: the server tag (4)
    /// then the image tag (8).
    pub fn id(&self) -> String {
        format!("{:04x}{:08x}", self.server, self.image)
    }

    /// Parses what [`id`](Self::id) writes; `None` for anything other than
    /// exactly 12 hex digits.
    pub fn parse_id(s: &str) -> Option<Self> {
        if s.len() != 12 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(Self {
            server: u16::from_str_radix(&s[..4], 16).ok()?,
            image: u32::from_str_radix(&s[4..], 16).ok()?,
        })
    }

    /// The six payload bytes, big-endian: server then image.
    fn bytes(&self) -> [u8; 6] {
        let mut out = [0; 6];
        out[..2].copy_from_slice(&self.server.to_be_bytes());
        out[2..].copy_from_slice(&self.image.to_be_bytes());
        out
    }

    /// The 64-bit message of the robust mark: server tag, image tag, then
    /// the CRC-16 of those six bytes, big-endian.
    pub(crate) fn to_message(self) -> u64 {
        let data = self.bytes();
        let mut bytes = [0u8; 8];
        bytes[..6].copy_from_slice(&data);
        bytes[6..].copy_from_slice(&crc16(&data).to_be_bytes());
        u64::from_be_bytes(bytes)
    }

    /// The payload of a 64-bit message, or `None` when its CRC does not
    /// match.
    pub(crate) fn from_message(message: u64) -> Option<Self> {
        let bytes = message.to_be_bytes();
        let data: [u8; 6] = bytes[..6].try_into().expect("six bytes");
        (crc16(&data) == u16::from_be_bytes([bytes[6], bytes[7]])).then(|| Self {
            server: u16::from_be_bytes([data[0], data[1]]),
            image: u32::from_be_bytes([data[2], data[3], data[4], data[5]]),
        })
    }

    /// The 64 bits to embed: payload bytes then their CRC-16, each byte
    /// most significant bit first.
    pub(crate) fn to_bits(self) -> [bool; EMBEDDED_BITS] {
        let data = self.bytes();
        let crc = crc16(&data).to_be_bytes();
        let mut bits = [false; EMBEDDED_BITS];
        for (i, byte) in data.iter().chain(crc.iter()).enumerate() {
            for b in 0..8 {
                bits[i * 8 + b] = byte >> (7 - b) & 1 == 1;
            }
        }
        bits
    }

    /// The payload of 64 read bits, or `None` when their CRC does not match.
    pub(crate) fn from_bits(bits: &[bool; EMBEDDED_BITS]) -> Option<Self> {
        let mut bytes = [0u8; 8];
        for (i, byte) in bytes.iter_mut().enumerate() {
            for b in 0..8 {
                *byte = *byte << 1 | u8::from(bits[i * 8 + b]);
            }
        }
        let data: [u8; 6] = bytes[..6].try_into().expect("six bytes");
        if crc16(&data) != u16::from_be_bytes([bytes[6], bytes[7]]) {
            return None;
        }
        Some(Self {
            server: u16::from_be_bytes([data[0], data[1]]),
            image: u32::from_be_bytes([data[2], data[3], data[4], data[5]]),
        })
    }
}

/// CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no
/// reflection). The non-zero initial value matters here: the bits read
/// from a flat, unmarked image are all equal, and neither all-zero nor
/// all-one 64-bit words (nor the half-and-half words a flat 256-pixel-wide
/// image gives) pass this check.
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                crc << 1 ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_the_ccitt_false_check_value() {
        assert_eq!(crc16(b"123456789"), 0x29B1);
    }

    #[test]
    fn bits_round_trip_and_a_flipped_bit_fails_the_check() {
        let payload = WatermarkPayload {
            server: 0xBEEF,
            image: 0x0123_4567,
        };
        let mut bits = payload.to_bits();
        assert_eq!(WatermarkPayload::from_bits(&bits), Some(payload));
        for i in 0..EMBEDDED_BITS {
            bits[i] = !bits[i];
            assert_eq!(WatermarkPayload::from_bits(&bits), None, "bit {i}");
            bits[i] = !bits[i];
        }
    }

    #[test]
    fn flat_image_bit_patterns_fail_the_check() {
        // A flat image votes the same bit everywhere; a 256-pixel-wide one
        // alternates block rows between bits 0..32 and 32..64.
        for pattern in [[false, false], [true, true], [true, false], [false, true]] {
            let bits: [bool; EMBEDDED_BITS] = std::array::from_fn(|i| pattern[i / 32]);
            assert_eq!(WatermarkPayload::from_bits(&bits), None, "{pattern:?}");
        }
    }

    #[test]
    fn id_is_twelve_hex_digits_and_parses_back() {
        let payload = WatermarkPayload {
            server: 0x00AB,
            image: 0xDEAD_BEEF,
        };
        assert_eq!(payload.id(), "00abdeadbeef");
        assert_eq!(WatermarkPayload::parse_id("00abdeadbeef"), Some(payload));
        assert_eq!(WatermarkPayload::parse_id("00ABDEADBEEF"), Some(payload));
        for bad in [
            "",
            "00abdeadbee",
            "00abdeadbeef0",
            "00abdeadbeeg",
            "+0abdeadbeef",
            "é0abdeadbee",
        ] {
            assert_eq!(WatermarkPayload::parse_id(bad), None, "{bad}");
        }
    }
}
