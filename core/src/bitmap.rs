//! A plain bitmap over dense positions, laid out exactly like FAISS's `IDSelectorBitmap`
//! (bit `i` is `(bytes[i >> 3] >> (i & 7)) & 1`), so the server can hand it to FAISS as is.

use serde::{Deserialize, Serialize};

/// A growable bitmap. Used as the "live rows" filter of a segment: a set bit is a row that may
/// be returned, a cleared bit a tombstone.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Bitmap {
    bytes: Vec<u8>,
    len: usize,
}

impl Bitmap {
    /// A bitmap of `len` bits, all set to `value`.
    pub fn new(len: usize, value: bool) -> Self {
        let fill = if value { 0xFF } else { 0 };
        let mut bitmap = Self {
            bytes: vec![fill; len.div_ceil(8)],
            len,
        };
        bitmap.clear_tail();
        bitmap
    }

    /// Number of bits.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the bitmap has no bits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads bit `i`; bits past the end read as `false`.
    #[inline]
    pub fn get(&self, i: usize) -> bool {
        i < self.len && (self.bytes[i >> 3] >> (i & 7)) & 1 == 1
    }

    /// Sets bit `i` to `value`, growing the bitmap (with cleared bits) when needed.
    pub fn set(&mut self, i: usize, value: bool) {
        if i >= self.len {
            self.len = i + 1;
            self.bytes.resize(self.len.div_ceil(8), 0);
        }
        let mask = 1u8 << (i & 7);
        if value {
            self.bytes[i >> 3] |= mask;
        } else {
            self.bytes[i >> 3] &= !mask;
        }
    }

    /// Appends one bit.
    pub fn push(&mut self, value: bool) {
        let i = self.len;
        self.set(i, value);
    }

    /// Number of set bits.
    pub fn count_ones(&self) -> usize {
        self.bytes.iter().map(|b| b.count_ones() as usize).sum()
    }

    /// Positions of the set bits, in order.
    pub fn ones(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len).filter(|&i| self.get(i))
    }

    /// The raw bytes, FAISS `IDSelectorBitmap` layout.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn clear_tail(&mut self) {
        let used = self.len % 8;
        if used != 0 {
            if let Some(last) = self.bytes.last_mut() {
                *last &= (1u8 << used) - 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn faiss_layout() {
        let mut b = Bitmap::new(10, false);
        b.set(0, true);
        b.set(9, true);
        assert_eq!(b.as_bytes(), &[0b0000_0001, 0b0000_0010]);
        assert_eq!(Bitmap::new(10, true).count_ones(), 10);
    }

    proptest! {
        #[test]
        fn behaves_like_a_bool_vector(ops in proptest::collection::vec((0usize..200, any::<bool>()), 0..100)) {
            let mut b = Bitmap::default();
            let mut reference = Vec::<bool>::new();
            for (i, v) in ops {
                b.set(i, v);
                if i >= reference.len() { reference.resize(i + 1, false); }
                reference[i] = v;
            }
            prop_assert_eq!(b.len(), reference.len());
            for (i, v) in reference.iter().enumerate() { prop_assert_eq!(b.get(i), *v); }
            prop_assert_eq!(b.count_ones(), reference.iter().filter(|v| **v).count());
        }
    }
}
