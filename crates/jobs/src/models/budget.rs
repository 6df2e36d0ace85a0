//! The pool's one decision, as a pure function: to load a model of a given
//! size, which loaded models must go?
//!
//! Rules: models that are loading or held by a running batch are never
//! chosen; the others go least recently used first, and only as many as
//! needed. A model larger than the whole budget still loads once nothing
//! else is left (refusing it would make it unservable, and the operator
//! configured it); the budget bounds what stays loaded *together*.

/// A model that takes memory now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resident {
    /// Its index in the pool.
    pub index: usize,
    /// Bytes it takes.
    pub bytes: u64,
    /// Logical time of its last use (larger is more recent).
    pub last_used: u64,
    /// Held by a running batch, or still loading: cannot be evicted.
    pub pinned: bool,
}

/// What loading needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// It fits once these (pool indices, least recently used first) are evicted.
    Fits {
        /// The victims; empty when it fits as is.
        evict: Vec<usize>,
    },
    /// It does not fit even after evicting every unpinned model: the pinned
    /// ones keep too much memory.
    Blocked {
        /// Bytes missing after all possible evictions.
        short_by: u64,
        /// The pinned models in the way.
        pinned: Vec<usize>,
    },
}

/// Which residents to evict so that `need` more bytes stay within `budget`.
pub fn plan(residents: &[Resident], need: u64, budget: u64) -> Plan {
    let mut total: u64 = residents.iter().map(|r| r.bytes).sum();
    if total.saturating_add(need) <= budget {
        return Plan::Fits { evict: Vec::new() };
    }
    let mut candidates: Vec<&Resident> = residents.iter().filter(|r| !r.pinned).collect();
    candidates.sort_by_key(|r| (r.last_used, r.index));
    let mut evict = Vec::new();
    for r in candidates {
        if total.saturating_add(need) <= budget {
            break;
        }
        total -= r.bytes;
        evict.push(r.index);
    }
    let pinned: Vec<usize> = residents
        .iter()
        .filter(|r| r.pinned)
        .map(|r| r.index)
        .collect();
    if total.saturating_add(need) <= budget || pinned.is_empty() {
        // Either it fits, or it is alone and larger than the budget.
        Plan::Fits { evict }
    } else {
        Plan::Blocked {
            short_by: total.saturating_add(need) - budget,
            pinned,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(index: usize, bytes: u64, last_used: u64, pinned: bool) -> Resident {
        Resident {
            index,
            bytes,
            last_used,
            pinned,
        }
    }

    #[test]
    fn a_model_that_fits_evicts_nothing() {
        assert_eq!(
            plan(&[r(0, 40, 1, false)], 60, 100),
            Plan::Fits { evict: vec![] }
        );
    }

    #[test]
    fn the_least_recently_used_model_is_evicted_first() {
        let residents = [r(0, 40, 5, false), r(1, 40, 2, false), r(2, 20, 9, false)];
        assert_eq!(plan(&residents, 40, 100), Plan::Fits { evict: vec![1] });
    }

    #[test]
    fn only_as_many_models_as_needed_are_evicted() {
        let residents = [r(0, 30, 1, false), r(1, 30, 2, false), r(2, 30, 3, false)];
        assert_eq!(plan(&residents, 50, 100), Plan::Fits { evict: vec![0, 1] });
    }

    #[test]
    fn a_model_in_use_is_never_evicted_even_when_least_recently_used() {
        let residents = [r(0, 50, 1, true), r(1, 50, 2, false)];
        assert_eq!(plan(&residents, 50, 100), Plan::Fits { evict: vec![1] });
    }

    #[test]
    fn a_load_blocked_by_models_in_use_evicts_nothing_and_says_why() {
        let residents = [r(0, 60, 1, true), r(1, 30, 2, false)];
        assert_eq!(
            plan(&residents, 50, 100),
            Plan::Blocked {
                short_by: 10,
                pinned: vec![0],
            }
        );
    }

    #[test]
    fn a_model_larger_than_the_budget_loads_alone() {
        let residents = [r(0, 10, 1, false), r(1, 10, 2, false)];
        assert_eq!(plan(&residents, 500, 100), Plan::Fits { evict: vec![0, 1] });
        assert_eq!(plan(&[], 500, 100), Plan::Fits { evict: vec![] });
    }

    #[test]
    fn ties_in_last_use_go_by_pool_order() {
        let residents = [r(3, 50, 7, false), r(1, 50, 7, false)];
        assert_eq!(plan(&residents, 50, 100), Plan::Fits { evict: vec![1] });
    }
}
