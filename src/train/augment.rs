//! Augmentation of the training digits: every epoch, each digit of each training pair moved,
//! turned and scaled by a random amount drawn from the round's own stream, and optionally
//! distorted elastically (Simard et al., 2003: a smooth random displacement of every pixel),
//! resampled bilinearly with zeros (no ink) outside. Labels are untouched; validation and test
//! digits are never augmented.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::par;
use crate::spec::Augment;

/// An image's `(height, width)`.
pub type Side = (usize, usize);

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

    /// `image` (raw pixel values, `side`) transformed: output pixel `p` takes the input at
    /// the inverse transform of `p`, bilinearly, 0 outside the image.
    pub fn apply(&self, image: &[f32], side: Side) -> Vec<f32> {
        self.apply_displaced(image, side, None)
    }

    /// [`Affine::apply`], with output pixel `p` reading `displacement[p]` (x, y) pixels away
    /// from where the transform alone would.
    fn apply_displaced(
        &self,
        image: &[f32],
        (h, w): Side,
        displacement: Option<&[[f64; 2]]>,
    ) -> Vec<f32> {
        let (cx, cy) = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
        let (sin, cos) = (-self.degrees.to_radians()).sin_cos();
        let at = |x: i64, y: i64| -> f64 {
            if (0..w as i64).contains(&x) && (0..h as i64).contains(&y) {
                f64::from(image[y as usize * w + x as usize])
            } else {
                0.0
            }
        };
        let mut out = Vec::with_capacity(h * w);
        for y in 0..h {
            for x in 0..w {
                // Undo the shift, then the scale, then the rotation, about the centre.
                let (u, v) = (
                    (x as f64 - cx - self.dx) / self.scale,
                    (y as f64 - cy - self.dy) / self.scale,
                );
                let (mut sx, mut sy) = (cos * u - sin * v + cx, sin * u + cos * v + cy);
                if let Some(d) = displacement {
                    let [ex, ey] = d[y * w + x];
                    (sx, sy) = (sx + ex, sy + ey);
                }
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

/// A smooth random displacement of every pixel, `[x, y]` in pixels: independent uniform noise
/// in [-1, 1] per pixel and axis, blurred by a Gaussian of `sigma` pixels (zero beyond the
/// image), scaled so that each axis's displacement has standard deviation `rms` away from
/// the borders.
pub fn displacement(rms: f64, sigma: f64, (h, w): Side, rng: &mut ChaCha8Rng) -> Vec<[f64; 2]> {
    let r = (3.0 * sigma).ceil() as i64;
    let k: Vec<f64> = (-r..=r)
        .map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f64 = k.iter().sum();
    let k: Vec<f64> = k.iter().map(|v| v / total).collect();
    // Uniform noise on [-1, 1] has standard deviation 1 / sqrt(3); the blur multiplies it by
    // the square root of the sum of the squared 2-D weights, which is this.
    let spread = k.iter().map(|v| v * v).sum::<f64>() / 3f64.sqrt();
    let scale = rms / spread;
    let (hi, wi, pixels) = (h as i64, w as i64, h * w);
    let blur = |v: &[f64], step: (i64, i64)| -> Vec<f64> {
        (0..pixels as i64)
            .map(|p| {
                let (x, y) = (p % wi, p / wi);
                (-r..=r)
                    .filter_map(|i| {
                        let (sx, sy) = (x + i * step.0, y + i * step.1);
                        let inside = (0..wi).contains(&sx) && (0..hi).contains(&sy);
                        inside.then(|| k[(i + r) as usize] * v[(sy * wi + sx) as usize])
                    })
                    .sum()
            })
            .collect()
    };
    let mut axes = [(); 2].map(|_| {
        let noise: Vec<f64> = (0..pixels).map(|_| rng.gen_range(-1.0..=1.0)).collect();
        blur(&blur(&noise, (1, 0)), (0, 1))
    });
    for v in axes.iter_mut().flatten() {
        *v *= scale;
    }
    (0..pixels).map(|p| [axes[0][p], axes[1][p]]).collect()
}

/// `images` (raw values, image after image, each `side`) with every image transformed by
/// its own draw. The draws come from `rng` image by image; the transforms, each of one image,
/// split over the threads.
pub fn augment(images: &[f32], side: Side, a: &Augment, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let area = side.0 * side.1;
    let draws: Vec<(Affine, Option<Vec<[f64; 2]>>)> = (0..images.len() / area.max(1))
        .map(|_| {
            let affine = Affine::draw(a, rng);
            let field = (a.elastic > 0.0)
                .then(|| displacement(f64::from(a.elastic), f64::from(a.elastic_sigma), side, rng));
            (affine, field)
        })
        .collect();
    let mut out = vec![0.0; draws.len() * area];
    // A pixel's bilinear sample costs a few times a value's copy.
    let pieces = par::pieces(draws.len(), out.len() * 4 * par::PER_VALUE);
    let parts = par::Rows(&mut out, area);
    par::split(
        parts,
        (0, draws.len()),
        pieces,
        &|first, _, par::Rows(out, _)| {
            for (i, dst) in (first..).zip(out.chunks_exact_mut(area)) {
                let (affine, field) = &draws[i];
                let image = &images[i * area..][..area];
                dst.copy_from_slice(&affine.apply_displaced(image, side, field.as_deref()));
            }
        },
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const SIDE: usize = 14;
    const PIXELS: usize = SIDE * SIDE;
    const SQUARE: Side = (SIDE, SIDE);

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
        assert_eq!(none.apply(&dot(), SQUARE), dot());
        let right_down = Affine {
            dx: 1.0,
            dy: 2.0,
            ..none
        };
        let moved = right_down.apply(&dot(), SQUARE);
        assert_eq!(moved[7 * SIDE + 5], 200.0);
        assert_eq!(moved.iter().filter(|&&v| v != 0.0).count(), 1);
        // A quarter turn about the centre (6.5, 6.5) takes (4, 5) to (8, 4) or (5, 9).
        let turn = Affine {
            degrees: 90.0,
            ..none
        };
        let t = turn.apply(&dot(), SQUARE);
        let at = t.iter().position(|&v| (v - 200.0).abs() < 1e-3).unwrap();
        assert!([(8, 4), (5, 9)].contains(&(at % SIDE, at / SIDE)), "{at}");
    }

    #[test]
    fn draws_follow_the_seed_and_stay_in_bounds() {
        let a = Augment {
            shift: 2.0,
            rotate: 10.0,
            scale: 0.1,
            ..Augment::NONE
        };
        let pairs: Vec<f32> = (0..3 * 2 * PIXELS).map(|i| (i % 255) as f32).collect();
        let run = |seed| augment(&pairs, SQUARE, &a, &mut ChaCha8Rng::seed_from_u64(seed));
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..100 {
            let d = Affine::draw(&a, &mut rng);
            assert!(d.dx.abs() <= 2.0 && d.dy.abs() <= 2.0 && d.degrees.abs() <= 10.0);
            assert!((0.9..=1.1).contains(&d.scale));
        }
    }

    #[test]
    fn elastic_displacements_are_smooth_seeded_and_of_the_asked_size() {
        let draw = |seed| displacement(0.8, 2.0, SQUARE, &mut ChaCha8Rng::seed_from_u64(seed));
        assert_eq!(draw(4), draw(4));
        assert_ne!(draw(4), draw(5));
        // Over many fields: each axis's spread at the centre is the asked 0.8 pixels, and
        // neighbours move together (independent noise would give a correlation near 0).
        let (mut sq, mut near, mut count) = (0.0, 0.0, 0.0);
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        for _ in 0..2000 {
            let f = displacement(0.8, 2.0, SQUARE, &mut rng);
            for (c, right) in f[6 * SIDE + 6].into_iter().zip(f[6 * SIDE + 7]) {
                sq += c * c;
                near += c * right;
                count += 1.0;
            }
        }
        let rms = (sq / count).sqrt();
        assert!((rms - 0.8).abs() < 0.04, "rms {rms}");
        let correlation = near / sq;
        assert!(correlation > 0.8, "correlation {correlation}");
    }

    #[test]
    fn an_elastic_distortion_moves_ink_a_little_and_follows_the_seed() {
        let a = Augment {
            elastic: 1.0,
            ..Augment::NONE
        };
        let mut digit = vec![0.0; PIXELS];
        for y in 3..11 {
            digit[y * SIDE + 7] = 255.0;
        }
        let pair = [digit.clone(), digit.clone()].concat();
        let run = |seed| augment(&pair, SQUARE, &a, &mut ChaCha8Rng::seed_from_u64(seed));
        assert_eq!(run(1), run(1));
        let out = run(1);
        assert_ne!(out[..PIXELS], digit[..], "no distortion");
        assert_ne!(out[..PIXELS], out[PIXELS..], "both digits distorted alike");
        // A stroke bent by about a pixel: the ink stays near column 7 and keeps most of its
        // mass.
        for image in out.chunks(PIXELS) {
            let ink: f32 = image.iter().sum();
            let far: f32 = (0..PIXELS)
                .filter(|p| (p % SIDE).abs_diff(7) > 3)
                .map(|p| image[p])
                .sum();
            assert!(ink > 0.7 * 8.0 * 255.0 && far < 0.05 * ink, "{ink} {far}");
        }
    }
}

#[cfg(test)]
mod rectangles {
    use super::*;

    /// On a wide image a whole-pixel shift is exact, and a half turn maps the corners onto
    /// each other about the centre of each axis.
    #[test]
    fn transforms_use_each_axis_own_size() {
        let (h, w) = (4, 7);
        let mut im = vec![0.0; h * w];
        im[w + 2] = 100.0; // (x 2, y 1)
        let shift = Affine {
            dx: 3.0,
            dy: 1.0,
            degrees: 0.0,
            scale: 1.0,
        };
        let out = shift.apply(&im, (h, w));
        assert_eq!(out[2 * w + 5], 100.0);
        let half = Affine {
            dx: 0.0,
            dy: 0.0,
            degrees: 180.0,
            scale: 1.0,
        };
        let out = half.apply(&im, (h, w));
        let at = out.iter().position(|&v| (v - 100.0).abs() < 1e-3).unwrap();
        assert_eq!((at % w, at / w), (w - 1 - 2, h - 1 - 1));
    }
}
