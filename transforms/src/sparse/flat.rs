//! Flattening for sparse derivatives of several arrays (the leaves of a parameter tree): a
//! graph whose chosen parameters become one rank-1 parameter holding their elements end to
//! end, and whose outputs may become one rank-1 output likewise, so the sparse machinery,
//! which differentiates one array with respect to one array, covers them. Rows and columns of
//! the derivative then index the concatenated elements, each array row-major, in order.

use crate::emit::{build_graph, concatenate, finish_lean, inline, reshape, slice};
use ferrax_ir::{Dims, Graph, Result, Shape, Type};

/// The common dtype of `tys`, which must be float; `what` names them in the error.
fn common_float(tys: &[Type], what: &str) -> Result<ferrax_ir::DType> {
    let Some(first) = tys.first() else {
        ferrax_ir::bail!(Transform, "sparse derivative: no {what}");
    };
    if let Some(t) = tys
        .iter()
        .find(|t| !t.dtype.is_float() || t.dtype != first.dtype)
    {
        ferrax_ir::bail!(
            Transform,
            "sparse derivative: the {what} must share one float dtype to be concatenated, \
             found {} and {}",
            first,
            t
        );
    }
    Ok(first.dtype)
}

/// `g` with its parameters at `wrt` (distinct, each below `n_explicit`) replaced by one
/// rank-1 parameter, first, holding their elements concatenated in the order given (each
/// row-major); the other parameters follow in their order, captures last. With
/// `flatten_outputs`, the outputs are replaced by one rank-1 output of their elements
/// concatenated likewise. Errors when the arrays joined do not share one float dtype or their
/// element count overflows.
pub fn concat_params(
    g: &Graph,
    n_explicit: usize,
    wrt: &[usize],
    flatten_outputs: bool,
) -> Result<Graph> {
    let tys = g.param_types();
    let mut seen = vec![false; tys.len()];
    for &w in wrt {
        if w >= n_explicit || seen[w] {
            ferrax_ir::bail!(
                Transform,
                "sparse derivative: argument {w} is selected twice or is not one of the {} \
                 arguments",
                n_explicit
            );
        }
        seen[w] = true;
    }
    let chosen: Vec<Type> = wrt.iter().map(|&w| tys[w].clone()).collect();
    let dtype = common_float(&chosen, "arrays differentiated with respect to")?;
    let total = chosen
        .iter()
        .try_fold(0usize, |acc, t| acc.checked_add(t.size()));
    let Some(total) = total else {
        ferrax_ir::bail!(Size, "sparse derivative: the element count overflows");
    };
    if flatten_outputs {
        common_float(&g.output_types(), "outputs")?;
    }
    let mut params = vec![Type::new(dtype, &[total])];
    params.extend((0..tys.len()).filter(|&i| !seen[i]).map(|i| tys[i].clone()));
    let out = build_graph(&params, |b, ps| {
        // The original parameters in order: slices of the joined one, or passed through.
        let mut args = vec![None; tys.len()];
        let mut at = 0usize;
        for &w in wrt {
            let n = tys[w].size();
            let part = slice(
                b,
                ps[0],
                Dims::from_slice(&[at]),
                Dims::from_slice(&[at + n]),
                Dims::from_slice(&[1]),
            )?;
            args[w] = Some(reshape(b, part, tys[w].shape.clone())?);
            at += n;
        }
        let mut rest = ps[1..].iter();
        let args: Vec<_> = args
            .into_iter()
            .map(|a| a.or_else(|| rest.next().copied()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                ferrax_ir::Error::new(
                    ferrax_ir::ErrorKind::Transform,
                    "sparse derivative: a parameter went missing while flattening",
                )
            })?;
        let outs = inline(b, g, &args)?;
        if !flatten_outputs {
            return Ok(outs);
        }
        let flat = outs
            .iter()
            .map(|&o| {
                let n = b.ty(o).size();
                reshape(b, o, Shape::new(&[n]))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(vec![match flat.as_slice() {
            [one] => *one,
            _ => concatenate(b, &flat, 0)?,
        }])
    })?;
    finish_lean(out)
}
