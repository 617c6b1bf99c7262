//! Counts by name: how often each kind of injected fault fired, or each kind of referee
//! violation was seen. A chaos test asserts from these that every fault it turned on really
//! happened, so that a suite cannot pass by never exercising what it claims to.
//!
//! Invariant: counts only go up; names are the stable `snake_case` names printed by
//! `tranche sim run --json`.

use std::collections::BTreeMap;

/// A count per name.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Tally(BTreeMap<&'static str, u64>);

impl Tally {
    /// Counts one more `name`.
    pub fn hit(&mut self, name: &'static str) {
        *self.0.entry(name).or_insert(0) += 1;
    }

    /// Counts `times` more `name`.
    pub fn hit_times(&mut self, name: &'static str, times: u64) {
        *self.0.entry(name).or_insert(0) += times;
    }

    /// How often `name` was counted.
    pub fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// Adds every count of `other`.
    pub fn add(&mut self, other: &Tally) {
        for (name, count) in &other.0 {
            *self.0.entry(name).or_insert(0) += count;
        }
    }

    /// What was counted after `earlier` (a snapshot of this tally): each count less the earlier
    /// one; names counted before but not since are kept with 0.
    #[must_use]
    pub fn since(&self, earlier: &Tally) -> Tally {
        Tally(self.0.iter().map(|(name, count)| (*name, count.saturating_sub(earlier.get(name)))).collect())
    }

    /// The sum of every count.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Every name with its count, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.0.iter().map(|(name, count)| (*name, *count))
    }

    /// Makes sure `name` is listed (with 0 if never counted), so a report shows it.
    pub fn list(&mut self, name: &'static str) {
        self.0.entry(name).or_insert(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_by_name() {
        let mut a = Tally::default();
        a.hit("late_order");
        a.hit_times("late_order", 1);
        a.list("server_error");
        let mut b = Tally::default();
        b.hit("server_error");
        a.add(&b);
        assert_eq!((a.get("late_order"), a.get("server_error"), a.get("never")), (2, 1, 0));
        assert_eq!(a.total(), 3);
        let before = a.clone();
        a.hit("late_order");
        assert_eq!(a.since(&before).get("late_order"), 1);
        assert_eq!(a.since(&before).get("server_error"), 0);
        assert_eq!(serde_json::to_string(&a).unwrap(), r#"{"late_order":3,"server_error":1}"#);
    }
}
