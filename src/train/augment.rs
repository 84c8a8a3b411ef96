//! Augmentation of the training digits: every epoch, each digit of each training pair moved,
//! turned and scaled by a random amount drawn from the round's own stream, resampled
//! bilinearly with zeros (no ink) outside. Labels are untouched; validation and test digits
//! are never augmented.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::data::{PIXELS, SIDE};
use crate::spec::Augment;

/// One digit's transform: a shift in pixels, a rotation in degrees and a scale, about the
/// image's centre.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine {
    pub dx: f64,
    pub dy: f64,
    pub degrees: f64,
    pub scale: f64,
}

impl Affine {
    /// A transform drawn from `rng` within `a`'s bounds.
    pub fn draw(a: &Augment, rng: &mut ChaCha8Rng) -> Affine {
        let mut within = |bound: f64| {
            if bound > 0.0 {
                rng.gen_range(-bound..=bound)
            } else {
                0.0
            }
        };
        Affine {
            dx: within(f64::from(a.shift)),
            dy: within(f64::from(a.shift)),
            degrees: within(f64::from(a.rotate)),
            scale: 1.0 + within(f64::from(a.scale)),
        }
    }

    /// `image` (14 x 14 raw pixel values) transformed: output pixel `p` takes the input at
    /// the inverse transform of `p`, bilinearly, 0 outside the image.
    pub fn apply(&self, image: &[f32]) -> Vec<f32> {
        let c = (SIDE as f64 - 1.0) / 2.0;
        let (sin, cos) = (-self.degrees.to_radians()).sin_cos();
        let at = |x: i64, y: i64| -> f64 {
            if (0..SIDE as i64).contains(&x) && (0..SIDE as i64).contains(&y) {
                f64::from(image[y as usize * SIDE + x as usize])
            } else {
                0.0
            }
        };
        let mut out = Vec::with_capacity(PIXELS);
        for y in 0..SIDE {
            for x in 0..SIDE {
                // Undo the shift, then the scale, then the rotation, about the centre.
                let (u, v) = (
                    (x as f64 - c - self.dx) / self.scale,
                    (y as f64 - c - self.dy) / self.scale,
                );
                let (sx, sy) = (cos * u - sin * v + c, sin * u + cos * v + c);
                let (x0, y0) = (sx.floor(), sy.floor());
                let (fx, fy) = (sx - x0, sy - y0);
                let (x0, y0) = (x0 as i64, y0 as i64);
                let value = at(x0, y0) * (1.0 - fx) * (1.0 - fy)
                    + at(x0 + 1, y0) * fx * (1.0 - fy)
                    + at(x0, y0 + 1) * (1.0 - fx) * fy
                    + at(x0 + 1, y0 + 1) * fx * fy;
                out.push(value as f32);
            }
        }
        out
    }
}

/// `pairs` (`n x 2 x 14 x 14` raw values) with every digit transformed by its own draw.
pub fn augment(pairs: &[f32], a: &Augment, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let mut out = Vec::with_capacity(pairs.len());
    for digit in pairs.chunks_exact(PIXELS) {
        out.extend(Affine::draw(a, rng).apply(digit));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn dot() -> Vec<f32> {
        let mut im = vec![0.0; PIXELS];
        im[5 * SIDE + 4] = 200.0;
        im
    }

    #[test]
    fn the_identity_and_whole_pixel_shifts_are_exact() {
        let none = Affine {
            dx: 0.0,
            dy: 0.0,
            degrees: 0.0,
            scale: 1.0,
        };
        assert_eq!(none.apply(&dot()), dot());
        let right_down = Affine {
            dx: 1.0,
            dy: 2.0,
            ..none
        };
        let moved = right_down.apply(&dot());
        assert_eq!(moved[7 * SIDE + 5], 200.0);
        assert_eq!(moved.iter().filter(|&&v| v != 0.0).count(), 1);
        // A quarter turn about the centre (6.5, 6.5) takes (4, 5) to (8, 4) or (5, 9).
        let turn = Affine {
            degrees: 90.0,
            ..none
        };
        let t = turn.apply(&dot());
        let at = t.iter().position(|&v| (v - 200.0).abs() < 1e-3).unwrap();
        assert!([(8, 4), (5, 9)].contains(&(at % SIDE, at / SIDE)), "{at}");
    }

    #[test]
    fn draws_follow_the_seed_and_stay_in_bounds() {
        let a = Augment {
            shift: 2.0,
            rotate: 10.0,
            scale: 0.1,
        };
        let pairs: Vec<f32> = (0..3 * 2 * PIXELS).map(|i| (i % 255) as f32).collect();
        let run = |seed| augment(&pairs, &a, &mut ChaCha8Rng::seed_from_u64(seed));
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..100 {
            let d = Affine::draw(&a, &mut rng);
            assert!(d.dx.abs() <= 2.0 && d.dy.abs() <= 2.0 && d.degrees.abs() <= 10.0);
            assert!((0.9..=1.1).contains(&d.scale));
        }
    }
}
