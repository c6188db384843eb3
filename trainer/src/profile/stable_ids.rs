//! Stable profile ids across retrains: new centroids are matched to the previous model's by a
//! minimum-cost assignment (Hungarian algorithm); a new centroid too far from every old one
//! gets a fresh id, and old ids left unmatched are retired.

use prewarm_shared::ProfileId;

/// Minimum-cost assignment of rows to columns (rows ≤ columns): `result[row] = column`.
/// O(rows² · columns), the classic potentials formulation.
pub fn hungarian(cost: &[Vec<f64>]) -> Vec<usize> {
    let n = cost.len();
    let m = cost.first().map_or(0, Vec::len);
    if n == 0 || m < n {
        return Vec::new();
    }
    let inf = f64::INFINITY;
    let (mut u, mut v) = (vec![0.0; n + 1], vec![0.0; m + 1]);
    let (mut p, mut way) = (vec![0usize; m + 1], vec![0usize; m + 1]);
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![inf; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = inf;
            let mut j1 = 0;
            for j in 1..=m {
                if !used[j] {
                    let cur = cost[i0 - 1][j - 1] - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=m {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut result = vec![0; n];
    for j in 1..=m {
        if p[j] != 0 {
            result[p[j] - 1] = j - 1;
        }
    }
    result
}

/// The outcome of matching a retrain to the previous model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdAssignment {
    /// The id of each new centroid, in order.
    pub ids: Vec<ProfileId>,
    /// Previous ids no new centroid took over.
    pub retired: Vec<ProfileId>,
}

/// Gives each new centroid an id. `distance(new, old)` compares centroids in common units;
/// `next_id` is the first id never used before (ids are not recycled).
pub fn assign_ids(
    new_count: usize,
    old_ids: &[ProfileId],
    distance: impl Fn(usize, usize) -> f64,
    max_distance: f64,
    mut next_id: u16,
) -> IdAssignment {
    let mut ids = vec![None; new_count];
    if !old_ids.is_empty() && new_count > 0 {
        // Every pair too far to match costs the same: otherwise one outlier far from everything
        // would pull the matching towards a smaller total distance and swap good matches.
        // Dummy rows or columns square the problem up at that same cost.
        let cap = max_distance * 1.000_001 + 1e-9;
        let size = new_count.max(old_ids.len());
        let cost: Vec<Vec<f64>> = (0..size)
            .map(|i| {
                (0..size)
                    .map(|j| if i < new_count && j < old_ids.len() { distance(i, j).min(cap) } else { cap })
                    .collect()
            })
            .collect();
        for (i, j) in hungarian(&cost).into_iter().enumerate().take(new_count) {
            if j < old_ids.len() && distance(i, j) <= max_distance {
                ids[i] = Some(old_ids[j]);
            }
        }
    }
    let ids: Vec<ProfileId> = ids
        .into_iter()
        .map(|id| {
            id.unwrap_or_else(|| {
                let id = ProfileId(next_id);
                next_id = next_id.saturating_add(1);
                id
            })
        })
        .collect();
    let retired = old_ids.iter().copied().filter(|old| !ids.contains(old)).collect();
    IdAssignment { ids, retired }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hungarian_finds_the_cheapest_matching() {
        let cost = vec![vec![4.0, 1.0, 3.0], vec![2.0, 0.0, 5.0], vec![3.0, 2.0, 2.0]];
        let m = hungarian(&cost);
        let total: f64 = m.iter().enumerate().map(|(i, &j)| cost[i][j]).sum();
        assert_eq!(total, 5.0);
        assert_eq!(m, vec![1, 0, 2]);
    }

    #[test]
    fn shifted_centroids_keep_their_ids_and_far_ones_get_new_ids() {
        let old = [ProfileId(7), ProfileId(3), ProfileId(9)];
        let old_pos = [0.0f64, 10.0, 20.0];
        // New centroids: near 20, near 0, and one far from everything.
        let new_pos = [19.5f64, 0.4, 50.0];
        let a = assign_ids(3, &old, |i, j| (new_pos[i] - old_pos[j]).abs(), 2.0, 10);
        assert_eq!(a.ids, vec![ProfileId(9), ProfileId(7), ProfileId(10)]);
        assert_eq!(a.retired, vec![ProfileId(3)]);
    }
}
