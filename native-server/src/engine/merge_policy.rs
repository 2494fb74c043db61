//! Which sealed segments of a shard to rewrite together: size-tiered merging of small
//! segments, and vacuuming of segments with many deleted rows.
//!
//! Segments are grouped in tiers by live rows: tier `t` holds those with `[F^t, F^(t+1))`
//! live rows for the merge factor `F`. When a tier holds `F` segments, its `F` smallest
//! merge into one, which lands a tier higher; a segment only ever merges with segments of
//! its own size class, so a row is rewritten once per tier it climbs, at most
//! `log_F(max_rows / batch) + 1` times for flushes of `batch` rows (bounded write
//! amplification), and N flushes leave at most `F − 1` segments per tier: `O(F · log_F N)`
//! in all. Segments of `max_rows / 2` live rows or more never merge (nothing to gain, a
//! costly rewrite and index build), and no merge makes a segment over `max_rows`.
//!
//! Vacuuming: a segment whose deleted rows pass `deleted_ratio` is rewritten with its live
//! rows only (alone, or with the other such segments of the shard up to `max_rows`).

/// What the policy knows of one sealed segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentStats {
    pub id: u64,
    pub rows: usize,
    pub live_rows: usize,
}

impl SegmentStats {
    fn deleted_fraction(&self) -> f64 {
        if self.rows == 0 {
            return 0.0;
        }
        (self.rows - self.live_rows) as f64 / self.rows as f64
    }
}

/// The policy's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MergePolicy {
    /// Segments of one tier merged at once (and the tier's size ratio), at least 2.
    pub factor: usize,
    /// The largest segment a merge makes; segments from half of it up never merge.
    pub max_rows: usize,
    /// Deleted share of a segment's rows past which it is vacuumed.
    pub deleted_ratio: f64,
}

/// Why a group of segments is rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeReason {
    /// Small segments of one tier, merged.
    Tier(u32),
    /// Segments with too many deleted rows, rewritten without them.
    Vacuum,
    /// Every segment with a deleted row (an explicit compact).
    Compact,
}

/// A rewrite the policy asks for: these segments become one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergePlan {
    pub segments: Vec<u64>,
    pub reason: MergeReason,
}

impl MergePolicy {
    /// The policy for segments sealed at `seal_rows` rows at most.
    pub fn new(seal_rows: usize, deleted_ratio: f64) -> Self {
        Self {
            factor: 4,
            max_rows: seal_rows.max(2),
            deleted_ratio,
        }
    }

    /// The tier of a segment with `live` rows: `⌊log_F live⌋` (0 for an empty one).
    pub fn tier(&self, live: usize) -> u32 {
        live.max(1).ilog(self.factor.max(2))
    }

    /// The next rewrite for a shard's sealed segments, if any: vacuuming first (it frees
    /// memory and disk and speeds searches), then the lowest full tier.
    pub fn plan(&self, segments: &[SegmentStats]) -> Option<MergePlan> {
        self.vacuum(segments).or_else(|| self.tiered(segments))
    }

    /// Every segment with deleted rows, grouped up to `max_rows` live rows (an explicit
    /// compact: the first group; call again after it is done).
    pub fn compact(&self, segments: &[SegmentStats]) -> Option<MergePlan> {
        self.group(segments, |s| s.live_rows < s.rows, MergeReason::Compact)
    }

    /// Vacuuming alone (merging switched off).
    pub fn vacuum_only(&self, segments: &[SegmentStats]) -> Option<MergePlan> {
        self.vacuum(segments)
    }

    fn vacuum(&self, segments: &[SegmentStats]) -> Option<MergePlan> {
        let ratio = self.deleted_ratio;
        self.group(
            segments,
            |s| s.deleted_fraction() > ratio,
            MergeReason::Vacuum,
        )
    }

    /// The segments `pick` selects, smallest first, as many as fit in `max_rows` live rows
    /// (at least one).
    fn group(
        &self,
        segments: &[SegmentStats],
        pick: impl Fn(&SegmentStats) -> bool,
        reason: MergeReason,
    ) -> Option<MergePlan> {
        let mut chosen: Vec<&SegmentStats> = segments.iter().filter(|s| pick(s)).collect();
        chosen.sort_by_key(|s| (s.live_rows, s.id));
        let mut total = 0usize;
        let mut ids = Vec::new();
        for s in chosen {
            if !ids.is_empty() && total + s.live_rows > self.max_rows {
                break;
            }
            total += s.live_rows;
            ids.push(s.id);
        }
        (!ids.is_empty()).then_some(MergePlan {
            segments: ids,
            reason,
        })
    }

    fn tiered(&self, segments: &[SegmentStats]) -> Option<MergePlan> {
        let factor = self.factor.max(2);
        let mut small: Vec<&SegmentStats> = segments
            .iter()
            .filter(|s| s.live_rows < self.max_rows / 2)
            .collect();
        small.sort_by_key(|s| (self.tier(s.live_rows), s.live_rows, s.id));
        for tier in small.chunk_by(|a, b| self.tier(a.live_rows) == self.tier(b.live_rows)) {
            if tier.len() < factor {
                continue;
            }
            let mut total = 0usize;
            let mut ids = Vec::new();
            for s in &tier[..factor] {
                if total + s.live_rows > self.max_rows {
                    break;
                }
                total += s.live_rows;
                ids.push(s.id);
            }
            if ids.len() >= 2 {
                return Some(MergePlan {
                    segments: ids,
                    reason: MergeReason::Tier(self.tier(tier[0].live_rows)),
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(id: u64, rows: usize, live_rows: usize) -> SegmentStats {
        SegmentStats {
            id,
            rows,
            live_rows,
        }
    }

    /// Applies plans until none is left, as the optimizer does; returns rows rewritten.
    fn settle(policy: &MergePolicy, segments: &mut Vec<SegmentStats>, next_id: &mut u64) -> usize {
        let mut rewritten = 0;
        while let Some(plan) = policy.plan(segments) {
            if let MergeReason::Tier(_) = plan.reason {
                assert!(plan.segments.len() >= 2);
            }
            let live: usize = segments
                .iter()
                .filter(|s| plan.segments.contains(&s.id))
                .map(|s| s.live_rows)
                .sum();
            assert!(live <= policy.max_rows, "a merge made {live} rows");
            segments.retain(|s| !plan.segments.contains(&s.id));
            segments.push(seg(*next_id, live, live));
            *next_id += 1;
            rewritten += live;
        }
        rewritten
    }

    #[test]
    fn tiers_grow_by_the_factor() {
        let p = MergePolicy::new(100_000, 0.3);
        assert_eq!(p.tier(0), 0);
        assert_eq!(p.tier(3), 0);
        assert_eq!(p.tier(4), 1);
        assert_eq!(p.tier(15), 1);
        assert_eq!(p.tier(16), 2);
        assert_eq!(p.tier(65_536), 8);
    }

    #[test]
    fn many_small_flushes_keep_the_count_logarithmic_with_bounded_rewrites() {
        let p = MergePolicy::new(100_000, 0.3);
        for batch in [1usize, 10, 100, 700] {
            let mut segments = Vec::new();
            let mut next_id = 0;
            let mut rewritten = 0;
            let flushes = 2_000;
            for n in 1..=flushes {
                segments.push(seg(next_id, batch, batch));
                next_id += 1;
                rewritten += settle(&p, &mut segments, &mut next_id);
                let bound = (p.factor - 1) * ((n as f64).log(p.factor as f64) as usize + 2)
                    + (n * batch) / (p.max_rows / 2);
                assert!(
                    segments.len() <= bound,
                    "batch {batch}: {} segments after {n} flushes (bound {bound})",
                    segments.len()
                );
            }
            let total = flushes * batch;
            assert_eq!(segments.iter().map(|s| s.live_rows).sum::<usize>(), total);
            // Each row climbs at most log_F(max / batch) + 1 tiers.
            let climbs = ((p.max_rows / batch) as f64).log(p.factor as f64) as usize + 2;
            assert!(
                rewritten <= total * climbs,
                "batch {batch}: {rewritten} rows rewritten for {total}"
            );
        }
    }

    #[test]
    fn large_segments_never_merge() {
        let p = MergePolicy::new(100_000, 0.3);
        let segments: Vec<_> = (0..10).map(|i| seg(i, 60_000, 60_000)).collect();
        assert_eq!(p.plan(&segments), None);
    }

    #[test]
    fn a_full_tier_merges_its_smallest() {
        let p = MergePolicy::new(100_000, 0.3);
        // Tier 4 is [256, 1024): five segments there, one below, one above.
        let segments = [
            seg(1, 500, 500),
            seg(2, 300, 300),
            seg(3, 900, 900),
            seg(4, 260, 260),
            seg(5, 20_000, 20_000),
            seg(6, 1_000, 1_000),
            seg(7, 100, 100),
        ];
        assert_eq!(
            p.plan(&segments),
            Some(MergePlan {
                segments: vec![4, 2, 1, 3],
                reason: MergeReason::Tier(4)
            })
        );
        assert_eq!(p.plan(&segments[..3]), None);
    }

    #[test]
    fn vacuum_comes_first_and_compact_takes_every_deleted_row() {
        let p = MergePolicy::new(100_000, 0.3);
        let segments = [
            seg(1, 10, 10),
            seg(2, 10, 10),
            seg(3, 10, 10),
            seg(4, 10, 10),
            seg(5, 50_000, 30_000),
            seg(6, 50_000, 49_000),
        ];
        assert_eq!(
            p.plan(&segments),
            Some(MergePlan {
                segments: vec![5],
                reason: MergeReason::Vacuum
            })
        );
        assert_eq!(
            p.compact(&segments),
            Some(MergePlan {
                segments: vec![5, 6],
                reason: MergeReason::Compact
            })
        );
        let clean = [seg(1, 10, 10)];
        assert_eq!(p.compact(&clean), None);
    }

    #[test]
    fn groups_stop_at_max_rows_but_take_at_least_one() {
        let p = MergePolicy::new(1_000, 0.3);
        let segments = [seg(1, 2_000, 900), seg(2, 2_000, 800)];
        assert_eq!(p.compact(&segments).unwrap().segments, vec![2]);
    }
}
