//! The simulator's pseudo-random numbers: xoshiro256** seeded through SplitMix64.
//!
//! Invariants: integer-only and platform-independent, so a seed replays bit for bit everywhere;
//! every random stream is derived from the configured seed and a label (never from the clock).

/// A small, fast, deterministic generator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng {
    s: [u64; 4],
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a of a label, to derive independent streams from one seed.
fn label_hash(label: &str) -> u64 {
    label.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        let mut state = seed;
        Self { s: [splitmix(&mut state), splitmix(&mut state), splitmix(&mut state), splitmix(&mut state)] }
    }

    /// An independent generator for `seed` and `label` (e.g. a symbol).
    pub fn derive(seed: u64, label: &str) -> Self {
        Self::new(seed ^ label_hash(label).rotate_left(17))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Lemire's multiply-shift; the tiny bias is irrelevant for simulation.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi` (`lo` when `hi < lo`).
    pub fn range_i64(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        let span = hi.abs_diff(lo).saturating_add(1);
        lo.wrapping_add_unsigned(self.below(span))
    }

    /// True with probability `ppm` parts per million.
    pub fn chance_ppm(&mut self, ppm: u32) -> bool {
        self.below(1_000_000) < u64::from(ppm)
    }

    /// An approximately normal integer with mean 0 and standard deviation `sigma` (Irwin-Hall
    /// sum of four uniforms), computed without floating point.
    pub fn normal_i64(&mut self, sigma: i64) -> i64 {
        if sigma <= 0 {
            return 0;
        }
        // Sum of 4 uniforms on [-u, u] has variance 4u²/3; u = sigma * sqrt(3)/2 ≈ sigma * 866/1000.
        let u = sigma.saturating_mul(866) / 1000;
        (0..4).map(|_| self.range_i64(-u, u)).fold(0i64, i64::saturating_add)
    }

    /// An exponential-ish wait with the given mean, in the same unit, at least 1.
    pub fn wait_around(&mut self, mean: u64) -> u64 {
        // Uniform on [mean/2, 3*mean/2]: bounded, mean-preserving and cheap.
        let lo = mean / 2;
        (lo + self.below(mean + 1)).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_different_labels_differ() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        assert!((0..100).all(|_| a.next_u64() == b.next_u64()));
        let mut x = Rng::derive(42, "AAPL");
        let mut y = Rng::derive(42, "MSFT");
        assert_ne!(x.next_u64(), y.next_u64());
    }

    #[test]
    fn ranges_hold() {
        let mut r = Rng::new(7);
        for _ in 0..10_000 {
            let v = r.range_i64(-3, 5);
            assert!((-3..=5).contains(&v));
            assert!(r.below(10) < 10);
            assert!(r.wait_around(100) >= 50);
        }
        assert_eq!(r.below(0), 0);
        assert_eq!(r.range_i64(5, 1), 5);
    }

    #[test]
    fn normal_has_roughly_the_asked_spread() {
        let mut r = Rng::new(1);
        let n = 20_000i64;
        let samples: Vec<i64> = (0..n).map(|_| r.normal_i64(1000)).collect();
        let mean = samples.iter().sum::<i64>() / n;
        let var = samples.iter().map(|s| (s - mean) * (s - mean)).sum::<i64>() / n;
        assert!(mean.abs() < 50, "mean {mean}");
        assert!((800_000..1_200_000).contains(&var), "variance {var}");
    }
}
