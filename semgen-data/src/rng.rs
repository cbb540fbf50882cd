//! An explicitly keyed, counter-based random number generator.
//!
//! Every random choice in the Shapes world is drawn from a stream keyed by
//! `(world seed, split, index, purpose, ...)`. Streams never share state, so a clip is a pure
//! function of its key: the same bytes come out whatever order, thread or machine renders it.
//! The mixer is SplitMix64 (Steele, Lea & Flood 2014), whose output function is a good 64-bit hash.

/// The SplitMix64 increment (the golden ratio in 64-bit fixed point).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function: a bijective 64-bit mixer.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes a key (a list of words) to one word; order matters, so `[a, b] != [b, a]`.
pub fn hash_key(key: &[u64]) -> u64 {
    key.iter().fold(0x5EED_0F5E_3A7A_u64, |h, &k| {
        mix64(h.wrapping_add(GAMMA) ^ mix64(k.wrapping_add(GAMMA)))
    })
}

/// A uniform `f32` in `[-1, 1)` that is a pure function of the key: used for lattice noise
/// and speckle, where every pixel asks for its own value.
pub fn hash_signed(key: &[u64]) -> f32 {
    let bits = hash_key(key) >> 40; // 24 bits: exact in f32
    (bits as f32 / (1u64 << 23) as f32) - 1.0
}

/// A SplitMix64 stream: the n-th output is `mix64(start + n * GAMMA)`.
#[derive(Debug, Clone)]
pub struct KeyedRng {
    state: u64,
}

impl KeyedRng {
    /// A stream keyed by the given words, e.g. `[seed, split, index, PURPOSE]`.
    pub fn new(key: &[u64]) -> Self {
        Self {
            state: hash_key(key),
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        mix64(self.state)
    }

    /// A uniform `f64` in `[0, 1)` with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A uniform `f64` in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// A uniform integer in `0..n` (`n > 0`), by rejection so that it is exactly uniform.
    pub fn below(&mut self, n: usize) -> usize {
        let n = n.max(1) as u64;
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next_u64();
            if x < zone {
                return (x % n) as usize;
            }
        }
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A uniform point in the unit disc scaled by `radius`, by rejection (no trigonometry,
    /// whose last bits differ between C libraries).
    pub fn in_disc(&mut self, radius: f64) -> [f64; 2] {
        loop {
            let x = self.uniform(-1.0, 1.0);
            let y = self.uniform(-1.0, 1.0);
            if x * x + y * y <= 1.0 {
                return [x * radius, y * radius];
            }
        }
    }

    /// A uniform unit vector, by normalising a rejection-sampled point of the disc.
    pub fn unit_vector(&mut self) -> [f64; 2] {
        loop {
            let [x, y] = self.in_disc(1.0);
            let n = (x * x + y * y).sqrt(); // sqrt is correctly rounded by IEEE 754
            if n > 1e-3 {
                return [x / n, y / n];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_depend_on_every_key_word_and_its_order() {
        let a = KeyedRng::new(&[1, 2, 3]).next_u64();
        assert_ne!(a, KeyedRng::new(&[1, 2, 4]).next_u64());
        assert_ne!(a, KeyedRng::new(&[2, 1, 3]).next_u64());
        assert_eq!(a, KeyedRng::new(&[1, 2, 3]).next_u64());
    }

    #[test]
    fn below_and_unit_stay_in_range() {
        let mut rng = KeyedRng::new(&[7]);
        let mut seen = [0usize; 5];
        for _ in 0..5000 {
            seen[rng.below(5)] += 1;
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
            let s = hash_signed(&[rng.next_u64()]);
            assert!((-1.0..1.0).contains(&s));
        }
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
    }
}
