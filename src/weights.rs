//! Kept weights: a round's trained networks as one safetensors file beside its record in the
//! store, every tensor named by the plan (`digit.0.weight`, `head.2.bias`,
//! `digit.1.running_var`; an ensemble's members prefixed `member0.`, `member1.`, ...), laid
//! out as PyTorch lays out the same layers, with the round's identity as metadata.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::compile::{LayerOp, NetState, Network};
use crate::error::{Error, Result};

/// One named tensor: its shape and values.
#[derive(Debug, Clone, PartialEq)]
pub struct Named {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// Every tensor of `net`: each layer's parameters and each batch norm's running statistics,
/// in the network's order, named `{prefix}{stack}.{layer}.{what}`.
pub fn tensors(net: &Network, prefix: &str) -> Vec<Named> {
    let NetState { params, norms } = net.state();
    let (mut params, mut norms) = (params.into_iter(), norms.into_iter());
    let mut out = Vec::new();
    for (stack, kind) in net.stack_order() {
        for (i, layer) in net.plan.stack(kind).iter().enumerate() {
            let mut add = |what: &str, shape: Vec<usize>, values: Option<Vec<f32>>| {
                out.push(Named {
                    name: format!("{prefix}{stack}.{i}.{what}"),
                    shape,
                    values: values.unwrap_or_default(),
                });
            };
            match layer.op {
                LayerOp::Conv2d(g) => {
                    let (o, c, k) = (g.out_channels, g.in_channels, g.kernel);
                    add("weight", vec![o, c, k, k], params.next());
                    add("bias", vec![o], params.next());
                }
                LayerOp::ConvTranspose2d(g) => {
                    let (o, c, k) = (g.out_channels, g.in_channels, g.kernel);
                    add("weight", vec![c, o, k, k], params.next());
                    add("bias", vec![o], params.next());
                }
                LayerOp::Linear { input, out } => {
                    add("weight", vec![out, input], params.next());
                    add("bias", vec![out], params.next());
                }
                LayerOp::BatchNorm { channels, .. } => {
                    add("weight", vec![channels], params.next());
                    add("bias", vec![channels], params.next());
                    let (mean, var) = norms.next().unwrap_or_default();
                    add("running_mean", vec![channels], Some(mean));
                    add("running_var", vec![channels], Some(var));
                }
                LayerOp::Plain(_) => {}
            }
        }
    }
    out
}

/// The prefix of member `m` of `members` networks: none for a single network.
fn member_prefix(m: usize, members: usize) -> String {
    if members > 1 {
        format!("member{m}.")
    } else {
        String::new()
    }
}

/// `nets` (a round's members) as safetensors bytes, with `metadata`.
pub fn to_bytes(nets: &[&Network], metadata: HashMap<String, String>) -> Result<Vec<u8>> {
    let all: Vec<Named> = nets
        .iter()
        .enumerate()
        .flat_map(|(m, net)| tensors(net, &member_prefix(m, nets.len())))
        .collect();
    let bytes: Vec<Vec<u8>> = all
        .iter()
        .map(|t| t.values.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views = all
        .iter()
        .zip(&bytes)
        .map(|(t, b)| TensorView::new(Dtype::F32, t.shape.clone(), b).map(|v| (t.name.clone(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::System(format!("kept weights: {e}")))?;
    safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::System(format!("kept weights: {e}")))
}

/// `set` as safetensors bytes: `input` (`n x images x height x width`, f32) and `target`
/// (`n`, as f32 values 0, 1, ...).
pub fn samples_to_bytes(set: &crate::data::Samples, side: (usize, usize)) -> Result<Vec<u8>> {
    let input: Vec<u8> = set.input.iter().flat_map(|v| v.to_le_bytes()).collect();
    let target: Vec<u8> = set
        .target
        .iter()
        .flat_map(|&t| f32::from(t).to_le_bytes())
        .collect();
    let shape = vec![set.len(), set.images, side.0, side.1];
    let bad = |e: safetensors::SafeTensorError| Error::System(format!("samples: {e}"));
    let views = [
        (
            "input",
            TensorView::new(Dtype::F32, shape, &input).map_err(bad)?,
        ),
        (
            "target",
            TensorView::new(Dtype::F32, vec![set.len()], &target).map_err(bad)?,
        ),
    ];
    safetensors::serialize(views, None).map_err(bad)
}

/// The metadata of a kept-weights file.
pub fn metadata(bytes: &[u8], path: &Path) -> Result<HashMap<String, String>> {
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| unreadable(path, e))?;
    Ok(meta.metadata().clone().unwrap_or_default())
}

fn unreadable(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::data(path, format!("not a whole safetensors file: {e}"))
}

/// Sets `nets` (built from the same spec) to the weights in `bytes`, read from `path`: every
/// tensor must be there with the shape the plan gives it.
pub fn load(nets: &mut [Network], bytes: &[u8], path: &Path) -> Result<()> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| unreadable(path, e))?;
    let members = nets.len();
    for (m, net) in nets.iter_mut().enumerate() {
        let want = tensors(net, &member_prefix(m, members));
        let mut values = Vec::with_capacity(want.len());
        for t in &want {
            let view = file.tensor(&t.name).map_err(|_| {
                Error::data(path, format!("has no tensor {} (another spec?)", t.name))
            })?;
            if view.dtype() != Dtype::F32 || view.shape() != t.shape.as_slice() {
                return Err(Error::data(
                    path,
                    format!(
                        "tensor {} is {:?} {:?}, the spec's is F32 {:?}",
                        t.name,
                        view.dtype(),
                        view.shape(),
                        t.shape
                    ),
                ));
            }
            let v: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            values.push(v);
        }
        net.set_state(&state_from(net, values));
    }
    Ok(())
}

/// A network state from tensors in [`tensors`]' order.
fn state_from(net: &Network, values: Vec<Vec<f32>>) -> NetState {
    let names = tensors(net, "");
    let mut state = NetState {
        params: Vec::new(),
        norms: Vec::new(),
    };
    let mut mean = None;
    for (t, v) in names.iter().zip(values) {
        if t.name.ends_with(".running_mean") {
            mean = Some(v);
        } else if t.name.ends_with(".running_var") {
            state.norms.push((mean.take().unwrap_or_default(), v));
        } else {
            state.params.push(v);
        }
    }
    state
}
