//! Fixed-width rows stored in blocks of [`BLOCK_ROWS`] rows.
//!
//! A single `Vec` of every vector reallocates as it grows, and in WebAssembly the memory it
//! leaves behind is never returned: a 50k × 384 cache measured 2.5× its own size in wasm
//! memory. Blocks are allocated once at full size (the first grows until it is full, so a
//! small cache stays small) and never move.

/// Rows per block (384 KB of 384-d f32 rows).
pub(super) const BLOCK_ROWS: usize = 256;

#[derive(Clone)]
pub(super) struct Rows<T> {
    width: usize,
    blocks: Vec<Vec<T>>,
    rows: usize,
}

impl<T: Copy + Default> Rows<T> {
    pub fn new(width: usize) -> Self {
        Self {
            width,
            blocks: Vec::new(),
            rows: 0,
        }
    }

    /// Rows made of `blocks` (each [`BLOCK_ROWS`] rows but the last), as [`Rows::blocks`]
    /// gives them.
    pub fn from_blocks(width: usize, blocks: Vec<Vec<T>>) -> Self {
        let values: usize = blocks.iter().map(Vec::len).sum();
        debug_assert!(blocks
            .iter()
            .rev()
            .skip(1)
            .all(|b| b.len() == BLOCK_ROWS * width));
        Self {
            width,
            rows: values / width.max(1),
            blocks,
        }
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    #[inline(always)]
    pub fn row(&self, i: usize) -> &[T] {
        let start = (i % BLOCK_ROWS) * self.width;
        &self.blocks[i / BLOCK_ROWS][start..start + self.width]
    }

    #[inline]
    pub fn row_mut(&mut self, i: usize) -> &mut [T] {
        let start = (i % BLOCK_ROWS) * self.width;
        &mut self.blocks[i / BLOCK_ROWS][start..start + self.width]
    }

    /// Appends a row of default values; returns its index.
    pub fn push_default(&mut self) -> usize {
        let full = BLOCK_ROWS * self.width;
        if self.blocks.last().is_none_or(|b| b.len() >= full) {
            // Blocks after the first are allocated whole; the first grows as the cache does.
            let capacity = if self.blocks.is_empty() { 0 } else { full };
            self.blocks.push(Vec::with_capacity(capacity));
        }
        let block = self.blocks.last_mut().expect("a block was just ensured");
        block.resize(block.len() + self.width, T::default());
        self.rows += 1;
        self.rows - 1
    }

    /// Appends `row` (`width` values); returns its index.
    pub fn push(&mut self, row: &[T]) -> usize {
        let i = self.push_default();
        self.row_mut(i).copy_from_slice(row);
        i
    }

    /// The filled part of each block, in order (rows `0..len` laid end to end).
    pub fn blocks(&self) -> impl Iterator<Item = &[T]> + '_ {
        self.blocks.iter().map(Vec::as_slice)
    }

    /// Every value, row after row.
    pub fn values(&self) -> impl Iterator<Item = &T> + '_ {
        self.blocks.iter().flatten()
    }

    /// Bytes allocated.
    pub fn memory_bytes(&self) -> usize {
        self.blocks.iter().map(Vec::capacity).sum::<usize>() * std::mem::size_of::<T>()
            + self.blocks.capacity() * std::mem::size_of::<Vec<T>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_cross_blocks_and_round_trip_through_blocks() {
        let mut r = Rows::<u32>::new(3);
        for i in 0..(BLOCK_ROWS * 2 + 5) as u32 {
            assert_eq!(r.push(&[i, i + 1, i + 2]), i as usize);
        }
        assert_eq!(r.len(), BLOCK_ROWS * 2 + 5);
        assert_eq!(
            r.row(BLOCK_ROWS + 7),
            &[
                (BLOCK_ROWS + 7) as u32,
                (BLOCK_ROWS + 8) as u32,
                (BLOCK_ROWS + 9) as u32
            ]
        );
        r.row_mut(3)[1] = 99;
        let copy = Rows::from_blocks(3, r.blocks().map(<[u32]>::to_vec).collect());
        assert_eq!(copy.len(), r.len());
        assert!(copy.values().eq(r.values()));
        assert_eq!(copy.row(3), &[3, 99, 5]);
        let mut grown = copy;
        grown.push(&[7, 7, 7]);
        assert_eq!(grown.row(BLOCK_ROWS * 2 + 5), &[7, 7, 7]);
    }
}
