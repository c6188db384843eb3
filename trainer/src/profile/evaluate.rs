//! How well profiles recover known kinds of users (synthetic ground truth).

use std::collections::HashMap;

/// The adjusted Rand index of two labelings of the same items: 1 for identical partitions,
/// about 0 for chance agreement.
pub fn adjusted_rand_index(a: &[usize], b: &[usize]) -> f64 {
    let n = a.len().min(b.len());
    if n < 2 {
        return 1.0;
    }
    let mut table: HashMap<(usize, usize), u64> = HashMap::new();
    let mut rows: HashMap<usize, u64> = HashMap::new();
    let mut cols: HashMap<usize, u64> = HashMap::new();
    for i in 0..n {
        *table.entry((a[i], b[i])).or_default() += 1;
        *rows.entry(a[i]).or_default() += 1;
        *cols.entry(b[i]).or_default() += 1;
    }
    let pairs = |x: u64| (x * x.saturating_sub(1)) as f64 / 2.0;
    let index: f64 = table.values().map(|&x| pairs(x)).sum();
    let sum_rows: f64 = rows.values().map(|&x| pairs(x)).sum();
    let sum_cols: f64 = cols.values().map(|&x| pairs(x)).sum();
    let expected = sum_rows * sum_cols / pairs(n as u64);
    let max = (sum_rows + sum_cols) / 2.0;
    if (max - expected).abs() < f64::EPSILON { 1.0 } else { (index - expected) / (max - expected) }
}

#[cfg(test)]
mod tests {
    use super::adjusted_rand_index;

    #[test]
    fn identical_renamed_and_unrelated_partitions() {
        let a = [0, 0, 1, 1, 2, 2];
        assert!((adjusted_rand_index(&a, &[5, 5, 3, 3, 9, 9]) - 1.0).abs() < 1e-12);
        assert!(adjusted_rand_index(&a, &[0, 1, 0, 1, 0, 1]) < 0.0);
        let partial = adjusted_rand_index(&a, &[0, 0, 1, 1, 1, 1]);
        assert!(partial > 0.3 && partial < 0.9, "{partial}");
    }
}
