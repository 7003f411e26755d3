//! Batching rules for vmap, one file per op family (mirroring `ferrax_ir::ops`).
//!
//! A [`Batched`] value is a value of the batched graph together with the position of its batch
//! dimension, or `None` when it does not depend on the batched arguments. [`batch_op`] re-emits
//! an instruction whose operands are all unbatched unchanged, and otherwise calls the family's
//! rule, which may assume that at least one operand is batched. The helpers on [`BatchCtx`]
//! build the small pieces the rules share (moving a batch dimension, broadcasting an unbatched
//! operand, index arithmetic). Control ops have several results and sub-graphs; their rules
//! (`control.rs`) batch the sub-graphs with the same walk ([`crate::vmap::batch_into`]).

pub mod binary;
pub mod compare;
pub mod control;
pub mod conv;
pub mod convert;
pub mod dot;
pub mod index;
pub mod literal;
pub mod reduce;
pub mod shape;
pub mod unary;
pub mod window;

use ferrax_ir::ops::{BinaryOp, CompareOp, LiteralOp, ShapeOp};
use ferrax_ir::{Array, Builder, DType, Dims, Error, ErrorKind, Op, Result, Shape, Type, Value};
use smallvec::{smallvec, SmallVec};

/// A value of the batched graph and where its batch dimension is (`None`: not batched).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Batched {
    /// The value in the batched graph.
    pub value: Value,
    /// The position of the batch dimension, or `None` when the value is the same for every
    /// member of the batch.
    pub bdim: Option<usize>,
}

impl Batched {
    /// A value that carries a batch dimension at `bdim`.
    pub fn at(value: Value, bdim: usize) -> Batched {
        Batched {
            value,
            bdim: Some(bdim),
        }
    }

    /// A value that does not depend on the batched arguments.
    pub fn unbatched(value: Value) -> Batched {
        Batched { value, bdim: None }
    }
}

/// The state the batching rules share: the builder of the batched graph and the batch size.
#[derive(Debug)]
pub struct BatchCtx<'a> {
    builder: &'a mut Builder,
    size: usize,
}

/// Inserts `size` at position `at` of `dims`.
pub fn insert_dim(dims: &[usize], at: usize, size: usize) -> Dims {
    let mut d = Dims::from_slice(dims);
    d.insert(at, size);
    d
}

/// The position of an unbatched axis `axis` once a batch dimension sits at `bdim`.
pub fn shift_axis(axis: usize, bdim: usize) -> usize {
    if axis >= bdim {
        axis + 1
    } else {
        axis
    }
}

/// An error of kind `Transform` for a batching rule.
pub fn rule_error(op: &str, message: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Transform, format!("vmap of {op}: {message}"))
}

impl<'a> BatchCtx<'a> {
    /// A context appending to `builder` with batch size `size`.
    pub fn new(builder: &'a mut Builder, size: usize) -> BatchCtx<'a> {
        BatchCtx { builder, size }
    }

    /// The batch size.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The builder of the batched graph.
    pub fn builder(&mut self) -> &mut Builder {
        self.builder
    }

    /// The type of a value of the batched graph.
    pub fn ty(&self, v: Value) -> Type {
        self.builder.ty(v).clone()
    }

    /// The type `x` has for one member of the batch (its batch dimension removed).
    pub fn unbatched_ty(&self, x: Batched) -> Type {
        let mut ty = self.ty(x.value);
        if let Some(b) = x.bdim {
            ty.shape.0.remove(b);
        }
        ty
    }

    /// Appends a single-result op.
    pub fn push1(&mut self, op: Op, args: &[Value]) -> Result<Value> {
        self.builder.push1(op, args)
    }

    /// Permutes the dimensions of `v` (result dimension `i` is operand dimension `perm[i]`);
    /// the identity permutation emits nothing.
    pub fn transpose(&mut self, v: Value, perm: &[usize]) -> Result<Value> {
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return Ok(v);
        }
        self.push1(Op::Shape(ShapeOp::Transpose { perm: perm.into() }), &[v])
    }

    /// Broadcasts `v` to `dims`, operand dimension `i` landing at `map[i]`.
    pub fn broadcast_in_dim(&mut self, v: Value, dims: &[usize], map: &[usize]) -> Result<Value> {
        if self.ty(v).dims() == dims && map.iter().enumerate().all(|(i, &m)| i == m) {
            return Ok(v);
        }
        let op = ShapeOp::BroadcastInDim {
            shape: Shape::new(dims),
            dims: map.into(),
        };
        self.push1(Op::Shape(op), &[v])
    }

    /// Reshapes `v` to `dims` (nothing is emitted when the shape already matches).
    pub fn reshape(&mut self, v: Value, dims: &[usize]) -> Result<Value> {
        if self.ty(v).dims() == dims {
            return Ok(v);
        }
        self.push1(
            Op::Shape(ShapeOp::Reshape {
                shape: Shape::new(dims),
            }),
            &[v],
        )
    }

    /// A `dtype` array of shape `dims` filled with `value`, as a broadcast scalar constant.
    pub fn full(&mut self, dtype: DType, dims: &[usize], value: f64) -> Result<Value> {
        let s = self.builder.constant(Array::scalar(dtype, value));
        self.broadcast_in_dim(s, dims, &[])
    }

    /// `iota`: the index along `axis` of an i32 array of shape `dims`.
    pub fn iota(&mut self, dims: &[usize], axis: usize) -> Result<Value> {
        let op = LiteralOp::Iota {
            dtype: DType::I32,
            shape: Shape::new(dims),
            axis,
        };
        self.push1(Op::Literal(op), &[])
    }

    /// An elementwise binary op on two values of one type.
    pub fn binary(&mut self, op: BinaryOp, a: Value, b: Value) -> Result<Value> {
        self.push1(Op::Binary(op), &[a, b])
    }

    /// An elementwise binary op between `a` and the scalar `value` (broadcast to `a`'s shape).
    /// Multiplying by 1 and adding 0 emit nothing.
    pub fn binary_scalar(&mut self, op: BinaryOp, a: Value, value: f64) -> Result<Value> {
        let identity = match op {
            BinaryOp::Mul | BinaryOp::Div => value == 1.0,
            BinaryOp::Add | BinaryOp::Sub => value == 0.0,
            BinaryOp::Pow | BinaryOp::Max | BinaryOp::Min | BinaryOp::Atan2 | BinaryOp::Rem => {
                false
            }
        };
        if identity {
            return Ok(a);
        }
        let ty = self.ty(a);
        let s = self.full(ty.dtype, ty.dims(), value)?;
        self.binary(op, a, s)
    }

    /// A comparison, logical op or select.
    pub fn compare(&mut self, op: CompareOp, args: &[Value]) -> Result<Value> {
        self.push1(Op::Compare(op), args)
    }

    /// Clamps the elements of `v` to `lo..=hi` (as `max(min(v, hi), lo)`).
    pub fn clamp(&mut self, v: Value, lo: f64, hi: f64) -> Result<Value> {
        let m = self.binary_scalar(BinaryOp::Min, v, hi)?;
        self.binary_scalar(BinaryOp::Max, m, lo)
    }

    /// Moves the batch dimension of `x` to position `to`, broadcasting `x` first when it is
    /// unbatched; returns a value whose batch dimension is at `to`.
    pub fn move_bdim(&mut self, x: Batched, to: usize) -> Result<Value> {
        let ty = self.ty(x.value);
        match x.bdim {
            Some(from) => {
                if to >= ty.rank() {
                    return Err(Error::new(
                        ErrorKind::Axis,
                        format!("vmap: batch axis {to} is out of range for a value of type {ty}"),
                    ));
                }
                let mut perm: Vec<usize> = (0..ty.rank()).filter(|&d| d != from).collect();
                perm.insert(to, from);
                self.transpose(x.value, &perm)
            }
            None => {
                if to > ty.rank() {
                    return Err(Error::new(
                        ErrorKind::Axis,
                        format!("vmap: batch axis {to} is out of range for a value of type {ty}"),
                    ));
                }
                let dims = insert_dim(ty.dims(), to, self.size);
                let map: Vec<usize> = (0..ty.rank()).map(|i| shift_axis(i, to)).collect();
                self.broadcast_in_dim(x.value, &dims, &map)
            }
        }
    }

    /// Brings every operand to one batch position: that of the first batched operand, with
    /// unbatched operands broadcast. Returns the values and the common batch position.
    pub fn align(&mut self, args: &[Batched]) -> Result<(SmallVec<[Value; 4]>, usize)> {
        let bdim = args.iter().find_map(|a| a.bdim).unwrap_or(0);
        let vals = args
            .iter()
            .map(|&a| self.move_bdim(a, bdim))
            .collect::<Result<_>>()?;
        Ok((vals, bdim))
    }

    /// The shared rule of elementwise ops: align the batch dimensions, then apply `op` once.
    pub fn elementwise(&mut self, op: Op, args: &[Batched]) -> Result<Batched> {
        let (vals, bdim) = self.align(args)?;
        Ok(Batched::at(self.push1(op, &vals)?, bdim))
    }

    /// Broadcasts a per-member scalar (batched, rank 1 once batched; or unbatched, rank 0) to
    /// the batched shape `dims` whose batch dimension is at 0.
    pub fn spread_scalar(&mut self, x: Batched, dims: &[usize]) -> Result<Value> {
        match x.bdim {
            Some(_) => self.broadcast_in_dim(x.value, dims, &[0]),
            None => self.broadcast_in_dim(x.value, dims, &[]),
        }
    }
}

/// Batches one instruction: re-emits it unchanged when no operand is batched, and otherwise
/// applies the batching rule of its family. Returns one batched value per result; the rules of
/// single-result families return one value, those of control ops (`batch/control.rs`) one per
/// result of the op.
pub fn batch_op(
    ctx: &mut BatchCtx<'_>,
    op: &Op,
    args: &[Batched],
) -> Result<SmallVec<[Batched; 1]>> {
    if args.iter().all(|a| a.bdim.is_none()) {
        let vals: SmallVec<[Value; 4]> = args.iter().map(|a| a.value).collect();
        let res = ctx.builder.push(op.clone(), &vals)?;
        return Ok(res.into_iter().map(Batched::unbatched).collect());
    }
    let out = match op {
        Op::Unary(o) => unary::batch(*o, ctx, args)?,
        Op::Binary(o) => binary::batch(*o, ctx, args)?,
        Op::Compare(o) => compare::batch(*o, ctx, args)?,
        Op::Convert(o) => convert::batch(*o, ctx, args)?,
        Op::Literal(o) => literal::batch(o, ctx, args)?,
        Op::Shape(o) => shape::batch(o, ctx, args)?,
        Op::Reduce(o) => reduce::batch(o, ctx, args)?,
        Op::Dot(o) => dot::batch(o, ctx, args)?,
        Op::Conv(o) => conv::batch(o, ctx, args)?,
        Op::Index(o) => index::batch(o, ctx, args)?,
        Op::Control(o) => return control::batch(o, ctx, args),
        Op::Window(o) => window::batch(o, ctx, args)?,
    };
    Ok(smallvec![out])
}
