//! Joining the two digits' outputs into one feature row per pair.

use dfdx::prelude::HasShape;
use dfdx::prelude::{Merge, SplitTape, TensorFromVec};
use dfdx::tensor::PutTape;

use super::{Act, OpTape, add_into, unary_op, values};

/// Pairs up rows of `d` `(2B, F..)`, where rows `2i` and `2i+1` are the two digits of pair `i`
/// (how a shared digit network sees the batch): gives `(B, 2F, 1, 1)`, each row the first
/// digit's features then the second's, or the reverse when `swap`.
pub fn pair_features<T: OpTape>(d: Act<T>, swap: bool) -> Act<T> {
    let (rows, c, h, w) = *d.shape();
    let f = c * h * w;
    let pairs = rows / 2;
    let mut out = values(&d);
    if swap {
        for row in out.chunks_exact_mut(2 * f) {
            row.rotate_left(f);
        }
    }
    unary_op(d, out, (pairs, 2 * f, 1, 1), move |gy, _| {
        let mut gx = gy.to_vec();
        if swap {
            for row in gx.chunks_exact_mut(2 * f) {
                row.rotate_left(f);
            }
        }
        Ok(Some(gx))
    })
}

/// Concatenates the features of `a` `(B, Fa..)` and `b` `(B, Fb..)`: `(B, Fa+Fb, 1, 1)`.
/// Both tapes are merged into the result.
pub fn concat_features<T: OpTape + Merge<T>>(a: Act<T>, b: Act<T>) -> Act<T> {
    let (n, ac, ah, aw) = *a.shape();
    let (nb, bc, bh, bw) = *b.shape();
    assert_eq!(n, nb, "concat_features: batch sizes differ");
    let (fa, fb) = (ac * ah * aw, bc * bh * bw);
    let (av, bv) = (values(&a), values(&b));
    let mut out = Vec::with_capacity(n * (fa + fb));
    for i in 0..n {
        out.extend_from_slice(&av[i * fa..(i + 1) * fa]);
        out.extend_from_slice(&bv[i * fb..(i + 1) * fb]);
    }
    let (a, ta) = a.split_tape();
    let (b, tb) = b.split_tape();
    let mut tape = ta.merge(tb);
    let y = a.device().tensor_from_vec(out, (n, fa + fb, 1, 1));
    if T::OWNS_TAPE {
        let (ag, bg, yg) = (a.ghost(), b.ghost(), y.ghost());
        tape.add_backward_op(move |grads| {
            let gy = std::mem::take(&mut **grads.get_or_alloc_mut(&yg)?);
            let (mut ga, mut gb) = (Vec::with_capacity(n * fa), Vec::with_capacity(n * fb));
            for row in gy.chunks_exact(fa + fb) {
                ga.extend_from_slice(&row[..fa]);
                gb.extend_from_slice(&row[fa..]);
            }
            add_into(grads.get_or_alloc_mut(&ag)?, &ga);
            add_into(grads.get_or_alloc_mut(&bg)?, &gb);
            Ok(())
        });
    }
    y.put_tape(tape)
}
