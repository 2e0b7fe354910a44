//! Sets of ports as sorted, disjoint, non-adjacent inclusive ranges.
//!
//! The evaluator never walks ports one by one: a NACL's first-match walk, a group's union
//! of rules and the intersection of the four filters on a path are all operations on
//! these sets, so their cost grows with the number of rules, not with 65,536 ports.

use std::fmt;

use serde::{Serialize, Serializer};

use crate::model::PortRange;

/// A set of ports, 0–65535.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PortSet(Vec<PortRange>);

impl PortSet {
    /// No port.
    pub fn empty() -> PortSet {
        PortSet(Vec::new())
    }

    /// Every port.
    pub fn full() -> PortSet {
        PortSet(vec![PortRange::ALL])
    }

    /// The ports of one range.
    pub fn range(r: PortRange) -> PortSet {
        PortSet(vec![r])
    }

    /// The ports of several ranges, in any order, overlapping or not.
    pub fn from_ranges(ranges: impl IntoIterator<Item = PortRange>) -> PortSet {
        // Room for as many ranges as may come, up front: filtered lists would otherwise
        // grow one reallocation at a time.
        let ranges = ranges.into_iter();
        let mut v: Vec<PortRange> = Vec::with_capacity(ranges.size_hint().1.unwrap_or(0));
        v.extend(ranges);
        v.sort_unstable();
        // Merged in place: `kept` ranges are final, and each range read lies past them.
        let mut kept = 0;
        for k in 0..v.len() {
            let r = v[k];
            // Adjacent ranges merge too, so equal sets have equal representations.
            if kept > 0 && u32::from(r.from) <= u32::from(v[kept - 1].to) + 1 {
                v[kept - 1].to = v[kept - 1].to.max(r.to);
            } else {
                v[kept] = r;
                kept += 1;
            }
        }
        v.truncate(kept);
        PortSet(v)
    }

    /// The ranges, ascending.
    pub fn ranges(&self) -> &[PortRange] {
        &self.0
    }

    /// Whether no port is in the set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether every port is in the set.
    pub fn is_full(&self) -> bool {
        self.0 == [PortRange::ALL]
    }

    /// Number of ports in the set.
    pub fn len(&self) -> u32 {
        self.0.iter().map(|r| u32::from(r.to) - u32::from(r.from) + 1).sum()
    }

    /// Whether `port` is in the set.
    pub fn contains(&self, port: u16) -> bool {
        // Ranges are sorted and disjoint: binary search on the range ends.
        let i = self.0.partition_point(|r| r.to < port);
        self.0.get(i).is_some_and(|r| r.from <= port)
    }

    /// The lowest port of `r` that is not in the set, if any.
    pub fn first_missing(&self, r: PortRange) -> Option<u16> {
        let mut next = r.from;
        for have in &self.0 {
            if have.to < next {
                continue;
            }
            if have.from > next {
                return Some(next);
            }
            if have.to >= r.to {
                return None;
            }
            next = have.to + 1;
        }
        Some(next)
    }

    /// Whether every port of `r` is in the set.
    pub fn contains_range(&self, r: PortRange) -> bool {
        self.first_missing(r).is_none()
    }

    /// Ports in either set.
    pub fn union(&self, other: &PortSet) -> PortSet {
        PortSet::from_ranges(self.0.iter().chain(&other.0).copied())
    }

    /// Ports in both sets.
    pub fn intersect(&self, other: &PortSet) -> PortSet {
        let (mut i, mut j, mut out) = (0, 0, Vec::new());
        while i < self.0.len() && j < other.0.len() {
            let (a, b) = (self.0[i], other.0[j]);
            let (from, to) = (a.from.max(b.from), a.to.min(b.to));
            if from <= to {
                out.push(PortRange { from, to });
            }
            if a.to < b.to {
                i += 1;
            } else {
                j += 1;
            }
        }
        PortSet(out)
    }

    /// Ports in this set and not in `other`.
    pub fn subtract(&self, other: &PortSet) -> PortSet {
        if self.is_empty() || other.is_empty() {
            return self.clone();
        }
        self.intersect(&other.complement())
    }

    /// Ports not in the set.
    pub fn complement(&self) -> PortSet {
        let mut out = Vec::with_capacity(self.0.len() + 1);
        let mut next: u32 = 0;
        for r in &self.0 {
            if u32::from(r.from) > next {
                out.push(PortRange { from: next as u16, to: r.from - 1 });
            }
            next = u32::from(r.to) + 1;
        }
        if next <= 65535 {
            out.push(PortRange { from: next as u16, to: 65535 });
        }
        PortSet(out)
    }
}

impl From<PortRange> for PortSet {
    fn from(r: PortRange) -> PortSet {
        PortSet::range(r)
    }
}

impl fmt::Display for PortSet {
    /// `80,443,1024-65535`; `all` for every port; `none` for the empty set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl Serialize for PortSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn set(ranges: &[(u16, u16)]) -> PortSet {
        PortSet::from_ranges(ranges.iter().map(|&(from, to)| PortRange { from, to }))
    }

    #[test]
    fn overlapping_and_adjacent_ranges_merge() {
        assert_eq!(set(&[(443, 443), (80, 80), (81, 90), (85, 100)]).to_string(), "80-100,443");
        assert_eq!(set(&[(0, 1023), (1024, 65535)]), PortSet::full());
    }

    #[test]
    fn complement_and_first_missing() {
        let s = set(&[(80, 80), (1024, 65535)]);
        assert_eq!(s.complement().to_string(), "0-79,81-1023");
        assert_eq!(s.first_missing(PortRange { from: 80, to: 2000 }), Some(81));
        assert_eq!(s.first_missing(PortRange { from: 1024, to: 65535 }), None);
        assert_eq!(PortSet::empty().complement(), PortSet::full());
        assert_eq!(PortSet::full().complement(), PortSet::empty());
        assert_eq!(s.len(), 1 + 64512);
    }

    fn arb_set() -> impl Strategy<Value = PortSet> {
        prop::collection::vec((0u16..200, 0u16..20), 0..6)
            .prop_map(|v| PortSet::from_ranges(v.into_iter().map(|(a, w)| PortRange { from: a, to: a + w })))
    }

    proptest! {
        /// Every operation agrees with the same operation on plain membership, port by
        /// port, over the stretch the random sets live in (and a margin past it).
        #[test]
        fn set_operations_agree_with_membership(a in arb_set(), b in arb_set()) {
            let (u, i, d, c) = (a.union(&b), a.intersect(&b), a.subtract(&b), a.complement());
            for p in 0u16..260 {
                prop_assert_eq!(u.contains(p), a.contains(p) || b.contains(p));
                prop_assert_eq!(i.contains(p), a.contains(p) && b.contains(p));
                prop_assert_eq!(d.contains(p), a.contains(p) && !b.contains(p));
                prop_assert_eq!(c.contains(p), !a.contains(p));
            }
            prop_assert!(c.contains(65535));
        }
    }
}
