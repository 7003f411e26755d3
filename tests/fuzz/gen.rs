//! The graph generator of the differential fuzzer: well-typed random graphs over every
//! primitive family, built through the public `Builder`, driven by a tape of choices.
//!
//! Every decision reads one number from a `Tape`. Proptest generates the tape as a vector of
//! `u32`, so its shrinking (shorter tapes, smaller numbers) simplifies graphs directly: a
//! missing or zero choice always takes the first, simplest option (fewer ops, scalars, `f64`,
//! the first op of a family, no optional extras).

use ferrax::ir::ops::{
    BinaryOp, Body, CallKind, CompareOp, ControlOp, ConvertOp, DotGeneral, IndexOp, Literal,
    LiteralOp, ReduceOp, RematPolicy, ShapeOp, UnaryOp,
};
use ferrax::ir::{Array, Builder, DType, Dims, Graph, Op, Shape, Type, Value};

/// A sequence of choices; reading past its end gives zeros.
pub struct Tape<'a> {
    data: &'a [u32],
    pos: usize,
}

impl<'a> Tape<'a> {
    /// A tape over `data`.
    pub fn new(data: &'a [u32]) -> Tape<'a> {
        Tape { data, pos: 0 }
    }

    /// The next raw choice.
    pub fn next(&mut self) -> u32 {
        let v = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        v
    }

    /// A choice in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            self.next() as usize % n
        }
    }

    /// True with about `pct` percent chance; a zero choice gives false.
    pub fn flag(&mut self, pct: usize) -> bool {
        self.below(100) >= 100 - pct.min(100)
    }

    /// One element of `items`.
    pub fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }
}

/// Dimension sizes, simplest first; the large one lets `MathMode::Auto` take its fast path.
const DIMS: [usize; 6] = [1, 2, 3, 0, 5, 1031];

/// The largest element count a generated value may have (larger shapes are cut down).
const MAX_ELEMENTS: usize = 4096;

/// Elementwise float values for constants, every IEEE class included.
pub const SPECIAL_F64: [f64; 20] = [
    0.0,
    1.0,
    -0.0,
    -1.0,
    0.5,
    2.5,
    -3.0,
    f64::INFINITY,
    f64::NEG_INFINITY,
    f64::NAN,
    5e-324,
    -2.2250738585072014e-308,
    f64::MAX,
    f64::MIN,
    1e300,
    -1e-300,
    1e10,
    1e-10,
    3.0e38,
    1.0e-45,
];

/// Integer values for constants and indices, extremes included.
pub const SPECIAL_I32: [i32; 10] = [0, 1, -1, 2, 3, -7, 100, i32::MAX, i32::MIN, 5];

/// The generator's state for one graph (or sub-graph).
pub struct Gen<'t, 'a> {
    /// The choices.
    pub tape: &'t mut Tape<'a>,
    /// Nesting depth of control-flow bodies (control ops are only made below 2).
    pub depth: usize,
    /// Builder errors on ops the generator meant to be well typed.
    pub rejects: usize,
}

/// A value of the graph under construction with its type.
#[derive(Clone)]
struct Pooled {
    v: Value,
    ty: Type,
}

/// Generated graph and the counts of interest.
pub struct Generated {
    /// The graph.
    pub graph: Graph,
    /// Ops the generator built that the builder rejected (a generator or library mismatch).
    pub rejects: usize,
}

fn size_of(dims: &[usize]) -> usize {
    dims.iter().fold(1usize, |a, &d| a.saturating_mul(d))
}

impl<'t, 'a> Gen<'t, 'a> {
    /// A new generator at depth 0.
    pub fn new(tape: &'t mut Tape<'a>) -> Gen<'t, 'a> {
        Gen {
            tape,
            depth: 0,
            rejects: 0,
        }
    }

    fn dtype(&mut self) -> DType {
        // f64 most often: transforms and finite differences want it.
        self.tape.pick(&[
            DType::F64,
            DType::F64,
            DType::F64,
            DType::I32,
            DType::F32,
            DType::Bool,
        ])
    }

    fn dims(&mut self, max_rank: usize) -> Vec<usize> {
        let rank = self.tape.below(max_rank + 1);
        let mut d: Vec<usize> = (0..rank)
            .map(|_| {
                // The large dim is rare.
                let k = self.tape.below(DIMS.len() * 4);
                if k < DIMS.len() * 4 - 1 {
                    DIMS[k % (DIMS.len() - 1)]
                } else {
                    DIMS[DIMS.len() - 1]
                }
            })
            .collect();
        while size_of(&d) > MAX_ELEMENTS {
            let i = d.iter().position(|&x| x > 5).unwrap_or(0);
            d[i] = 2;
        }
        d
    }

    /// A constant of type `ty` with elements from the special tables (at most 64 distinct
    /// choices, repeated to fill larger shapes).
    fn const_array(&mut self, ty: &Type) -> Array {
        let n = ty.size().min(64);
        let vals: Vec<f64> = (0..n)
            .map(|_| match ty.dtype {
                DType::I32 => self.tape.pick(&SPECIAL_I32) as f64,
                DType::Bool => (self.tape.below(2)) as f64,
                _ => self.tape.pick(&SPECIAL_F64),
            })
            .collect();
        let at = |i: usize| if n == 0 { 0.0 } else { vals[i % n] };
        let all: Vec<f64> = (0..ty.size()).map(at).collect();
        let a = Array::from_f64(ty.dims(), all).expect("element count matches");
        a.cast(ty.dtype)
    }

    /// A value of exactly `ty`: from the pool, or a new constant, or a broadcast scalar.
    fn operand_of(&mut self, b: &mut Builder, pool: &mut Vec<Pooled>, ty: &Type) -> Value {
        let same: Vec<Value> = pool.iter().filter(|p| &p.ty == ty).map(|p| p.v).collect();
        let k = self.tape.below(3);
        if k == 0 && !same.is_empty() {
            return self.tape.pick(&same);
        }
        if k == 1 && ty.size() > 1 {
            let s = self.const_array(&Type::scalar(ty.dtype));
            let c = b.constant(s);
            let op = Op::Shape(ShapeOp::BroadcastInDim {
                shape: ty.shape.clone(),
                dims: Box::default(),
            });
            if let Some(v) = self.push(b, pool, op, &[c]) {
                return v;
            }
        }
        if !same.is_empty() && self.tape.flag(50) {
            return self.tape.pick(&same);
        }
        let a = self.const_array(ty);
        let v = b.constant(a);
        pool.push(Pooled { v, ty: ty.clone() });
        v
    }

    /// An i32 scalar: from the pool, a constant (extremes included), or a converted float.
    fn index_scalar(&mut self, b: &mut Builder, pool: &mut Vec<Pooled>) -> Value {
        let t = Type::scalar(DType::I32);
        let k = self.tape.below(3);
        if k == 2 {
            let floats: Vec<Value> = pool
                .iter()
                .filter(|p| p.ty.dtype.is_float() && p.ty.is_scalar())
                .map(|p| p.v)
                .collect();
            if !floats.is_empty() {
                let f = self.tape.pick(&floats);
                if let Some(v) =
                    self.push(b, pool, Op::Convert(ConvertOp::Convert(DType::I32)), &[f])
                {
                    return v;
                }
            }
        }
        if k == 1 {
            let c = b.constant(Array::scalar(
                DType::I32,
                self.tape.pick(&SPECIAL_I32) as f64,
            ));
            return c;
        }
        self.operand_of(b, pool, &t)
    }

    fn push(
        &mut self,
        b: &mut Builder,
        pool: &mut Vec<Pooled>,
        op: Op,
        args: &[Value],
    ) -> Option<Value> {
        self.push_n(b, pool, op, args)
            .and_then(|r| r.first().copied())
    }

    fn push_n(
        &mut self,
        b: &mut Builder,
        pool: &mut Vec<Pooled>,
        op: Op,
        args: &[Value],
    ) -> Option<Vec<Value>> {
        match b.push(op, args) {
            Ok(rs) => {
                for &r in &rs {
                    let ty = b.ty(r).clone();
                    pool.push(Pooled { v: r, ty });
                }
                Some(rs.to_vec())
            }
            Err(_) => {
                self.rejects += 1;
                None
            }
        }
    }

    /// A pool value (later ones more likely) satisfying `pred`.
    fn choose(&mut self, pool: &[Pooled], pred: impl Fn(&Type) -> bool) -> Option<Pooled> {
        let c: Vec<&Pooled> = pool.iter().filter(|p| pred(&p.ty)).collect();
        if c.is_empty() {
            return None;
        }
        // Zero picks the latest value, so shrunk graphs stay chains.
        let k = self.tape.below(c.len());
        Some(c[c.len() - 1 - k].clone())
    }

    /// A random ascending subset of `0..rank`.
    fn axes(&mut self, rank: usize) -> Dims {
        (0..rank).filter(|_| self.tape.flag(50)).collect()
    }

    fn perm(&mut self, rank: usize) -> Dims {
        let mut p: Vec<usize> = (0..rank).collect();
        for i in (1..rank).rev() {
            let j = self.tape.below(i + 1);
            p.swap(i, j);
        }
        p.into_iter().collect()
    }

    /// Generates a whole graph with random parameters.
    pub fn graph(&mut self, max_ops: usize) -> Generated {
        let n_params = 1 + self.tape.below(3);
        let params: Vec<Type> = (0..n_params)
            .map(|_| {
                let dt = self.dtype();
                let d = self.dims(3);
                Type::new(dt, &d)
            })
            .collect();
        let n_ops = 1 + self.tape.below(max_ops);
        let n_out = 1 + usize::from(self.tape.flag(30));
        let graph = self.body(&params, n_ops, &vec![None; n_out]);
        Generated {
            graph,
            rejects: self.rejects,
        }
    }

    /// A graph of `params` with about `n_ops` random ops whose outputs have the required types
    /// (`None`: any value; `Some`: a pool value of that type, a parameter at worst).
    pub fn body(&mut self, params: &[Type], n_ops: usize, outs: &[Option<Type>]) -> Graph {
        let mut b = Builder::new();
        let mut pool: Vec<Pooled> = params
            .iter()
            .map(|t| Pooled {
                v: b.param(t.clone()),
                ty: t.clone(),
            })
            .collect();
        for _ in 0..n_ops {
            self.op(&mut b, &mut pool);
        }
        let mut out_vals = Vec::new();
        for o in outs {
            let v = match o {
                None => match self.choose(&pool, |_| true) {
                    Some(p) => p.v,
                    None => {
                        // A body without parameters or ops returns a constant.
                        let dt = self.dtype();
                        let d = self.dims(2);
                        self.operand_of(&mut b, &mut pool, &Type::new(dt, &d))
                    }
                },
                Some(t) => match self.choose(&pool, |u| u == t) {
                    Some(p) => p.v,
                    None => self.operand_of(&mut b, &mut pool, t),
                },
            };
            out_vals.push(v);
        }
        b.finish(&out_vals)
    }

    /// Appends one random op (sometimes a few helpers first).
    fn op(&mut self, b: &mut Builder, pool: &mut Vec<Pooled>) {
        let n_families = if self.depth < 2 { 27 } else { 23 };
        match self.tape.below(n_families) {
            0 | 1 => self.unary(b, pool),
            2 | 3 => self.binary(b, pool),
            4 => self.compare(b, pool),
            5 => self.select(b, pool),
            6 => self.convert(b, pool),
            7 => self.literal(b, pool),
            8 => self.broadcast(b, pool),
            9 => self.reshape(b, pool),
            10 => self.transpose(b, pool),
            11 => self.slice(b, pool),
            12 => self.pad(b, pool),
            13 => self.concat(b, pool),
            14 => self.rev(b, pool),
            15 => self.reduce(b, pool),
            16 => self.dot(b, pool),
            17 => self.cumsum(b, pool),
            18 => self.dynamic(b, pool),
            19 => self.gather_scatter(b, pool),
            20 => self.logic(b, pool),
            21 => self.window(b, pool),
            22 => self.conv(b, pool),
            23 => self.switch(b, pool),
            24 => self.while_loop(b, pool),
            25 => self.scan(b, pool),
            _ => self.call(b, pool),
        }
    }

    fn unary(&mut self, b: &mut Builder, pool: &mut Vec<Pooled>) {
        let Some(x) = self.choose(pool, |t| t.dtype.is_numeric()) else {
            return;
        };
        let mut op = if x.ty.dtype.is_float() {
            self.tape.pick(&UnaryOp::ALL)
        } else {
            self.tape.pick(&[
                UnaryOp::Neg,
                UnaryOp::Abs,
                UnaryOp::Sign,
                UnaryOp::Square,
                UnaryOp::IntegerPow(3),
            ])
        };
        if let UnaryOp::IntegerPow(_) = op {
            let n = self.tape.below(8) as i32 - 3;
            op = UnaryOp::IntegerPow(if x.ty.dtype.is_float() { n } else { n.abs() });
        }
        let op = if self.tape.flag(5) {
            Op::Convert(ConvertOp::StopGradient)
        } else {
            Op::Unary(op)
        };
        self.push(b, pool, op, &[x.v]);
    }

    fn binary(&mut self, b: &mut Builder, pool: &mut Vec<Pooled>) {
        let Some(x) = self.choose(pool, |t| t.dtype.is_numeric()) else {
            return;
        };
        let y = self.operand_of(b, pool, &x.ty);
        let ops: Vec<BinaryOp> = BinaryOp::ALL
            .iter()
            .copied()
            .filter(|o| x.ty.dtype.is_float() || o.accepts_int())
            .collect();
        let op = self.tape.pick(&ops);
        let (l, r) = if self.tape.flag(50) {
            (y, x.v)
        } else {
            (x.v, y)
        };
        self.push(b, pool, Op::Binary(op), &[l, r]);
    }

    fn compare(&mut self, b: &mut Builder, pool: &mut Vec<Pooled>) {
        let Some(x) = self.choose(pool, |_| true) else {
            return;
        };
        let y = self.operand_of(b, pool, &x.ty);
        let op = self.tape.pick(&[
            CompareOp::Lt,
            CompareOp::Eq,
            CompareOp::Ne,
            CompareOp::Le,
            CompareOp::Gt,
            CompareOp::Ge,
        ]);
        self.push(b, pool, Op::Compare(op), &[x.v, y]);
    }

    fn logic(&mut self, b: &mut Builder, pool: &mut Vec<Pooled>) {
        let Some(x) = self.choose(pool, |t| t.dtype == DType::Bool) else {
            return self.compare(b, pool);
        };
        let op = self
            .tape
            .pick(&[CompareOp::And, CompareOp::Or, CompareOp::Not]);
        if op == CompareOp::Not {
            self.push(b, pool, Op::Compare(op), &[x.v]);
        } else {
            let y = self.operand_of(b, pool, &x.ty);
            self.push(b, pool, Op::Compare(op), &[x.v, y]);
        }
    }

    fn select(&mut self, b: &mut Builder, pool: &mut Vec<Pooled>) {
        let Some(x) = self.choose(pool, |_| true) else {
            return;
        };
        let pty = x.ty.with_dtype(DType::Bool);
        let pred = match self.choose(pool, |t| t == &pty) {
            Some(p) if self.tape.flag(60) => p.v,
            _ => {
                // A comparison of `x` with something, the usual source of predicates.
                let y = self.operand_of(b, pool, &x.ty);
                match self.push(b, pool, Op::Compare(CompareOp::Gt), &[x.v, y]) {
                    Some(p) => p,
                    None => return,
                }
            }
        };
        let other = self.operand_of(b, pool, &x.ty);
        let (t, f) = if self.tape.flag(50) {
            (other, x.v)
        } else {
            (x.v, other)
        };
        self.push(b, pool, Op::Compare(CompareOp::Select), &[pred, t, f]);
    }

    fn convert(&mut self, b: &mut Builder, pool: &mut Vec<Pooled>) {
        let Some(x) = self.choose(pool, |_| true) else {
            return;
        };
        let to = self
            .tape
            .pick(&[DType::F64, DType::I32, DType::F32, DType::Bool]);
        self.push(b, pool, Op::Convert(ConvertOp::Convert(to)), &[x.v]);
    }

    fn literal(&mut self, b: &mut Builder, pool: &mut Vec<Pooled>) {
        let dt = self.dtype();
        let d = self.dims(3);
        if self.tape.flag(50) && !d.is_empty() && dt != DType::Bool {
            let axis = self.tape.below(d.len());
            let op = Op::Literal(LiteralOp::Iota {
                dtype: dt,
                shape: Shape::new(&d),
                axis,
            });
            self.push(b, pool, op, &[]);
        } else {
            let a = self.const_array(&Type::new(dt, &d));
            // Through `push` rather than `constant`, so the op itself is exercised.
            let op = Op::Literal(LiteralOp::Const(Literal::new(a)));
            self.push(b, pool, op, &[]);
        }
    }

    fn broadcast(&mut self, b: &mut Builder, pool: &mut Vec<Pooled>) {
        let Some(x) = self.choose(pool, |t| t.rank() < 4) else {
            return;
        };
        let extra = self.tape.below(3).min(4 - x.ty.rank());
        let rank = x.ty.rank() + extra;
        // Operand dims land on an increasing subset of the result dims.
        let mut dims: Vec<usize> = (0..rank).collect();
        for _ in 0..extra {
            let k = self.tape.below(dims.len());
            dims.remove(k);
        }
        let mut shape = vec![0; rank];
        for (i, &d) in dims.iter().enumerate() {
            let src = x.ty.dims()[i];
            shape[d] = if src == 1 && self.tape.flag(50) {
                self.tape.pick(&[2, 3, 0])
            } else {
                src
            };
        }
        for (j, s) in shape.iter_mut().enumerate() {
            if !dims.contains(&j) {
                *s = self.tape.pick(&[2, 1, 3, 0]);
            }
        }
        if size_of(&shape) > MAX_ELEMENTS {
            return;
        }
        let op = Op::Shape(ShapeOp::BroadcastInDim {
            shape: Shape::new(&shape),
            dims: dims.into_iter().collect(),
        });
        self.push(b, pool, op, &[x.v]);
    }

    fn reshape(&mut self, b: &mut Builder, pool: &mut Vec<Pooled>) {
        let Some(x) = self.choose(pool, |_| true) else {
            return;
        };
        let n = x.ty.size();
        let shape: Vec<usize> = match self.tape.below(4) {
            0 => vec![n],
            1 => {
                let mut d = x.ty.dims().to_vec();
                let k = self.tape.below(d.len() + 1);
                d.insert(k, 1);
                d
            }
            2 if n == 0 => vec![0, self.tape.pick(&[2, 3])],
            2 => {
                // Any factorisation n = p * q.
                let divs: Vec<usize> = (1..=n).filter(|p| n % p == 0).collect();
                let p = self.tape.pick(&divs);
                vec![p, n / p]
            }
            _ => {
                let mut d = x.ty.dims().to_vec();
                d.reverse();
                d
            }
        };
        if shape.len() > 4 {
            return;
        }
        let op = Op::Shape(ShapeOp::Reshape {
            shape: Shape::new(&shape),
        });
        self.push(b, pool, op, &[x.v]);
    }

    fn transpose(&mut self, b: &mut Builder, pool: &mut Vec<Pooled>) {
        let Some(x) = self.choose(pool, |t| t.rank() >= 1) else {
            return;
        };
        let perm = self.perm(x.ty.rank());
        self.push(
            b,
            pool,
            Op::Shape(ShapeOp::Transpose {
                perm: perm.into_boxed_slice(),
            }),
            &[x.v],
        );
    }

    fn slice(&mut self, b: &mut Builder, pool: &mut Vec<Pooled>) {
        let Some(x) = self.choose(pool, |_| true) else {
            return;
        };
        let (mut start, mut limit, mut stride) = (Dims::new(), Dims::new(), Dims::new());
        for &d in x.ty.dims() {
            let s = self.tape.below(d + 1);
            let l = d - self.tape.below(d - s + 1);
            start.push(s);
            limit.push(l);
            stride.push(1 + self.tape.below(3));
        }
        let op = Op::Shape(ShapeOp::Slice {
            start: start.into_boxed_slice(),
            limit: limit.into_boxed_slice(),
            stride: stride.into_boxed_slice(),
        });
        self.push(b, pool, op, &[x.v]);
    }

    fn pad(&mut self, b: &mut Builder, pool: &mut Vec<Pooled>) {
        let Some(x) = self.choose(pool, |_| true) else {
            return;
        };
        let r = x.ty.rank();
        let lo: Dims = (0..r).map(|_| self.tape.below(3)).collect();
        let hi: Dims = (0..r).map(|_| self.tape.below(3)).collect();
        let interior: Dims = (0..r).map(|_| self.tape.below(3)).collect();
        let out: Vec<usize> = (0..r)
            .map(|i| {
                let n = x.ty.dims()[i];
                lo[i] + hi[i] + n + n.saturating_sub(1) * interior[i]
            })
            .collect();
        if size_of(&out) > MAX_ELEMENTS {
            return;
        }
        let pv = self.operand_of(b, pool, &Type::scalar(x.ty.dtype));
        let op = Op::Shape(ShapeOp::Pad {
            lo: lo.into_boxed_slice(),
            hi: hi.into_boxed_slice(),
            interior: interior.into_boxed_slice(),
        });
        self.push(b, pool, op, &[x.v, pv]);
    }

    fn concat(&mut self, b: &mut Builder, pool: &mut Vec<Pooled>) {
        let Some(x) = self.choose(pool, |t| t.rank() >= 1) else {
            return;
        };
        let axis = self.tape.below(x.ty.rank());
        let mut args = vec![x.v];
        for _ in 0..self.tape.below(3) {
            // Another operand of the same type, or a slice of `x` along the axis.
            if self.tape.flag(50) {
                let d = x.ty.dims()[axis];
                let mut limit: Dims = x.ty.dims().iter().copied().collect();
                limit[axis] = self.tape.below(d + 1);
                let op = Op::Shape(ShapeOp::Slice {
                    start: vec![0; x.ty.rank()].into_boxed_slice(),
                    limit: limit.into_boxed_slice(),
                    stride: vec![1; x.ty.rank()].into_boxed_slice(),
                });
                if let Some(v) = self.push(b, pool, op, &[x.v]) {
                    args.push(v);
                }
            } else {
                args.push(self.operand_of(b, pool, &x.ty));
            }
        }
        let total: usize = args.len() * x.ty.size();
        if total > MAX_ELEMENTS {
            return;
        }
        self.push(b, pool, Op::Shape(ShapeOp::Concatenate { axis }), &args);
    }

    fn rev(&mut self, b: &mut Builder, pool: &mut Vec<Pooled>) {
        let Some(x) = self.choose(pool, |_| true) else {
            return;
        };
        let axes = self.axes(x.ty.rank());
        self.push(
            b,
            pool,
            Op::Shape(ShapeOp::Rev {
                axes: axes.into_boxed_slice(),
            }),
            &[x.v],
        );
    }

    fn reduce(&mut self, b: &mut Builder, pool: &mut Vec<Pooled>) {
        let Some(x) = self.choose(pool, |t| t.dtype.is_numeric()) else {
            return;
        };
        let axes = self.axes(x.ty.rank());
        let op = match self.tape.below(6) {
            0 => ReduceOp::Sum { axes },
            1 => ReduceOp::Max { axes },
            2 => ReduceOp::Min { axes },
            3 => ReduceOp::Prod { axes },
            k => {
                let nz: Vec<usize> = (0..x.ty.rank()).filter(|&a| x.ty.dims()[a] > 0).collect();
                if nz.is_empty() {
                    return;
                }
                let axis = self.tape.pick(&nz);
                if k == 4 {
                    ReduceOp::ArgMax { axis }
                } else {
                    ReduceOp::ArgMin { axis }
                }
            }
        };
        self.push(b, pool, Op::Reduce(op), &[x.v]);
    }

    fn dot(&mut self, b: &mut Builder, pool: &mut Vec<Pooled>) {
        let Some(x) = self.choose(pool, |t| t.dtype.is_numeric()) else {
            return;
        };
        let r = x.ty.rank();
        // Each lhs dim is free, contracted or batch.
        let roles: Vec<usize> = (0..r).map(|_| self.tape.below(3)).collect();
        let lhs_batch: Dims = (0..r).filter(|&i| roles[i] == 2).collect();
        let lhs_contract: Dims = (0..r).filter(|&i| roles[i] == 1).collect();
        let mut rhs_dims: Vec<usize> = lhs_batch.iter().map(|&i| x.ty.dims()[i]).collect();
        rhs_dims.extend(lhs_contract.iter().map(|&i| x.ty.dims()[i]));
        for _ in 0..self.tape.below(2) {
            rhs_dims.push(self.tape.pick(&[2, 1, 3, 0]));
        }
        let nb = lhs_batch.len();
        let nc = lhs_contract.len();
        // A random permutation of the rhs dims, with the dimension numbers following it.
        let perm = self.perm(rhs_dims.len());
        let pos = |k: usize| perm.iter().position(|&p| p == k).expect("a permutation");
        let rhs_batch: Dims = (0..nb).map(pos).collect();
        let rhs_contract: Dims = (nb..nb + nc).map(pos).collect();
        let permuted: Vec<usize> = perm.iter().map(|&p| rhs_dims[p]).collect();
        let free_l: usize = size_of(
            &(0..r)
                .filter(|&i| roles[i] != 1)
                .map(|i| x.ty.dims()[i])
                .collect::<Vec<_>>(),
        );
        if free_l.saturating_mul(size_of(&permuted)) > MAX_ELEMENTS * 4 || permuted.len() > 4 {
            return;
        }
        let y = self.operand_of(b, pool, &Type::new(x.ty.dtype, &permuted));
        let op = Op::Dot(Box::new(DotGeneral {
            lhs_contract,
            rhs_contract,
            lhs_batch,
            rhs_batch,
        }));
        self.push(b, pool, op, &[x.v, y]);
    }

    fn cumsum(&mut self, b: &mut Builder, pool: &mut Vec<Pooled>) {
        let Some(x) = self.choose(pool, |t| t.dtype.is_numeric() && t.rank() >= 1) else {
            return;
        };
        let axis = self.tape.below(x.ty.rank());
        let reverse = self.tape.flag(50);
        self.push(
            b,
            pool,
            Op::Index(IndexOp::Cumsum { axis, reverse }),
            &[x.v],
        );
    }

    fn dynamic(&mut self, b: &mut Builder, pool: &mut Vec<Pooled>) {
        let Some(x) = self.choose(pool, |_| true) else {
            return;
        };
        let sizes: Dims =
            x.ty.dims()
                .iter()
                .map(|&d| self.tape.below(d + 1))
                .collect();
        let update = self.tape.flag(50);
        let mut args = vec![x.v];
        if update {
            let ut = Type::new(x.ty.dtype, &sizes);
            let u = self.operand_of(b, pool, &ut);
            args.push(u);
        }
        for _ in 0..x.ty.rank() {
            let i = self.index_scalar(b, pool);
            args.push(i);
        }
        let op = if update {
            IndexOp::DynamicUpdateSlice
        } else {
            IndexOp::DynamicSlice { sizes }
        };
        self.push(b, pool, Op::Index(op), &args);
    }

    /// A gather or scatter: along a random axis, as `take` or `take_along_axis`, clipping or
    /// filling out-of-range indices, with every combine; the indices come from the pool or
    /// are constants that include negative and out-of-range ones.
    fn gather_scatter(&mut self, b: &mut Builder, pool: &mut Vec<Pooled>) {
        use ferrax::ir::ops::{Bounds, Combine, Indexing};
        let Some(x) = self.choose(pool, |t| t.rank() >= 1) else {
            return;
        };
        let rank = x.ty.rank();
        let at = Indexing {
            axis: self.tape.below(rank),
            along: self.tape.flag(40),
            bounds: if self.tape.flag(50) {
                Bounds::Clip
            } else {
                Bounds::Fill
            },
        };
        let idx_dims: Vec<usize> = if at.along {
            let mut d = x.ty.dims().to_vec();
            d[at.axis] = self.tape.below(4);
            d
        } else {
            self.dims(2)
        };
        let it = Type::new(DType::I32, &idx_dims);
        let Ok(rd) = at.result_dims("gather", &[], &x.ty, &it) else {
            return;
        };
        if size_of(&rd) > MAX_ELEMENTS || rd.len() > 4 || size_of(&idx_dims) > MAX_ELEMENTS {
            return;
        }
        let idx = self.operand_of(b, pool, &it);
        if self.tape.flag(50) && x.ty.dtype.is_numeric() {
            let u = self.operand_of(b, pool, &Type::new(x.ty.dtype, &rd));
            let combine = self.tape.pick(&Combine::ALL);
            self.push(
                b,
                pool,
                Op::Index(IndexOp::Scatter { at, combine }),
                &[x.v, idx, u],
            );
        } else {
            self.push(b, pool, Op::Index(IndexOp::Gather(at)), &[x.v, idx]);
        }
    }

    /// A windowed reduction with random window, strides, padding and both dilations, or one
    /// of the select ops (their second operand of the same type).
    fn window(&mut self, b: &mut Builder, pool: &mut Vec<Pooled>) {
        use ferrax::ir::ops::{Monoid, Select, Window, WindowOp};
        let Some(x) = self.choose(pool, |t| t.rank() >= 1 && t.dtype.is_numeric()) else {
            return;
        };
        let rank = x.ty.rank();
        let mut pick = |n: usize| -> Vec<usize> { (0..rank).map(|_| self.tape.below(n)).collect() };
        let dims: Vec<usize> = pick(3).iter().map(|d| d + 1).collect();
        let strides: Vec<usize> = pick(2).iter().map(|d| d + 1).collect();
        let lo = pick(2);
        let hi = pick(2);
        let base: Vec<usize> = pick(2).iter().map(|d| d + 1).collect();
        let wdil: Vec<usize> = pick(2).iter().map(|d| d + 1).collect();
        let window = Window {
            dims: dims.into_iter().collect(),
            strides: strides.into_iter().collect(),
            lo: lo.into_iter().collect(),
            hi: hi.into_iter().collect(),
            base_dilation: base.into_iter().collect(),
            window_dilation: wdil.into_iter().collect(),
        };
        let op = match self.tape.below(5) {
            0 => WindowOp::Reduce {
                monoid: Monoid::Sum,
                window,
            },
            1 => WindowOp::Reduce {
                monoid: Monoid::Max,
                window,
            },
            2 => WindowOp::Reduce {
                monoid: Monoid::Min,
                window,
            },
            3 if x.ty.dtype.is_float() => WindowOp::SelectAndGatherAdd {
                select: self.tape.pick(&[Select::Max, Select::Min]),
                window,
            },
            _ => WindowOp::Reduce {
                monoid: Monoid::Max,
                window,
            },
        };
        let args: Vec<Value> = match op {
            WindowOp::SelectAndGatherAdd { .. } => {
                let t = self.operand_of(b, pool, &x.ty);
                vec![t, x.v]
            }
            _ => vec![x.v],
        };
        if let Some(v) = self.push(b, pool, Op::Window(Box::new(op)), &args) {
            // Keep results small: drop it from the pool again if it is too large.
            if size_of(b.ty(v).dims()) > MAX_ELEMENTS {
                pool.pop();
            }
        }
    }

    /// A `conv_general_dilated` on a float operand of rank 3 or 4 (from the pool, or a new one
    /// of small sizes): random dimension numbers, kernel sizes, window strides, padding
    /// (negative included), both dilations and feature or batch groups. The result is kept
    /// within `MAX_ELEMENTS` and the contraction (input features per group times taps) small.
    fn conv(&mut self, b: &mut Builder, pool: &mut Vec<Pooled>) {
        use ferrax::ir::ops::{ConvDimensionNumbers, ConvGeneral};
        let x = match self.choose(pool, |t| t.dtype.is_float() && (3..=4).contains(&t.rank())) {
            Some(x) if self.tape.flag(70) || x.ty.size() > 0 => x,
            _ => {
                let dt = self.tape.pick(&[DType::F64, DType::F32]);
                let rank = 3 + self.tape.below(2);
                let d: Vec<usize> = (0..rank)
                    .map(|_| self.tape.pick(&[2, 1, 3, 4, 0]))
                    .collect();
                let ty = Type::new(dt, &d);
                let v = self.operand_of(b, pool, &ty);
                Pooled { v, ty }
            }
        };
        let rank = x.ty.rank();
        let ns = rank - 2;
        let dn = ConvDimensionNumbers {
            lhs: self.perm(rank),
            rhs: self.perm(rank),
            out: self.perm(rank),
        };
        let (n, c) = (x.ty.dims()[dn.lhs[0]], x.ty.dims()[dn.lhs[1]]);
        let mut op = ConvGeneral::new(ns);
        // Groups divide the features (or the batch); a zero count admits any group count.
        let divisors =
            |v: usize| -> Vec<usize> { (1..=4).filter(|g| v.is_multiple_of(*g)).collect() };
        let groups = match self.tape.below(4) {
            1 => {
                op.feature_group_count = self.tape.pick(&divisors(c));
                op.feature_group_count
            }
            2 => {
                op.batch_group_count = self.tape.pick(&divisors(n));
                op.batch_group_count
            }
            _ => 1,
        };
        for j in 0..ns {
            op.window_strides[j] = 1 + self.tape.below(3);
            op.padding[j] = (self.tape.below(4) as i64 - 1, self.tape.below(4) as i64 - 1);
            op.lhs_dilation[j] = 1 + self.tape.below(2);
            op.rhs_dilation[j] = 1 + self.tape.below(2);
        }
        if self.tape.flag(10) {
            // The `SAME`/`VALID`-like extremes: no padding, or a large negative one.
            let j = self.tape.below(ns);
            op.padding[j] = (-3, 2);
        }
        let o = groups * (1 + self.tape.below(3));
        let mut kd = vec![0; rank];
        kd[dn.rhs[0]] = o;
        kd[dn.rhs[1]] = c.checked_div(op.feature_group_count).unwrap_or(0);
        for j in 0..ns {
            kd[dn.rhs[2 + j]] = 1 + self.tape.below(3);
        }
        op.dimension_numbers = dn;
        let kt = Type::new(x.ty.dtype, &kd);
        // A type the rule rejects (a window larger than the input) is skipped quietly.
        let Ok(out) = op.infer(&x.ty, &kt) else {
            return;
        };
        let contraction = kt.size().checked_div(o).unwrap_or(0);
        if out.size() > MAX_ELEMENTS || contraction > 64 || kt.size() > MAX_ELEMENTS {
            return;
        }
        let w = self.operand_of(b, pool, &kt);
        self.push(b, pool, Op::Conv(Box::new(op)), &[x.v, w]);
    }

    /// A sub-generator one level deeper, sharing the tape.
    fn sub<R>(&mut self, f: impl FnOnce(&mut Gen<'_, 'a>) -> R) -> R {
        let mut g = Gen {
            tape: &mut *self.tape,
            depth: self.depth + 1,
            rejects: 0,
        };
        let r = f(&mut g);
        self.rejects += g.rejects;
        r
    }

    /// One or two operands for a control op's body.
    fn operands(&mut self, pool: &[Pooled]) -> Vec<Pooled> {
        let n = 1 + self.tape.below(2);
        (0..n).filter_map(|_| self.choose(pool, |_| true)).collect()
    }

    fn switch(&mut self, b: &mut Builder, pool: &mut Vec<Pooled>) {
        let ops = self.operands(pool);
        if ops.is_empty() {
            return;
        }
        let tys: Vec<Type> = ops.iter().map(|p| p.ty.clone()).collect();
        let outs: Vec<Option<Type>> = vec![Some(tys[0].clone())];
        let n_branches = 1 + self.tape.below(3);
        let branches: Vec<Body> = (0..n_branches)
            .map(|_| {
                let n = 1 + self.tape.below(4);
                Body::new(self.sub(|g| g.body(&tys, n, &outs)))
            })
            .collect();
        let index = self.index_scalar(b, pool);
        let mut args = vec![index];
        args.extend(ops.iter().map(|p| p.v));
        self.push_n(
            b,
            pool,
            Op::Control(ControlOp::Switch {
                branches: branches.into_iter().collect(),
            }),
            &args,
        );
    }

    fn while_loop(&mut self, b: &mut Builder, pool: &mut Vec<Pooled>) {
        // Operands [consts.., counter, x]; the loop ends because the counter grows to a small
        // limit (a generated extra condition may only stop it earlier).
        let Some(x) = self.choose(pool, |_| true) else {
            return;
        };
        let consts: Vec<Pooled> = if self.tape.flag(40) {
            self.choose(pool, |_| true).into_iter().collect()
        } else {
            Vec::new()
        };
        let i32s = Type::scalar(DType::I32);
        let mut tys: Vec<Type> = consts.iter().map(|p| p.ty.clone()).collect();
        tys.push(i32s.clone());
        tys.push(x.ty.clone());
        let nc = consts.len();
        let limit = self.tape.below(4) as f64;
        let extra = self.tape.flag(30);
        let cond = self.sub(|g| {
            let mut cb = Builder::new();
            let ps: Vec<Value> = tys.iter().map(|t| cb.param(t.clone())).collect();
            let lim = cb.constant(Array::scalar(DType::I32, limit));
            let mut c = cb
                .push1(Op::Compare(CompareOp::Lt), &[ps[nc], lim])
                .expect("i32 comparison");
            if extra {
                // Also stop once a generated bool of the carry is false.
                let n = 1 + g.tape.below(3);
                let inner = g.body(&tys, n, &[Some(Type::scalar(DType::Bool))]);
                let more = ferrax::transforms::inline(&mut cb, &inner, &ps).expect("inline")[0];
                c = cb
                    .push1(Op::Compare(CompareOp::And), &[c, more])
                    .expect("bool and");
            }
            cb.finish(&[c])
        });
        let body = self.sub(|g| {
            let n = 1 + g.tape.below(4);
            let inner = g.body(&tys, n, &[Some(x.ty.clone())]);
            let mut bb = Builder::new();
            let ps: Vec<Value> = tys.iter().map(|t| bb.param(t.clone())).collect();
            let one = bb.constant(Array::scalar(DType::I32, 1.0));
            let next = bb
                .push1(Op::Binary(BinaryOp::Add), &[ps[nc], one])
                .expect("i32 add");
            let nx = ferrax::transforms::inline(&mut bb, &inner, &ps).expect("inline")[0];
            bb.finish(&[next, nx])
        });
        let start = b.constant(Array::scalar(DType::I32, self.tape.below(3) as f64));
        let mut args: Vec<Value> = consts.iter().map(|p| p.v).collect();
        args.push(start);
        args.push(x.v);
        let op = Op::Control(ControlOp::While {
            cond: Body::new(cond),
            body: Body::new(body),
            n_consts: nc,
        });
        self.push_n(b, pool, op, &args);
    }

    /// A scan: operands `[consts.., (counter,) (carry,) (xs)]`. The optional i32 counter
    /// counts iterations as `fori_loop` does; without a carry the scan is a map and returns ys.
    fn scan(&mut self, b: &mut Builder, pool: &mut Vec<Pooled>) {
        let no_carry = self.tape.flag(15);
        let carry = if no_carry {
            None
        } else {
            match self.choose(pool, |_| true) {
                Some(c) => Some(c),
                None => return,
            }
        };
        let counter = carry.is_some() && self.tape.flag(25);
        let consts: Vec<Pooled> = if self.tape.flag(40) {
            self.choose(pool, |_| true).into_iter().collect()
        } else {
            Vec::new()
        };
        let xs = if self.tape.flag(50) {
            self.choose(pool, |t| t.rank() >= 1)
        } else {
            None
        };
        let length = match &xs {
            Some(p) => p.ty.dims()[0],
            None => self.tape.below(4),
        };
        let i32s = Type::scalar(DType::I32);
        let mut tys: Vec<Type> = consts.iter().map(|p| p.ty.clone()).collect();
        if counter {
            tys.push(i32s.clone());
        }
        if let Some(c) = &carry {
            tys.push(c.ty.clone());
        }
        if let Some(p) = &xs {
            tys.push(Type::new(p.ty.dtype, &p.ty.dims()[1..]));
        }
        let with_y = carry.is_none() || self.tape.flag(60);
        let mut outs: Vec<Option<Type>> = carry.iter().map(|c| Some(c.ty.clone())).collect();
        if with_y {
            outs.push(None);
        }
        let n = 1 + self.tape.below(4);
        let nc = consts.len();
        let body = self.sub(|g| {
            let inner = g.body(&tys, n, &outs);
            if !counter {
                return inner;
            }
            // The counter goes up by one per iteration, beside the generated body.
            let mut bb = Builder::new();
            let ps: Vec<Value> = tys.iter().map(|t| bb.param(t.clone())).collect();
            let one = bb.constant(Array::scalar(DType::I32, 1.0));
            let next = bb
                .push1(Op::Binary(BinaryOp::Add), &[ps[nc], one])
                .expect("i32 add");
            let mut res = vec![next];
            res.extend(ferrax::transforms::inline(&mut bb, &inner, &ps).expect("inline"));
            bb.finish(&res)
        });
        let n_carry = usize::from(counter) + usize::from(carry.is_some());
        if with_y {
            // Stacked ys must stay small.
            let yt = body.output_types()[n_carry].clone();
            if yt.size().saturating_mul(length) > MAX_ELEMENTS || yt.rank() >= 4 {
                return;
            }
        }
        let mut args: Vec<Value> = consts.iter().map(|p| p.v).collect();
        if counter {
            let start = b.constant(Array::scalar(DType::I32, self.tape.below(3) as f64));
            args.push(start);
        }
        if let Some(c) = &carry {
            args.push(c.v);
        }
        if let Some(p) = &xs {
            args.push(p.v);
        }
        let op = Op::Control(ControlOp::Scan {
            body: Body::new(body),
            length,
            n_consts: nc,
            n_carry,
            reverse: self.tape.flag(50),
        });
        self.push_n(b, pool, op, &args);
    }

    fn call(&mut self, b: &mut Builder, pool: &mut Vec<Pooled>) {
        let ops = self.operands(pool);
        if ops.is_empty() {
            return;
        }
        let tys: Vec<Type> = ops.iter().map(|p| p.ty.clone()).collect();
        let n = 1 + self.tape.below(4);
        let body = self.sub(|g| g.body(&tys, n, &[None]));
        let policy = self
            .tape
            .pick(&[RematPolicy::Nothing, RematPolicy::DotsOnly]);
        let args: Vec<Value> = ops.iter().map(|p| p.v).collect();
        let op = Op::Control(ControlOp::Call {
            body: Body::new(body),
            kind: CallKind::Checkpoint(policy),
        });
        self.push_n(b, pool, op, &args);
    }
}

/// Every op name of the text format, for mutants that swap names.
pub const OP_NAMES: [&str; 60] = [
    "neg",
    "abs",
    "sign",
    "floor",
    "ceil",
    "round",
    "sqrt",
    "rsqrt",
    "exp",
    "exp2",
    "expm1",
    "log",
    "log1p",
    "sin",
    "cos",
    "tan",
    "asin",
    "acos",
    "atan",
    "sinh",
    "cosh",
    "tanh",
    "asinh",
    "acosh",
    "atanh",
    "logistic",
    "erf",
    "integer_pow",
    "square",
    "reciprocal",
    "add",
    "sub",
    "mul",
    "div",
    "pow",
    "max",
    "min",
    "atan2",
    "rem",
    "eq",
    "lt",
    "select",
    "and",
    "not",
    "convert",
    "stop_gradient",
    "const",
    "iota",
    "broadcast_in_dim",
    "reshape",
    "transpose",
    "slice",
    "pad",
    "concatenate",
    "rev",
    "reduce_sum",
    "argmax",
    "dot_general",
    "gather",
    "scatter_add",
];
