//! Per-thread memos of pure model functions keyed by the bits of their
//! arguments: customers share few (frequency, T) pairs, and each pair costs
//! hypergeometric series. A memo is dropped when it reaches 2^16 entries.

use std::cell::RefCell;
use std::collections::HashMap;
use std::thread::LocalKey;

/// A memo of `N` argument bits -> value; declare one per function with
/// `thread_local!`.
pub type Memo<const N: usize> = MemoOf<N, f64>;

/// A memo of `N` argument bits -> a value of type `V` (e.g. a gradient).
pub type MemoOf<const N: usize, V> = RefCell<HashMap<[u64; N], V, foldhash::fast::FixedState>>;

/// The memoized value of `key`, computing it with `f` on a miss.
pub fn memoized<const N: usize, V: Copy>(
    memo: &'static LocalKey<MemoOf<N, V>>,
    key: [u64; N],
    f: impl FnOnce() -> V,
) -> V {
    if let Some(v) = memo.with(|m| m.borrow().get(&key).copied()) {
        return v;
    }
    let v = f();
    memo.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() >= 1 << 16 {
            m.clear();
        }
        m.insert(key, v);
    });
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static SQUARES: Memo<1> = Memo::default();
    }

    #[test]
    fn computes_once_per_key_and_stays_bounded() {
        let mut calls = 0;
        for _ in 0..3 {
            let v = memoized(&SQUARES, [3], || {
                calls += 1;
                9.0
            });
            assert_eq!(v, 9.0);
        }
        assert_eq!(calls, 1);
        for k in 0..(1u64 << 16) + 10 {
            memoized(&SQUARES, [k + 100], || k as f64);
        }
        assert!(SQUARES.with(|m| m.borrow().len()) <= 1 << 16);
    }
}
