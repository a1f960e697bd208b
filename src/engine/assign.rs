//! Deterministic split assignment, compatible with GrowthBook's SDKs: the same seed, user, hash
//! version, coverage and weights put a user in the same arm here as in a GrowthBook client.
//!
//! GrowthBook hashes JavaScript strings, i.e. UTF-16 code units. Our users and seeds are bytes, so
//! they are read as UTF-8 (invalid sequences become U+FFFD) and hashed as UTF-16 code units.

/// Which of GrowthBook's hashing algorithms to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashVersion {
    /// The original algorithm: `(fnv1a32(user + seed) % 1000) / 1000` (biased, kept for old
    /// experiments).
    V1,
    /// The unbiased algorithm and the default:
    /// `(fnv1a32(decimal(fnv1a32(seed + user))) % 10000) / 10000`.
    #[default]
    V2,
}

impl HashVersion {
    /// The version with GrowthBook's number (1 or 2); `None` for any other.
    pub fn from_number(n: u64) -> Option<Self> {
        match n {
            1 => Some(HashVersion::V1),
            2 => Some(HashVersion::V2),
            _ => None,
        }
    }

    pub fn number(self) -> u8 {
        match self {
            HashVersion::V1 => 1,
            HashVersion::V2 => 2,
        }
    }
}

const FNV_OFFSET: u32 = 0x811C_9DC5;
const FNV_PRIME: u32 = 0x0100_0193;

/// FNV-1a, 32 bits, over a sequence of UTF-16 code units (as GrowthBook's `hashFnv32a`).
pub fn fnv1a32_units(units: impl IntoIterator<Item = u16>) -> u32 {
    units.into_iter().fold(FNV_OFFSET, |h, c| {
        (h ^ u32::from(c)).wrapping_mul(FNV_PRIME)
    })
}

/// FNV-1a 32 over the UTF-16 code units of `s`.
pub fn fnv1a32(s: &str) -> u32 {
    fnv1a32_units(s.encode_utf16())
}

/// FNV-1a 32 over the UTF-16 code units of the concatenation of `parts`, each read as UTF-8.
fn fnv1a32_concat(parts: &[&[u8]]) -> u32 {
    // Each part is decoded on its own, as GrowthBook concatenates already-decoded strings.
    let mut s = String::new();
    for p in parts {
        s.push_str(&String::from_utf8_lossy(p));
    }
    fnv1a32(&s)
}

/// GrowthBook's `hash(seed, value, version)`: a number in [0, 1).
pub fn hash(seed: &[u8], user: &[u8], version: HashVersion) -> f64 {
    match version {
        HashVersion::V1 => f64::from(fnv1a32_concat(&[user, seed]) % 1000) / 1000.0,
        HashVersion::V2 => {
            let inner = fnv1a32_concat(&[seed, user]).to_string();
            f64::from(fnv1a32(&inner) % 10_000) / 10_000.0
        }
    }
}

/// GrowthBook's `getEqualWeights(n)`.
pub fn equal_weights(n: usize) -> Vec<f64> {
    if n == 0 {
        return Vec::new();
    }
    vec![1.0 / n as f64; n]
}

/// The half-open interval `[start, end)` of hash values that land in one arm.
pub type BucketRange = (f64, f64);

/// GrowthBook's `getBucketRanges(numVariations, coverage, weights)`: coverage is clamped to
/// [0, 1]; missing weights, weights of the wrong length, or weights that do not sum to 1 within
/// 0.01 are replaced by equal weights; arm i gets `[cum, cum + coverage * w_i)` and then
/// `cum += w_i`.
pub fn bucket_ranges(arms: usize, coverage: f64, weights: Option<&[f64]>) -> Vec<BucketRange> {
    // NaN coverage is treated as full coverage, as an `undefined` coverage is in GrowthBook.
    let coverage = if coverage.is_nan() {
        1.0
    } else {
        coverage.clamp(0.0, 1.0)
    };
    let equal = equal_weights(arms);
    let mut weights = match weights {
        Some(w) if w.len() == arms => w.to_vec(),
        _ => equal.clone(),
    };
    let total: f64 = weights.iter().sum();
    if !(0.99..=1.01).contains(&total) {
        weights = equal;
    }
    let mut cumulative = 0.0;
    weights
        .iter()
        .map(|w| {
            let start = cumulative;
            cumulative += w;
            (start, start + coverage * w)
        })
        .collect()
}

/// GrowthBook's `chooseVariation(n, ranges)`: the first range containing `n`, if any.
pub fn choose_variation(n: f64, ranges: &[BucketRange]) -> Option<usize> {
    ranges.iter().position(|&(lo, hi)| n >= lo && n < hi)
}

/// Rescales configured weights (e.g. `70 30`) into shares that sum to 1. Weights that already sum
/// to 1 within 0.01 are kept as they are, so they reach [`bucket_ranges`] exactly as a GrowthBook
/// client configured with the same numbers sees them. Negative or non-finite weights count as 0;
/// if nothing positive remains, every arm gets an equal share.
pub fn normalize_weights(weights: &[f64]) -> Vec<f64> {
    let clean: Vec<f64> = weights
        .iter()
        .map(|&w| if w.is_finite() && w > 0.0 { w } else { 0.0 })
        .collect();
    let total: f64 = clean.iter().sum();
    if (0.99..=1.01).contains(&total) {
        clean
    } else if total > 0.0 && total.is_finite() {
        clean.iter().map(|w| w / total).collect()
    } else {
        equal_weights(weights.len())
    }
}

/// The arm a user gets in a split experiment, or `None` when the user falls outside the coverage.
/// `weights` are the configured weights, normalized with [`normalize_weights`].
pub fn assign(
    seed: &[u8],
    user: &[u8],
    version: HashVersion,
    coverage: f64,
    weights: &[f64],
) -> Option<usize> {
    let ranges = bucket_ranges(weights.len(), coverage, Some(&normalize_weights(weights)));
    choose_variation(hash(seed, user, version), &ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The `hash` cases of GrowthBook's JavaScript SDK test suite, copied verbatim from
    // growthbook/growthbook `packages/sdk-js/test/cases.json` (specVersion 0.8.0, commit
    // 05fe635c749bf7bac92cc5221cf523b69d572ada): [seed, value, version, expected].
    const HASH_CASES: &[(&str, &str, u64, Option<f64>)] = &[
        ("", "a", 1, Some(0.22)),
        ("", "b", 1, Some(0.077)),
        ("b", "a", 1, Some(0.946)),
        ("ef", "d", 1, Some(0.652)),
        ("asdf", "8952klfjas09ujk", 1, Some(0.549)),
        ("", "123", 1, Some(0.011)),
        ("", "___)((*\":&", 1, Some(0.563)),
        ("seed", "a", 2, Some(0.0505)),
        ("seed", "b", 2, Some(0.2696)),
        ("foo", "ab", 2, Some(0.2575)),
        ("foo", "def", 2, Some(0.2019)),
        ("89123klj", "8952klfjas09ujkasdf", 2, Some(0.124)),
        ("90850943850283058242805", "123", 2, Some(0.7516)),
        ("()**(%$##$%#$#", "___)((*\":&", 2, Some(0.0128)),
        ("abc", "def", 99, None),
    ];

    #[test]
    fn growthbook_hash_vectors() {
        for &(seed, value, version, expected) in HASH_CASES {
            let got = HashVersion::from_number(version)
                .map(|v| hash(seed.as_bytes(), value.as_bytes(), v));
            // GrowthBook computes the same integer division in doubles, so equality is exact.
            assert_eq!(got, expected, "hash({seed:?}, {value:?}, {version})");
        }
    }

    // The `getBucketRange` cases of the same file: (name, numVariations, coverage, weights,
    // expected ranges).
    #[allow(clippy::type_complexity)]
    const RANGE_CASES: &[(&str, usize, f64, Option<&[f64]>, &[(f64, f64)])] = &[
        ("normal 50/50", 2, 1.0, None, &[(0.0, 0.5), (0.5, 1.0)]),
        (
            "reduced coverage",
            2,
            0.5,
            None,
            &[(0.0, 0.25), (0.5, 0.75)],
        ),
        ("zero coverage", 2, 0.0, None, &[(0.0, 0.0), (0.5, 0.5)]),
        (
            "4 variations",
            4,
            1.0,
            None,
            &[(0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0)],
        ),
        (
            "uneven weights",
            2,
            1.0,
            Some(&[0.4, 0.6]),
            &[(0.0, 0.4), (0.4, 1.0)],
        ),
        (
            "uneven weights, 3 variations",
            3,
            1.0,
            Some(&[0.2, 0.3, 0.5]),
            &[(0.0, 0.2), (0.2, 0.5), (0.5, 1.0)],
        ),
        (
            "uneven weights, reduced coverage, 3 variations",
            3,
            0.2,
            Some(&[0.2, 0.3, 0.5]),
            &[(0.0, 0.04), (0.2, 0.26), (0.5, 0.6)],
        ),
        (
            "negative coverage",
            2,
            -0.2,
            None,
            &[(0.0, 0.0), (0.5, 0.5)],
        ),
        ("coverage above 1", 2, 1.5, None, &[(0.0, 0.5), (0.5, 1.0)]),
        (
            "weights sum below 1",
            2,
            1.0,
            Some(&[0.4, 0.1]),
            &[(0.0, 0.5), (0.5, 1.0)],
        ),
        (
            "weights sum above 1",
            2,
            1.0,
            Some(&[0.7, 0.6]),
            &[(0.0, 0.5), (0.5, 1.0)],
        ),
        (
            "weights.length not equal to num variations",
            4,
            1.0,
            Some(&[0.4, 0.4, 0.2]),
            &[(0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0)],
        ),
        (
            "weights sum almost equals 1",
            2,
            1.0,
            Some(&[0.4, 0.5999]),
            &[(0.0, 0.4), (0.4, 0.9999)],
        ),
    ];

    #[test]
    fn growthbook_bucket_range_vectors() {
        for &(name, n, coverage, weights, expected) in RANGE_CASES {
            let got = bucket_ranges(n, coverage, weights);
            assert_eq!(got.len(), expected.len(), "{name}");
            for (g, e) in got.iter().zip(expected) {
                // The SDK's own test rounds to 6 decimals (0.2 * 0.3 is not exactly 0.06).
                assert!(
                    (g.0 - e.0).abs() < 1e-9 && (g.1 - e.1).abs() < 1e-9,
                    "{name}: {got:?}"
                );
            }
        }
    }

    // The `chooseVariation` cases of the same file: (name, n, ranges, expected; -1 is none).
    #[allow(clippy::type_complexity)]
    const CHOOSE_CASES: &[(&str, f64, &[(f64, f64)], i64)] = &[
        ("even range, 0.2", 0.2, &[(0.0, 0.5), (0.5, 1.0)], 0),
        ("even range, 0.4", 0.4, &[(0.0, 0.5), (0.5, 1.0)], 0),
        ("even range, 0.6", 0.6, &[(0.0, 0.5), (0.5, 1.0)], 1),
        ("even range, 0.8", 0.8, &[(0.0, 0.5), (0.5, 1.0)], 1),
        ("even range, 0", 0.0, &[(0.0, 0.5), (0.5, 1.0)], 0),
        ("even range, 0.5", 0.5, &[(0.0, 0.5), (0.5, 1.0)], 1),
        ("reduced range, 0.2", 0.2, &[(0.0, 0.25), (0.5, 0.75)], 0),
        ("reduced range, 0.4", 0.4, &[(0.0, 0.25), (0.5, 0.75)], -1),
        ("reduced range, 0.6", 0.6, &[(0.0, 0.25), (0.5, 0.75)], 1),
        ("reduced range, 0.8", 0.8, &[(0.0, 0.25), (0.5, 0.75)], -1),
        ("reduced range, 0.25", 0.25, &[(0.0, 0.25), (0.5, 0.75)], -1),
        ("reduced range, 0.5", 0.5, &[(0.0, 0.25), (0.5, 0.75)], 1),
        ("zero range", 0.5, &[(0.0, 0.5), (0.5, 0.5), (0.5, 1.0)], 2),
    ];

    #[test]
    fn growthbook_choose_variation_vectors() {
        for &(name, n, ranges, expected) in CHOOSE_CASES {
            let got = choose_variation(n, ranges).map_or(-1, |i| i as i64);
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn fnv_matches_the_reference_and_counts_utf16_units() {
        // Published FNV-1a 32 test values (ASCII, so bytes and UTF-16 units agree).
        assert_eq!(fnv1a32(""), 0x811C_9DC5);
        assert_eq!(fnv1a32("a"), 0xE40C_292C);
        assert_eq!(fnv1a32("foobar"), 0xBF9C_F968);
        // Non-ASCII text hashes its UTF-16 code units, not its UTF-8 bytes: "é" is one unit,
        // "😀" is a surrogate pair.
        assert_eq!(fnv1a32("é"), fnv1a32_units([0x00E9]));
        assert_eq!(fnv1a32("😀"), fnv1a32_units([0xD83D, 0xDE00]));
        assert_eq!(
            fnv1a32_concat(&["é".as_bytes(), "😀".as_bytes()]),
            fnv1a32("é😀")
        );
        // Invalid UTF-8 becomes U+FFFD, and never panics.
        assert_eq!(fnv1a32_concat(&[&[0xFF]]), fnv1a32("\u{FFFD}"));
    }

    #[test]
    fn weights_are_normalized_before_growthbook_sees_them() {
        assert_eq!(normalize_weights(&[70.0, 30.0]), vec![0.7, 0.3]);
        assert_eq!(normalize_weights(&[1.0, 1.0]), vec![0.5, 0.5]);
        // Already summing to 1 within 0.01: untouched, as GrowthBook would use them.
        assert_eq!(normalize_weights(&[0.4, 0.5999]), vec![0.4, 0.5999]);
        assert_eq!(normalize_weights(&[0.0, 0.0]), vec![0.5, 0.5]);
        assert_eq!(normalize_weights(&[f64::NAN, 2.0]), vec![0.0, 1.0]);
        assert!(normalize_weights(&[]).is_empty());
    }

    #[test]
    fn split_respects_weights_and_coverage_and_is_deterministic() {
        let users: Vec<String> = (0..100_000).map(|i| format!("user{i}")).collect();
        let mut counts = [0usize; 3];
        let mut out = 0;
        for u in &users {
            match assign(b"exp", u.as_bytes(), HashVersion::V2, 1.0, &[5.0, 3.0, 2.0]) {
                Some(i) => counts[i] += 1,
                None => out += 1,
            }
        }
        assert_eq!(out, 0);
        for (c, w) in counts.iter().zip([0.5, 0.3, 0.2]) {
            let share = *c as f64 / users.len() as f64;
            assert!((share - w).abs() < 0.01, "{counts:?}");
        }
        let outside = users
            .iter()
            .filter(|u| assign(b"exp", u.as_bytes(), HashVersion::V2, 0.5, &[1.0, 1.0]).is_none())
            .count();
        assert!((outside as f64 / users.len() as f64 - 0.5).abs() < 0.01);
        // Same inputs, same arm; v1 also stays within [0, 1).
        for u in users.iter().take(1000) {
            let a = assign(b"s", u.as_bytes(), HashVersion::V1, 1.0, &[1.0, 1.0]);
            assert_eq!(
                a,
                assign(b"s", u.as_bytes(), HashVersion::V1, 1.0, &[1.0, 1.0])
            );
            assert!(a.is_some());
        }
        assert_eq!(assign(b"s", b"u", HashVersion::V2, 1.0, &[]), None);
    }

    #[test]
    fn version_numbers() {
        assert_eq!(HashVersion::from_number(1), Some(HashVersion::V1));
        assert_eq!(HashVersion::from_number(2), Some(HashVersion::V2));
        assert_eq!(HashVersion::from_number(0), None);
        assert_eq!(HashVersion::V1.number(), 1);
        assert_eq!(HashVersion::default(), HashVersion::V2);
    }
}
