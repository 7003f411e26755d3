//! Reads through index remappings inside a fused loop (see `crate::fuse::remap`): a chain of
//! broadcasts, slices, transposes, revs, pads, concatenations and reshapes that add or drop
//! unit dimensions ending in a buffer is never
//! materialised; the loop reads the buffer at an affine index, guarded where a pad or a
//! concatenation decides between sources.
//!
//! Every remapping moves elements one dimension at a time, so the index of an operand along
//! each of its dimensions is an affine function of one loop index (a [`Form`]). Walking a
//! chain from the value a member uses down to its buffer composes these forms: a slice scales
//! and shifts, a transpose permutes, a rev negates, a broadcast drops dimensions, a pad shifts
//! and adds a [`Guard`] (the operand index must lie in the operand) whose failure yields the
//! pad value, a concatenation shifts per piece and guards each piece, whose failure moves on
//! to the next piece. The result is a list of [`Read`]s: a buffer, its affine offset, and the
//! guards (outermost first) that must hold before it is loaded, each naming the read to use
//! instead when it fails (the pad value, the next piece).
//!
//! Soundness is checked when the reads are built ([`Reads::leaf`]): for every read, over every
//! loop index where all its guards hold, the index along each buffer dimension is shown to lie
//! inside that dimension (an affine form over an interval takes its extremes at the ends), or
//! the read is refused with an error. Lowering then loads a guarded read only after its guards
//! hold ([`guarded_load`]), or inside the part of a row where every guard is known to hold
//! ([`middle`]). The values are the interpreter's: a remapping computes nothing, it only
//! decides which element (or which pad value) is taken.
//!
//! A constant whose elements are all the same (bit for bit) is read with stride 0 wherever it
//! appears: the loop loads one element instead of streaming the whole constant.

use super::{clty, jit_err, Ctx};
use cranelift_codegen::ir::{self, condcodes::IntCC, InstBuilder};
use ferrax_ir::ops::{IndexOp, Indexing, LiteralOp, ShapeOp};
use ferrax_ir::{DType, Data, Graph, InstData, Op, Result, Value, ValueDef};
use hashbrown::HashMap;
use smallvec::SmallVec;

/// The index along one dimension as `a·i_d + c` of loop index `d` (`c` alone when `d` is
/// `None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Form {
    /// The loop dimension, if the index varies.
    pub d: Option<usize>,
    /// The coefficient of the loop index.
    pub a: i64,
    /// The constant term.
    pub c: i64,
}

impl Form {
    /// The constant index `c`.
    fn constant(c: i64) -> Form {
        Form { d: None, a: 0, c }
    }

    /// `k·self + b`.
    fn scale_shift(self, k: i64, b: i64) -> Result<Form> {
        let ovf = || jit_err("a remapped index overflows");
        Ok(Form {
            d: self.d,
            a: self.a.checked_mul(k).ok_or_else(ovf)?,
            c: self
                .c
                .checked_mul(k)
                .and_then(|c| c.checked_add(b))
                .ok_or_else(ovf)?,
        })
    }
}

/// A condition `0 ≤ a·i_dim + c < n` on the loop index `dim`; with `a = 0` it is decided
/// when the reads are built (`dim` is then meaningless).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Guard {
    /// The loop dimension.
    pub dim: usize,
    /// The coefficient of the loop index.
    pub a: i64,
    /// The constant term.
    pub c: i64,
    /// The exclusive upper bound.
    pub n: i64,
}

impl Guard {
    /// A guard that the index `f` lies in `0..n`.
    fn of(f: Form, n: i64) -> Guard {
        Guard {
            dim: f.d.unwrap_or(0),
            a: if f.d.is_some() { f.a } else { 0 },
            c: f.c,
            n,
        }
    }

    /// For a guard that does not depend on the loop index (`a = 0`), whether it holds.
    pub fn fixed(&self) -> Option<bool> {
        (self.a == 0).then_some(self.c >= 0 && self.c < self.n)
    }

    /// The loop indices `lo..hi` (possibly empty) where the guard holds; every index for a
    /// fixed guard that holds, none for one that fails.
    pub fn interval(&self) -> (i64, i64) {
        match self.fixed() {
            Some(true) => (i64::MIN, i64::MAX),
            Some(false) => (0, 0),
            None => {
                // 0 ≤ a·i + c ≤ n − 1, solved for i (floor and ceiling of exact quotients).
                let (a, c, top) = (self.a as i128, self.c as i128, self.n as i128 - 1);
                let floor = |x: i128, y: i128| x.div_euclid(y);
                let ceil = |x: i128, y: i128| -(-x).div_euclid(y);
                let (lo, hi_incl) = if a > 0 {
                    (ceil(-c, a), floor(top - c, a))
                } else {
                    (ceil(c - top, -a), floor(c, -a))
                };
                let clamp = |x: i128| x.clamp(i64::MIN as i128, i64::MAX as i128) as i64;
                (clamp(lo), clamp(hi_incl + 1).max(clamp(lo)))
            }
        }
    }
}

/// One buffer read of a fused loop.
#[derive(Clone, Debug)]
pub(crate) struct Read {
    /// The value read (a parameter, constant, or result of another op; rank 0 for a
    /// register).
    pub leaf: Value,
    /// The element offset at loop index 0.
    pub base: i64,
    /// The element stride per loop dimension.
    pub strides: SmallVec<[i64; 4]>,
    /// The guards to check before loading, outermost first, each with the read whose value
    /// is taken when it fails (`None`: zero, for a place no index reaches).
    pub guards: Guards,
    /// Whether a member uses the value directly (otherwise it is only a fallback of a guard,
    /// or the indices of a gather).
    pub top: bool,
    /// For a gather by constant indices: the read of the index (an `i32` inside the axis)
    /// and the axis's element stride, added to the offset as `index · stride`.
    pub index: Option<(usize, i64)>,
}

/// Where a value of a fused loop comes from at one loop index: a read, or a node computed in
/// the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Src {
    /// Read number `k`.
    Read(usize),
    /// Node number `k`.
    Node(usize),
}

/// One computation of a fused loop at one place (a member evaluated at the loop index, or at
/// an index remapped by a pad, slice, transpose or rev above it).
#[derive(Clone, Debug)]
pub(crate) enum Node {
    /// The elementwise member at position `member` on its operands.
    Op {
        /// The member's position.
        member: usize,
        /// Its operands.
        args: SmallVec<[Src; 3]>,
    },
    /// `then` where every guard holds, `other` elsewhere: a pad (or a piece of a
    /// concatenation) of a value computed in the loop, whose operands were evaluated at
    /// indices that may lie outside it (their reads then take fallbacks, and the result is
    /// not used).
    Select {
        /// The conditions.
        guards: SmallVec<[Guard; 2]>,
        /// The value where they hold.
        then: Src,
        /// The value elsewhere.
        other: Src,
    },
}

/// The guards of a place, outermost first, with the read taken when each fails.
type Guards = SmallVec<[(Guard, Option<usize>); 2]>;

/// A value at a place: its indices over the loop and the guards under which they are read.
type Key = (Value, SmallVec<[Form; 4]>, Guards);

/// The reads and nodes of a fused group, built over its loop dimensions.
pub(crate) struct Reads<'g> {
    graph: &'g Graph,
    insts: &'g [&'g InstData],
    /// The member instruction computing each value read through (remap members only).
    through: HashMap<Value, usize>,
    /// The member instruction computing each value computed in the loop (elementwise
    /// members, and broadcasts that pass a member through).
    computed: HashMap<Value, usize>,
    /// The loop dimensions (uncoalesced).
    dims: SmallVec<[usize; 4]>,
    /// The source of every value at every place visited.
    memo: HashMap<Key, Src>,
    /// The reads built so far.
    pub reads: Vec<Read>,
    /// The nodes built so far (operands before their users).
    pub nodes: Vec<Node>,
}

/// The element of a constant when all its elements are equal bit for bit (and there is at
/// least one).
fn uniform(graph: &Graph, v: Value) -> bool {
    let ValueDef::Result(i, _) = graph.def(v) else {
        return false;
    };
    let Op::Literal(LiteralOp::Const(lit)) = &graph.inst(i).op else {
        return false;
    };
    fn same<T: Copy>(xs: &[T], key: impl Fn(T) -> u64) -> bool {
        xs.first()
            .is_some_and(|&x0| xs.iter().all(|&x| key(x) == key(x0)))
    }
    match lit.0.data() {
        Data::F32(v) => same(v, |x| x.to_bits() as u64),
        Data::F64(v) => same(v, f64::to_bits),
        Data::I32(v) => same(v, |x| x as u32 as u64),
        Data::Bool(v) => same(v, |x| x as u64),
    }
}

/// The order `k ≥ 2` of `v` when it is a float constant holding the `k × k` identity bit for
/// bit (ones on the diagonal, `+0.0` elsewhere): a gather of its rows or columns is a one-hot
/// vector, which a vector loop computes by comparing the index with the row instead of
/// loading each lane (see `fused::one_hot`).
pub(crate) fn identity_order(graph: &Graph, v: Value) -> Option<usize> {
    let ValueDef::Result(i, _) = graph.def(v) else {
        return None;
    };
    let Op::Literal(LiteralOp::Const(lit)) = &graph.inst(i).op else {
        return None;
    };
    let &[k, k2] = graph.ty(v).dims() else {
        return None;
    };
    fn eye<T: Copy>(xs: &[T], k: usize, bits: impl Fn(T) -> u64, one: u64) -> bool {
        xs.iter()
            .enumerate()
            .all(|(p, &x)| bits(x) == if p % (k + 1) == 0 { one } else { 0 })
    }
    let ok = k == k2
        && k >= 2
        && match lit.0.data() {
            Data::F32(xs) => eye(xs, k, |x| x.to_bits() as u64, 1f32.to_bits() as u64),
            Data::F64(xs) => eye(xs, k, f64::to_bits, 1f64.to_bits()),
            Data::I32(_) | Data::Bool(_) => false,
        };
    ok.then_some(k)
}

impl<'g> Reads<'g> {
    /// A builder over loop `dims`, reading through the member instructions `through`.
    pub fn new(
        graph: &'g Graph,
        insts: &'g [&'g InstData],
        through: HashMap<Value, usize>,
        computed: HashMap<Value, usize>,
        dims: &[usize],
    ) -> Reads<'g> {
        Reads {
            graph,
            insts,
            through,
            computed,
            dims: SmallVec::from_slice(dims),
            memo: HashMap::new(),
            reads: Vec::new(),
            nodes: Vec::new(),
        }
    }

    /// The identity forms of a value `v` of the loop's shape (up to unit dimensions).
    fn identity(&self, v: Value) -> Result<SmallVec<[Form; 4]>> {
        let vd = self.graph.ty(v).dims();
        let mut forms: SmallVec<[Form; 4]> = SmallVec::new();
        if vd.is_empty() {
            return Ok(forms);
        }
        // Pair the non-unit dimensions in order; unit dimensions are at index 0.
        let mut loop_dims = (0..self.dims.len()).filter(|&d| self.dims[d] != 1);
        for &n in vd {
            if n == 1 {
                forms.push(Form::constant(0));
                continue;
            }
            match loop_dims.next() {
                Some(d) if self.dims[d] == n => forms.push(Form {
                    d: Some(d),
                    a: 1,
                    c: 0,
                }),
                _ => return Err(jit_err("a fused value whose shape is not the loop's")),
            }
        }
        if loop_dims.next().is_some() {
            return Err(jit_err("a fused value whose shape is not the loop's"));
        }
        Ok(forms)
    }

    /// The source of `v` at the loop index (`v` has the loop's shape up to unit dimensions,
    /// or rank 0).
    pub fn value(&mut self, v: Value) -> Result<Src> {
        let forms = self.identity(v)?;
        self.src(v, forms, SmallVec::new())
    }

    /// The source of `v`, if it was visited at the loop index.
    pub fn at_identity(&self, v: Value) -> Option<Src> {
        let forms = self.identity(v).ok()?;
        self.memo.get(&(v, forms, SmallVec::new())).copied()
    }

    /// Marks the reads that nodes or `outs` use directly (the others are only fallbacks).
    pub fn mark_top(&mut self, outs: &[Src]) {
        let mark = |reads: &mut Vec<Read>, s: &Src| {
            if let Src::Read(k) = s {
                reads[*k].top = true;
            }
        };
        for s in outs {
            mark(&mut self.reads, s);
        }
        for n in &self.nodes {
            match n {
                Node::Op { args, .. } => args.iter().for_each(|s| mark(&mut self.reads, s)),
                Node::Select { then, other, .. } => {
                    mark(&mut self.reads, then);
                    mark(&mut self.reads, other);
                }
            }
        }
    }

    /// The source of `v` at the indices `forms` under `guards` (memoised: a value used
    /// twice at one place is computed once).
    fn src(&mut self, v: Value, forms: SmallVec<[Form; 4]>, guards: Guards) -> Result<Src> {
        // Depth first with an explicit stack: chains of computed members can be as long as
        // the graph (remaps nest only a bounded number of times, see `crate::fuse`).
        let root: Key = (v, forms, guards);
        let mut stack: Vec<(Key, bool)> = vec![(root.clone(), false)];
        while let Some((key, expanded)) = stack.pop() {
            if self.memo.contains_key(&key) {
                continue;
            }
            let deps = match self.computed.get(&key.0) {
                Some(&j) => self.deps(j, &key)?,
                None => SmallVec::new(),
            };
            if !expanded && !deps.is_empty() {
                stack.push((key, true));
                stack.extend(deps.into_iter().map(|d| (d, false)));
                continue;
            }
            let (v, forms, guards) = key.clone();
            let s = if self.through.contains_key(&v) {
                self.read(v, forms, guards)?
            } else if let Some(&j) = self.computed.get(&v) {
                let inst = self.insts[j];
                let got = |d: &Key| {
                    self.memo
                        .get(d)
                        .copied()
                        .ok_or_else(|| jit_err("a fused operand not computed before its user"))
                };
                if matches!(inst.op, Op::Shape(ShapeOp::BroadcastInDim { .. })) {
                    got(&deps[0])?
                } else {
                    let args = deps
                        .iter()
                        .map(got)
                        .collect::<Result<SmallVec<[Src; 3]>>>()?;
                    self.nodes.push(Node::Op { member: j, args });
                    Src::Node(self.nodes.len() - 1)
                }
            } else {
                Src::Read(self.leaf(v, &forms, guards)?)
            };
            self.memo.insert(key, s);
        }
        self.memo
            .get(&root)
            .copied()
            .ok_or_else(|| jit_err("a fused value without a source"))
    }

    /// The operands (value and place) of the computed member at position `j` at the place
    /// of `key`: an elementwise op's operands at the same indices (rank-0 operands at none),
    /// or the operand of a broadcast that adds unit dims, whose non-unit dims are the value's.
    fn deps(&self, j: usize, key: &Key) -> Result<SmallVec<[Key; 3]>> {
        let (v, forms, guards) = key;
        let inst = self.insts[j];
        let mut out: SmallVec<[Key; 3]> = SmallVec::new();
        if matches!(inst.op, Op::Shape(ShapeOp::BroadcastInDim { .. })) {
            let x = inst.args[0];
            let mut vf = forms
                .iter()
                .zip(self.graph.ty(*v).dims())
                .filter(|p| *p.1 != 1);
            let mut xf: SmallVec<[Form; 4]> = SmallVec::new();
            for &n in self.graph.ty(x).dims() {
                xf.push(if n == 1 {
                    Form::constant(0)
                } else {
                    *vf.next()
                        .ok_or_else(|| jit_err("a pass-through broadcast of another shape"))?
                        .0
                });
            }
            out.push((x, xf, guards.clone()));
        } else {
            for &a in &inst.args {
                let af = if self.graph.ty(a).is_scalar() {
                    SmallVec::new()
                } else {
                    forms.clone()
                };
                out.push((a, af, guards.clone()));
            }
        }
        Ok(out)
    }

    /// The source of the remap member result `v` at the indices `forms` (one per dimension
    /// of `v`) under `guards`.
    fn read(&mut self, v: Value, forms: SmallVec<[Form; 4]>, guards: Guards) -> Result<Src> {
        let Some(&j) = self.through.get(&v) else {
            return Err(jit_err("a fused read through a value that is not a remap"));
        };
        let inst = self.insts[j];
        if let Op::Index(IndexOp::Gather(ix)) = &inst.op {
            return self.gather(ix, inst, &forms, guards);
        }
        let Op::Shape(op) = &inst.op else {
            return Err(jit_err("a fused read through a non-shape op"));
        };
        let x = inst.args[0];
        let xd: SmallVec<[usize; 4]> = SmallVec::from_slice(self.graph.ty(x).dims());
        let mut xf: SmallVec<[Form; 4]> = SmallVec::new();
        match op {
            ShapeOp::BroadcastInDim { dims, .. } => {
                for (k, &d) in dims.iter().enumerate() {
                    xf.push(if xd[k] == 1 {
                        Form::constant(0)
                    } else {
                        forms[d]
                    });
                }
                self.src(x, xf, guards)
            }
            ShapeOp::Transpose { perm } => {
                xf = SmallVec::from_elem(Form::constant(0), xd.len());
                for (e, &p) in perm.iter().enumerate() {
                    xf[p] = forms[e];
                }
                self.src(x, xf, guards)
            }
            ShapeOp::Slice { start, stride, .. } => {
                for (e, f) in forms.iter().enumerate() {
                    xf.push(f.scale_shift(stride[e] as i64, start[e] as i64)?);
                }
                self.src(x, xf, guards)
            }
            ShapeOp::Rev { axes } => {
                for (e, f) in forms.iter().enumerate() {
                    xf.push(if axes.contains(&e) {
                        f.scale_shift(-1, xd[e] as i64 - 1)?
                    } else {
                        *f
                    });
                }
                self.src(x, xf, guards)
            }
            ShapeOp::Pad {
                lo, hi, interior, ..
            } => {
                if interior.iter().any(|&k| k != 0) {
                    return Err(jit_err("a fused read through interior padding"));
                }
                let fill = self.leaf(inst.args[1], &[], guards.clone())?;
                let mut gs = guards;
                let mut own: SmallVec<[Guard; 2]> = SmallVec::new();
                for (e, f) in forms.iter().enumerate() {
                    let g = f.scale_shift(1, -(lo[e] as i64))?;
                    if lo[e] != 0 || hi[e] != 0 {
                        own.push(Guard::of(g, xd[e] as i64));
                        gs.push((Guard::of(g, xd[e] as i64), Some(fill)));
                    }
                    xf.push(g);
                }
                match self.src(x, xf, gs)? {
                    Src::Node(k) if !own.is_empty() => {
                        self.nodes.push(Node::Select {
                            guards: own,
                            then: Src::Node(k),
                            other: Src::Read(fill),
                        });
                        Ok(Src::Node(self.nodes.len() - 1))
                    }
                    s => Ok(s),
                }
            }
            ShapeOp::Concatenate { axis } => {
                let axis = *axis;
                let mut ends: SmallVec<[i64; 4]> = SmallVec::new();
                let mut at = 0i64;
                for &p in &inst.args {
                    ends.push(at);
                    at += self.graph.ty(p).dims()[axis] as i64;
                }
                // The last piece first: each piece falls back on the next (a read on a
                // read through its guard, otherwise through a select).
                let mut next: Option<Src> = None;
                for (k, &p) in inst.args.iter().enumerate().rev() {
                    let n = self.graph.ty(p).dims()[axis] as i64;
                    let mut pf = forms.clone();
                    pf[axis] = forms[axis].scale_shift(1, -ends[k])?;
                    let g = Guard::of(pf[axis], n);
                    let fallback = match next {
                        Some(Src::Read(r)) => Some(r),
                        _ => None,
                    };
                    let mut gs = guards.clone();
                    gs.push((g, fallback));
                    let s = self.src(p, pf, gs)?;
                    next = Some(match (s, next) {
                        (Src::Read(_), None | Some(Src::Read(_))) | (_, None) => s,
                        (_, Some(other)) => {
                            self.nodes.push(Node::Select {
                                guards: SmallVec::from_slice(&[g]),
                                then: s,
                                other,
                            });
                            Src::Node(self.nodes.len() - 1)
                        }
                    });
                }
                next.ok_or_else(|| jit_err("a concatenation without operands"))
            }
            ShapeOp::Reshape { .. } => {
                // Only dimensions of size 1 come or go (see `crate::fuse::unit_reshape`):
                // the others pair in order, and a unit dimension is read at index 0.
                let mut vf = forms
                    .iter()
                    .zip(self.graph.ty(v).dims())
                    .filter(|p| *p.1 != 1)
                    .map(|p| *p.0);
                for &n in &xd {
                    xf.push(if n == 1 {
                        Form::constant(0)
                    } else {
                        vf.next()
                            .ok_or_else(|| jit_err("a fused read through a reshape that moves"))?
                    });
                }
                if vf.next().is_some() {
                    return Err(jit_err("a fused read through a reshape that moves"));
                }
                self.src(x, xf, guards)
            }
        }
    }

    /// The read of a gather by constant indices (see `crate::fuse::const_gather`) at `forms`:
    /// the indices are read at the forms of their dimensions, the operand at the other forms
    /// plus the loaded index along the axis, after checking again that every index lies
    /// inside the axis.
    fn gather(
        &mut self,
        ix: &Indexing,
        inst: &InstData,
        forms: &[Form],
        guards: Guards,
    ) -> Result<Src> {
        let (x, idx) = (inst.args[0], inst.args[1]);
        let xd = self.graph.ty(x).dims();
        let (axis, ir) = (ix.axis, self.graph.ty(idx).rank());
        let n = *xd
            .get(axis)
            .ok_or_else(|| jit_err("a fused gather along a missing axis"))?;
        let inside = crate::fuse::const_indices(self.graph, idx)
            .is_some_and(|(lo, hi)| lo >= 0 && (hi as i64) < n as i64);
        if ix.along || !inside || forms.len() != axis + ir + xd.len() - axis - 1 {
            return Err(jit_err(
                "a fused gather whose indices are not constants inside the axis",
            ));
        }
        let k_idx = self.leaf(idx, &forms[axis..axis + ir], guards.clone())?;
        let mut xf: SmallVec<[Form; 4]> = SmallVec::from_slice(&forms[..axis]);
        xf.push(Form::constant(0));
        xf.extend_from_slice(&forms[axis + ir..]);
        let k = self.leaf(x, &xf, guards)?;
        let stride = super::strides(xd)[axis];
        self.reads[k].index = Some((k_idx, stride));
        // A uniform operand is read at one place whatever the index says.
        if self.reads[k].strides.iter().all(|&s| s == 0) && self.reads[k].base == 0 && n > 0 {
            let uniform_x = uniform(self.graph, x);
            if uniform_x {
                self.reads[k].index = None;
            }
        }
        Ok(Src::Read(k))
    }

    /// A read of the buffer (or register) `v` at the indices `forms` under `guards`, after
    /// checking that every index it can load lies inside `v`.
    fn leaf(&mut self, v: Value, forms: &[Form], guards: Guards) -> Result<usize> {
        let vd = self.graph.ty(v).dims();
        if forms.len() != vd.len() {
            return Err(jit_err("a fused read of the wrong rank"));
        }
        // The loop indices where every guard holds, per loop dimension.
        let mut range: SmallVec<[(i64, i64); 4]> =
            self.dims.iter().map(|&n| (0, n as i64)).collect();
        let mut reachable = range.iter().all(|&(lo, hi)| lo < hi);
        for (g, _) in &guards {
            let (lo, hi) = g.interval();
            match g.fixed() {
                Some(ok) => reachable &= ok,
                None => {
                    let r = &mut range[g.dim];
                    *r = (r.0.max(lo), r.1.min(hi));
                    reachable &= r.0 < r.1;
                }
            }
        }
        let strides = super::strides(vd);
        let mut base = 0i64;
        let mut st: SmallVec<[i64; 4]> = SmallVec::from_elem(0, self.dims.len());
        let ovf = || jit_err("a remapped offset overflows");
        for (e, f) in forms.iter().enumerate() {
            let n = vd[e] as i64;
            if reachable {
                let (lo, hi) = match f.d {
                    Some(d) => (f.a * range[d].0 + f.c, f.a * (range[d].1 - 1) + f.c),
                    None => (f.c, f.c),
                };
                if lo.min(hi) < 0 || lo.max(hi) >= n {
                    return Err(jit_err(format!(
                        "a fused read out of bounds: index {}..={} of a dimension of {n}",
                        lo.min(hi),
                        lo.max(hi)
                    )));
                }
            }
            base = strides[e]
                .checked_mul(f.c)
                .and_then(|t| t.checked_add(base))
                .ok_or_else(ovf)?;
            if let Some(d) = f.d {
                st[d] = strides[e]
                    .checked_mul(f.a)
                    .and_then(|t| t.checked_add(st[d]))
                    .ok_or_else(ovf)?;
            }
        }
        if uniform(self.graph, v) {
            base = 0;
            st.iter_mut().for_each(|s| *s = 0);
        }
        // A pad's guard reaches every read below it with the pad value as its fallback. Only
        // a read of the pad's own operand yields that fallback; a read deeper in a padded
        // expression (whose select takes the pad value outside) may be of another type, a
        // `bool` under a `select` say, and reads a zero of its own type there instead.
        let dtype = self.graph.ty(v).dtype;
        let guards = guards
            .into_iter()
            .map(|(g, f)| {
                (
                    g,
                    f.filter(|&f| self.graph.ty(self.reads[f].leaf).dtype == dtype),
                )
            })
            .collect();
        self.reads.push(Read {
            leaf: v,
            base,
            strides: st,
            guards,
            top: false,
            index: None,
        });
        Ok(self.reads.len() - 1)
    }
}

/// The value of guard `g` at loop indices `idx` (the outer coalesced dimensions) and inner
/// index `i`, as an `i8` truth value.
pub(crate) fn guard_holds(cx: &mut Ctx, g: &Guard, idx: &[ir::Value], i: ir::Value) -> ir::Value {
    if let Some(ok) = g.fixed() {
        return cx.fb.ins().iconst(ir::types::I8, ok as i64);
    }
    let x = idx.get(g.dim).copied().unwrap_or(i);
    let t = cx.fb.ins().imul_imm_s(x, g.a);
    let t = cx.fb.ins().iadd_imm_s(t, g.c);
    // One unsigned comparison checks 0 ≤ t < n.
    cx.fb.ins().icmp_imm_s(IntCC::UnsignedLessThan, t, g.n)
}

/// A zero of `dtype` (the value of a fallback no index reaches).
fn zero(cx: &mut Ctx, dtype: DType) -> ir::Value {
    match dtype {
        DType::F32 => cx.fb.ins().f32const(0.0),
        DType::F64 => cx.fb.ins().f64const(0.0),
        DType::I32 | DType::Bool => cx.fb.ins().iconst(clty(dtype), 0),
    }
}

/// Loads read `k` at inner index `i` (element offset `offs[k] + i·stride`, plus the loaded
/// index times the axis stride for a gather) without checking guards.
pub(crate) fn load_plain(
    cx: &mut Ctx,
    reads: &[Read],
    inner: usize,
    offs: &[ir::Value],
    i: ir::Value,
    k: usize,
) -> Result<ir::Value> {
    let r = &reads[k];
    let mut o = match r.strides[inner] {
        0 => offs[k],
        s => {
            let t = cx.fb.ins().imul_imm_s(i, s);
            cx.fb.ins().iadd(offs[k], t)
        }
    };
    if let Some((ki, stride)) = r.index {
        let at = load_plain(cx, reads, inner, offs, i, ki)?;
        let at = cx.fb.ins().sextend(ir::types::I64, at);
        let t = cx.fb.ins().imul_imm_s(at, stride);
        o = cx.fb.ins().iadd(o, t);
    }
    cx.load(r.leaf, o)
}

/// Loads read `k` at inner index `i` (see [`load_plain`]) after checking its guards in order,
/// taking the fallback of the first that fails.
pub(crate) fn guarded_load(
    cx: &mut Ctx,
    reads: &[Read],
    inner: usize,
    offs: &[ir::Value],
    idx: &[ir::Value],
    i: ir::Value,
    k: usize,
) -> Result<ir::Value> {
    let r = &reads[k];
    let dtype = cx.graph.ty(r.leaf).dtype;
    if r.guards.is_empty() {
        return load_plain(cx, reads, inner, offs, i, k);
    }
    let merge = cx.fb.create_block();
    let out = cx.fb.append_block_param(merge, clty(dtype));
    for (g, fallback) in &r.guards {
        let ok = guard_holds(cx, g, idx, i);
        let pass = cx.fb.create_block();
        let fail = cx.fb.create_block();
        cx.fb.ins().brif(ok, pass, &[], fail, &[]);
        cx.fb.switch_to_block(fail);
        let v = match fallback {
            Some(f) => guarded_load(cx, reads, inner, offs, idx, i, *f)?,
            None => zero(cx, dtype),
        };
        cx.fb.ins().jump(merge, &[v.into()]);
        cx.fb.switch_to_block(pass);
    }
    let v = load_plain(cx, reads, inner, offs, i, k)?;
    cx.fb.ins().jump(merge, &[v.into()]);
    cx.fb.switch_to_block(merge);
    Ok(out)
}

/// The part `m_lo..m_hi` of the row `lo..hi` where every guard of every top read and of
/// every select holds (reads load without checks there, selects take their first value);
/// empty (at `hi`) when a guard on an outer dimension fails for this row.
pub(crate) fn middle(
    cx: &mut Ctx,
    reads: &[Read],
    nodes: &[Node],
    inner: usize,
    idx: &[ir::Value],
    lo: ir::Value,
    hi: ir::Value,
) -> (ir::Value, ir::Value) {
    let (mut a, mut b) = (i64::MIN, i64::MAX);
    let mut outer: Option<ir::Value> = None;
    let of_reads = reads
        .iter()
        .filter(|r| r.top)
        .flat_map(|r| r.guards.iter().map(|(g, _)| g));
    let of_nodes = nodes.iter().flat_map(|n| match n {
        Node::Select { guards, .. } => guards.as_slice(),
        Node::Op { .. } => &[],
    });
    for g in of_reads.chain(of_nodes) {
        if g.fixed().is_none() && g.dim != inner {
            let z = cx.iconst(0);
            let ok = guard_holds(cx, g, idx, z);
            outer = Some(match outer {
                Some(o) => cx.fb.ins().band(o, ok),
                None => ok,
            });
        } else {
            let (l, h) = g.interval();
            a = a.max(l);
            b = b.min(h);
        }
    }
    let imax = |cx: &mut Ctx, x: ir::Value, y: ir::Value| cx.fb.ins().smax(x, y);
    let imin = |cx: &mut Ctx, x: ir::Value, y: ir::Value| cx.fb.ins().smin(x, y);
    if a >= b {
        return (hi, hi);
    }
    let ca = cx.iconst(a);
    let cb = cx.iconst(b);
    let m_lo = imax(cx, lo, ca);
    let m_lo = imin(cx, m_lo, hi);
    let m_hi = imin(cx, hi, cb);
    let m_hi = imax(cx, m_hi, m_lo);
    match outer {
        Some(ok) => {
            let m_lo = cx.fb.ins().select(ok, m_lo, hi);
            let m_hi = cx.fb.ins().select(ok, m_hi, hi);
            (m_lo, m_hi)
        }
        None => (m_lo, m_hi),
    }
}

/// At most this many segments a guarded row is cut into (see [`segments`]); with more cut
/// points the row keeps the middle split of [`middle`].
pub(crate) const SEGMENTS_MAX: usize = 8;

/// What a read yields over one segment of a row (see [`segments`]).
#[derive(Clone, Debug)]
pub(crate) enum Resolved {
    /// Read number `k`, with every guard holding.
    Read(usize),
    /// Zero (a place no index reaches).
    Zero,
    /// The first when the guard, which depends only on outer loop indices, holds for the
    /// row; the second otherwise.
    Cond(Guard, Box<Resolved>, Box<Resolved>),
}

/// Whether guard `g` holds over the inner indices `seg` of every row (`Some(true)`), over
/// none (`Some(false)`), or depends on the row (`None`: a guard on an outer dimension).
/// `Err(())` when it holds over part of the segment only.
fn truth(g: &Guard, inner: usize, seg: (i64, i64)) -> std::result::Result<Option<bool>, ()> {
    if let Some(ok) = g.fixed() {
        return Ok(Some(ok));
    }
    if g.dim != inner {
        return Ok(None);
    }
    let (lo, hi) = g.interval();
    if lo <= seg.0 && seg.1 <= hi {
        Ok(Some(true))
    } else if hi <= seg.0 || seg.1 <= lo {
        Ok(Some(false))
    } else {
        Err(())
    }
}

/// The cut points `0 = c_0 < c_1 < … < c_s = n` of an inner dimension of length `n` at which
/// some guard (of any read or select) on the inner dimension changes: over each segment
/// `c_j..c_{j+1}` every such guard holds throughout or fails throughout, so each read
/// resolves to one read of its fallback chain (possibly chosen per row, see [`resolve`]).
/// `None` when the segments would be more than [`SEGMENTS_MAX`].
pub(crate) fn segments(reads: &[Read], nodes: &[Node], inner: usize, n: i64) -> Option<Vec<i64>> {
    let mut cuts: Vec<i64> = vec![0, n];
    let of_reads = reads.iter().flat_map(|r| r.guards.iter().map(|(g, _)| g));
    let of_nodes = nodes.iter().flat_map(|x| match x {
        Node::Select { guards, .. } => guards.as_slice(),
        Node::Op { .. } => &[],
    });
    for g in of_reads.chain(of_nodes) {
        if g.fixed().is_none() && g.dim == inner {
            let (lo, hi) = g.interval();
            cuts.push(lo.clamp(0, n));
            cuts.push(hi.clamp(0, n));
        }
    }
    cuts.sort_unstable();
    cuts.dedup();
    (cuts.len() <= SEGMENTS_MAX + 1).then_some(cuts)
}

/// The loop indices a resolution path still allows, per loop dimension (a list of disjoint
/// intervals; the inner dimension's is not used).
pub(crate) type Rows = SmallVec<[SmallVec<[(i64, i64); 2]>; 4]>;

/// Every index of loop `dims`.
pub(crate) fn all_rows(dims: &[usize]) -> Rows {
    dims.iter()
        .map(|&n| SmallVec::from_slice(&[(0, n as i64)]))
        .collect()
}

/// `rows` narrowed to where guard `g` (on an outer dimension) holds, or fails when `holds`
/// is false; `None` when no index is left.
fn narrow(rows: &Rows, g: &Guard, holds: bool) -> Option<Rows> {
    let (lo, hi) = g.interval();
    let mut out = rows.clone();
    let ranges = out.get_mut(g.dim)?;
    let mut next: SmallVec<[(i64, i64); 2]> = SmallVec::new();
    for &(a, b) in ranges.iter() {
        let pieces: [(i64, i64); 2] = if holds {
            [(a.max(lo), b.min(hi)), (0, 0)]
        } else {
            [(a, b.min(lo)), (a.max(hi), b)]
        };
        next.extend(pieces.into_iter().filter(|&(x, y)| x < y));
    }
    if next.is_empty() {
        return None;
    }
    *ranges = next;
    Some(out)
}

/// What read `k` yields over the inner indices `seg` (a segment of [`segments`]) of the
/// rows `rows` allows, checking its guards from position `from` on in order and taking the
/// fallback of the first that fails, as [`guarded_load`] does element by element. A guard on
/// an outer dimension that no allowed row passes (or fails) leaves one branch only. `None`
/// when a guard holds over part of the segment only or the chain is deeper than the reads
/// are many.
pub(crate) fn resolve(
    reads: &[Read],
    k: usize,
    from: usize,
    inner: usize,
    seg: (i64, i64),
    rows: &Rows,
    depth: usize,
) -> Option<Resolved> {
    if depth > reads.len() {
        return None;
    }
    let r = reads.get(k)?;
    for (p, (g, fallback)) in r.guards.iter().enumerate().skip(from) {
        let fail = |rows: &Rows| match fallback {
            Some(f) => resolve(reads, *f, 0, inner, seg, rows, depth + 1),
            None => Some(Resolved::Zero),
        };
        match truth(g, inner, seg).ok()? {
            Some(true) => {}
            Some(false) => return fail(rows),
            None => {
                return match (narrow(rows, g, true), narrow(rows, g, false)) {
                    (Some(yes), Some(no)) => {
                        let then = resolve(reads, k, p + 1, inner, seg, &yes, depth + 1)?;
                        Some(Resolved::Cond(*g, Box::new(then), Box::new(fail(&no)?)))
                    }
                    (Some(yes), None) => resolve(reads, k, p + 1, inner, seg, &yes, depth + 1),
                    (None, Some(no)) => fail(&no),
                    (None, None) => None,
                };
            }
        }
    }
    Some(Resolved::Read(k))
}

/// Whether the select guards `guards` hold over the inner indices `seg` of every row:
/// `Some` when decided for the whole segment (no guard on an outer dimension), `None`
/// otherwise.
pub(crate) fn select_truth(guards: &[Guard], inner: usize, seg: (i64, i64)) -> Option<bool> {
    let mut all = true;
    for g in guards {
        match truth(g, inner, seg).ok()? {
            Some(ok) => all &= ok,
            None => return None,
        }
    }
    Some(all)
}
