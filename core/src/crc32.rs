//! CRC-32 (IEEE 802.3, the checksum of zlib, PNG and `crc32fast`), slice-by-8.
//!
//! Written here instead of using `crc32fast` because that crate's tables are 16 KB of
//! constant data, a sixth of the browser module; these 8 KB are computed on first use and
//! cost no bytes in the binary. Slice-by-8 checks a 15 MB index in a few milliseconds.

use std::sync::OnceLock;

const POLY: u32 = 0xEDB8_8320;

fn tables() -> &'static [[u32; 256]; 8] {
    static TABLES: OnceLock<Box<[[u32; 256]; 8]>> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut t = Box::new([[0u32; 256]; 8]);
        for i in 0..256u32 {
            let mut c = i;
            for _ in 0..8 {
                c = if c & 1 != 0 { POLY ^ (c >> 1) } else { c >> 1 };
            }
            t[0][i as usize] = c;
        }
        for i in 0..256 {
            for k in 1..8 {
                let prev = t[k - 1][i];
                t[k][i] = (prev >> 8) ^ t[0][(prev & 0xFF) as usize];
            }
        }
        t
    })
}

/// The CRC-32 of `bytes`.
pub fn hash(bytes: &[u8]) -> u32 {
    let t = tables();
    let mut crc = !0u32;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let lo = crc ^ u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        crc = t[7][(lo & 0xFF) as usize]
            ^ t[6][((lo >> 8) & 0xFF) as usize]
            ^ t[5][((lo >> 16) & 0xFF) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][c[4] as usize]
            ^ t[2][c[5] as usize]
            ^ t[1][c[6] as usize]
            ^ t[0][c[7] as usize];
    }
    for &b in chunks.remainder() {
        crc = (crc >> 8) ^ t[0][((crc ^ u32::from(b)) & 0xFF) as usize];
    }
    !crc
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    #[test]
    fn known_values() {
        assert_eq!(super::hash(b""), 0);
        assert_eq!(super::hash(b"123456789"), 0xCBF4_3926);
        assert_eq!(
            super::hash(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
    }

    proptest! {
        #[test]
        fn agrees_with_crc32fast(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(super::hash(&bytes), crc32fast::hash(&bytes));
        }
    }
}
