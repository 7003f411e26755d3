//! Windowed reductions (`reduce_window_sum`, `reduce_window_max`, `reduce_window_min`, with
//! XLA's semantics) and the two linear ops that carry the derivatives of the max and min
//! windows: `select_and_gather_add` (the tangent at the selected element of each window) and
//! its transpose `select_and_scatter_add` (each window's cotangent added at its selected
//! element).
//!
//! **Geometry.** Per dimension the operand of size `n` is first dilated by `base_dilation`
//! (`b − 1` holes between neighbours, size `(n − 1)·b + 1`, or 0 when `n = 0`), then padded
//! with `lo` and `hi` positions. A window of `dims` positions, `window_dilation` apart (so it
//! spans `(w − 1)·wd + 1` positions), slides over the padded line by `strides`; the result has
//! one element per window that fits, `(padded − span) / stride + 1` (0 when none fits). Holes
//! and padding hold the monoid's identity (0, −∞ or +∞, `i32::MIN` or `i32::MAX`), so they do
//! not change a window's result: the reference loop below simply skips them.
//!
//! **Order.** A window's positions are visited in row-major order of the window index, its
//! accumulator starting at the identity: sums add in that order (so `+0.0` starts every sum,
//! as XLA's init value does), max and min fold with the interpreter's NaN-propagating
//! `max`/`min` (+0 beats −0 for max, −0 beats +0 for min).
//!
//! **Selection.** The selected element of a window is the first one in that order that attains
//! the window's max (or min): a NaN counts as the extremum, and for equal values the first
//! wins (also +0 over an earlier −0 for max, as `reduce_window_max` returns +0). A window with
//! no operand element (only padding and holes) selects nothing: its gathered tangent is 0 and
//! its cotangent is dropped. For finite values this is JAX's rule: its derivative of
//! `reduce_window_max` (`min`) folds (value, tangent) pairs in window order from (−∞, 0) with
//! `select(acc ≥ new, acc, new)` (`≤` for min), so a tie keeps the earlier element. The rules
//! part only in corner cases: a window whose maximum is −∞ selects its first −∞ element here
//! (JAX keeps the init pair, tangent 0); a NaN is selected here (the result is NaN) where
//! JAX's comparison lets the next element replace it; and a +0 after a −0 is selected here
//! (it is the result) where JAX keeps the −0, which compares equal. Both linear
//! ops select with the same function, which makes them exact transposes of each other.
//!
//! One generic loop serves the interpreter and the JIT (which calls [`kernel_f64`] and
//! friends through imported symbols), so compiled results equal the interpreter's bit for bit.

use super::op_error;
use crate::array::{Array, Data, Num};
use crate::error::{ErrorKind, Result};
use crate::types::{DType, Dims, Shape, Type};

/// The static parameters of a window, one entry per operand dimension.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    /// The number of positions of the window per dimension (at least 1).
    pub dims: Dims,
    /// How far the window moves between neighbouring results (at least 1).
    pub strides: Dims,
    /// Padding positions before the (dilated) operand.
    pub lo: Dims,
    /// Padding positions after the (dilated) operand.
    pub hi: Dims,
    /// Operand dilation: `b − 1` holes are inserted between neighbouring elements (at least 1).
    pub base_dilation: Dims,
    /// Window dilation: the window's positions are this far apart (at least 1).
    pub window_dilation: Dims,
}

impl Window {
    /// A window of `dims` with unit strides, no padding and no dilation.
    pub fn new(dims: &[usize]) -> Window {
        let ones = Dims::from_elem(1, dims.len());
        let zeros = Dims::from_elem(0, dims.len());
        Window {
            dims: Dims::from_slice(dims),
            strides: ones.clone(),
            lo: zeros.clone(),
            hi: zeros,
            base_dilation: ones.clone(),
            window_dilation: ones,
        }
    }

    /// The rank the window applies to.
    pub fn rank(&self) -> usize {
        self.dims.len()
    }

    /// This window with `strides`.
    pub fn with_strides(mut self, strides: &[usize]) -> Window {
        self.strides = Dims::from_slice(strides);
        self
    }

    /// This window with padding `(lo, hi)` per dimension.
    pub fn with_padding(mut self, padding: &[(usize, usize)]) -> Window {
        self.lo = padding.iter().map(|p| p.0).collect();
        self.hi = padding.iter().map(|p| p.1).collect();
        self
    }

    /// This window with operand (base) dilation.
    pub fn with_base_dilation(mut self, dilation: &[usize]) -> Window {
        self.base_dilation = Dims::from_slice(dilation);
        self
    }

    /// This window with window dilation.
    pub fn with_window_dilation(mut self, dilation: &[usize]) -> Window {
        self.window_dilation = Dims::from_slice(dilation);
        self
    }

    /// The result dimensions for an operand of `dims`, with every parameter and size checked:
    /// an error message (without the op name) when the window does not apply.
    pub fn out_dims(&self, dims: &[usize]) -> std::result::Result<Dims, String> {
        let r = dims.len();
        let fields: [(&str, &Dims); 6] = [
            ("window", &self.dims),
            ("strides", &self.strides),
            ("lo", &self.lo),
            ("hi", &self.hi),
            ("base_dilation", &self.base_dilation),
            ("window_dilation", &self.window_dilation),
        ];
        for (name, v) in fields {
            if v.len() != r {
                return Err(format!(
                    "`{name}` has {} entries for an operand of rank {r}",
                    v.len()
                ));
            }
        }
        for (name, v) in [fields[0], fields[1], fields[4], fields[5]] {
            if v.contains(&0) {
                return Err(format!(
                    "every entry of `{name}` must be at least 1, got {v:?}"
                ));
            }
        }
        let limit = isize::MAX as usize;
        for (name, v) in fields {
            if v.iter().any(|&x| x > limit) {
                return Err(format!(
                    "every entry of `{name}` must be at most {limit}, got {v:?}"
                ));
            }
        }
        let mut out = Dims::with_capacity(r);
        for (d, &n) in dims.iter().enumerate() {
            let too_large =
                || format!("the window geometry of dimension {d} overflows (sizes above {limit})");
            let dilated = match n {
                0 => 0,
                n => (n - 1)
                    .checked_mul(self.base_dilation[d])
                    .and_then(|x| x.checked_add(1))
                    .ok_or_else(too_large)?,
            };
            let padded = dilated
                .checked_add(self.lo[d])
                .and_then(|x| x.checked_add(self.hi[d]))
                .ok_or_else(too_large)?;
            let span = (self.dims[d] - 1)
                .checked_mul(self.window_dilation[d])
                .and_then(|x| x.checked_add(1))
                .ok_or_else(too_large)?;
            if padded > limit || span > limit || self.strides[d] > limit {
                return Err(too_large());
            }
            out.push(if padded < span {
                0
            } else {
                (padded - span) / self.strides[d] + 1
            });
        }
        Ok(out)
    }
}

/// The monoid of a windowed reduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Monoid {
    /// Addition (identity 0).
    Sum,
    /// Maximum (identity −∞ or `i32::MIN`).
    Max,
    /// Minimum (identity +∞ or `i32::MAX`).
    Min,
}

/// Which extremum the select ops pick in each window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Select {
    /// The first maximum (the derivative of `reduce_window_max`).
    Max,
    /// The first minimum (the derivative of `reduce_window_min`).
    Min,
}

impl Select {
    /// The name used in the text format's `select=` parameter.
    pub fn name(self) -> &'static str {
        match self {
            Select::Max => "max",
            Select::Min => "min",
        }
    }

    /// The selector named `name` in the text format.
    pub fn from_name(name: &str) -> Option<Select> {
        [Select::Max, Select::Min]
            .into_iter()
            .find(|s| s.name() == name)
    }
}

/// A windowed op.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum WindowOp {
    /// Reduces every window of the operand with the monoid (`reduce_window_sum`, `_max`,
    /// `_min`). f32, f64 and i32 operands (i32 sums wrap).
    Reduce {
        /// The reduction.
        monoid: Monoid,
        /// The window.
        window: Window,
    },
    /// `select_and_gather_add(t, x)`: for each window of `x`, the element of `t` (same type
    /// as `x`) at the window's selected position, 0 when it selects nothing. Linear in `t`;
    /// its result has the shape of `reduce_window` of `x`.
    SelectAndGatherAdd {
        /// The extremum selected.
        select: Select,
        /// The window.
        window: Window,
    },
    /// `select_and_scatter_add(c, x)`: zeros of `x`'s type with each element of `c` (one per
    /// window of `x`) added at its window's selected position, in row-major order of the
    /// windows. Linear in `c`; the transpose of `select_and_gather_add`.
    SelectAndScatterAdd {
        /// The extremum selected.
        select: Select,
        /// The window.
        window: Window,
    },
}

impl WindowOp {
    /// The text-format name.
    pub fn name(&self) -> &'static str {
        match self {
            WindowOp::Reduce { monoid, .. } => match monoid {
                Monoid::Sum => "reduce_window_sum",
                Monoid::Max => "reduce_window_max",
                Monoid::Min => "reduce_window_min",
            },
            WindowOp::SelectAndGatherAdd { .. } => "select_and_gather_add",
            WindowOp::SelectAndScatterAdd { .. } => "select_and_scatter_add",
        }
    }

    /// The window of the op.
    pub fn window(&self) -> &Window {
        match self {
            WindowOp::Reduce { window, .. }
            | WindowOp::SelectAndGatherAdd { window, .. }
            | WindowOp::SelectAndScatterAdd { window, .. } => window,
        }
    }

    /// The same op with another window.
    pub fn with_window(self, window: Window) -> WindowOp {
        match self {
            WindowOp::Reduce { monoid, .. } => WindowOp::Reduce { monoid, window },
            WindowOp::SelectAndGatherAdd { select, .. } => {
                WindowOp::SelectAndGatherAdd { select, window }
            }
            WindowOp::SelectAndScatterAdd { select, .. } => {
                WindowOp::SelectAndScatterAdd { select, window }
            }
        }
    }

    /// The number of operands.
    pub fn arity(&self) -> usize {
        match self {
            WindowOp::Reduce { .. } => 1,
            WindowOp::SelectAndGatherAdd { .. } | WindowOp::SelectAndScatterAdd { .. } => 2,
        }
    }

    /// The type rule.
    pub fn infer(&self, args: &[Type]) -> Result<Type> {
        let name = self.name();
        if args.len() != self.arity() {
            return Err(op_error(
                ErrorKind::Arity,
                name,
                args,
                format!("takes {} operands, got {}", self.arity(), args.len()),
            ));
        }
        // The operand the windows slide over: the last one.
        let x = &args[args.len() - 1];
        if !matches!(x.dtype, DType::F32 | DType::F64 | DType::I32) {
            return Err(op_error(
                ErrorKind::DType,
                name,
                args,
                "needs an f32, f64 or i32 operand",
            ));
        }
        let out = self
            .window()
            .out_dims(x.dims())
            .map_err(|e| op_error(ErrorKind::Shape, name, args, e))?;
        let out = Type {
            dtype: x.dtype,
            shape: Shape(out),
        };
        match self {
            WindowOp::Reduce { .. } => Ok(out),
            WindowOp::SelectAndGatherAdd { .. } => {
                if args[0] != *x {
                    return Err(op_error(
                        ErrorKind::Shape,
                        name,
                        args,
                        format!("the gathered operand must have the type {x} of the selecting one"),
                    ));
                }
                Ok(out)
            }
            WindowOp::SelectAndScatterAdd { .. } => {
                if args[0] != out {
                    return Err(op_error(
                        ErrorKind::Shape,
                        name,
                        args,
                        format!(
                            "the scattered operand must have type {out} (one element per window)"
                        ),
                    ));
                }
                Ok(x.clone())
            }
        }
    }

    /// The reference semantics (see the module documentation).
    pub fn eval(&self, args: &[&Array]) -> Array {
        let x = args[args.len() - 1];
        let out_dims = self
            .window()
            .out_dims(x.dims())
            .expect("the type rule checked the window");
        let geo = Geometry::new(self.window(), x.dims(), &out_dims);
        let code = self.code();
        let (shape, n) = match self {
            WindowOp::Reduce { .. } | WindowOp::SelectAndGatherAdd { .. } => {
                (Shape(out_dims.clone()), geo.out_size())
            }
            WindowOp::SelectAndScatterAdd { .. } => (x.shape().clone(), geo.in_size()),
        };
        let a = args[0].data();
        let data = match (a, x.data()) {
            (Data::F32(a), Data::F32(x)) => run_vec(code, &geo, a, x, n),
            (Data::F64(a), Data::F64(x)) => run_vec(code, &geo, a, x, n),
            (Data::I32(a), Data::I32(x)) => run_vec(code, &geo, a, x, n),
            _ => unreachable!("window ops: operand types are checked by infer"),
        };
        Array::from_parts(shape, data)
    }

    /// The op's kernel code in the parameter block the JIT passes to [`kernel_f64`].
    pub fn code(&self) -> Code {
        match self {
            WindowOp::Reduce { monoid, .. } => Code::Reduce(*monoid),
            WindowOp::SelectAndGatherAdd { select, .. } => Code::Gather(*select),
            WindowOp::SelectAndScatterAdd { select, .. } => Code::Scatter(*select),
        }
    }

    /// The parameter block of this op applied to an operand of `dims` (the op must type-check
    /// for them): the kernel code, the rank, then per dimension the operand size, result size,
    /// window size, stride, low padding, base dilation and window dilation.
    pub fn params(&self, dims: &[usize]) -> Result<Vec<i64>> {
        let w = self.window();
        let out = w.out_dims(dims).map_err(|e| {
            crate::error::Error::new(ErrorKind::Shape, format!("{}: {e}", self.name()))
        })?;
        let mut p = vec![self.code().to_i64(), dims.len() as i64];
        for d in 0..dims.len() {
            p.extend(
                [
                    dims[d],
                    out[d],
                    w.dims[d],
                    w.strides[d],
                    w.lo[d],
                    w.base_dilation[d],
                    w.window_dilation[d],
                ]
                .map(|v| v as i64),
            );
        }
        Ok(p)
    }
}

/// Which loop a kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// `reduce_window_*`.
    Reduce(Monoid),
    /// `select_and_gather_add`.
    Gather(Select),
    /// `select_and_scatter_add`.
    Scatter(Select),
}

impl Code {
    const ALL: [Code; 7] = [
        Code::Reduce(Monoid::Sum),
        Code::Reduce(Monoid::Max),
        Code::Reduce(Monoid::Min),
        Code::Gather(Select::Max),
        Code::Gather(Select::Min),
        Code::Scatter(Select::Max),
        Code::Scatter(Select::Min),
    ];

    fn to_i64(self) -> i64 {
        Code::ALL.iter().position(|&c| c == self).unwrap_or(0) as i64
    }

    fn from_i64(v: i64) -> Option<Code> {
        usize::try_from(v)
            .ok()
            .and_then(|i| Code::ALL.get(i).copied())
    }
}

/// The window geometry of one operand, per dimension.
#[derive(Clone, Debug)]
struct Geometry {
    /// Operand sizes.
    input: Vec<usize>,
    /// Result sizes.
    out: Vec<usize>,
    /// Window sizes.
    window: Vec<usize>,
    /// Window strides.
    stride: Vec<usize>,
    /// Low padding.
    lo: Vec<usize>,
    /// Base dilation.
    base: Vec<usize>,
    /// Window dilation.
    wdil: Vec<usize>,
}

impl Geometry {
    fn new(w: &Window, input: &[usize], out: &[usize]) -> Geometry {
        Geometry {
            input: input.to_vec(),
            out: out.to_vec(),
            window: w.dims.to_vec(),
            stride: w.strides.to_vec(),
            lo: w.lo.to_vec(),
            base: w.base_dilation.to_vec(),
            wdil: w.window_dilation.to_vec(),
        }
    }

    /// Decodes a parameter block (see [`WindowOp::params`]); `None` when it is malformed or its
    /// sizes overflow.
    fn decode(p: &[i64]) -> Option<(Code, Geometry)> {
        let code = Code::from_i64(*p.first()?)?;
        let rank = usize::try_from(*p.get(1)?).ok()?;
        let body = p.get(2..)?;
        if body.len() != rank.checked_mul(7)? {
            return None;
        }
        let mut g = Geometry {
            input: Vec::new(),
            out: Vec::new(),
            window: Vec::new(),
            stride: Vec::new(),
            lo: Vec::new(),
            base: Vec::new(),
            wdil: Vec::new(),
        };
        for c in body.chunks(7) {
            let v: Vec<usize> = c
                .iter()
                .map(|&x| usize::try_from(x).ok())
                .collect::<Option<_>>()?;
            g.input.push(v[0]);
            g.out.push(v[1]);
            g.window.push(v[2]);
            g.stride.push(v[3]);
            g.lo.push(v[4]);
            g.base.push(v[5]);
            g.wdil.push(v[6]);
        }
        // Any block is safe to run when windows and dilations are nonzero and the furthest
        // position a window reaches fits in `isize`: offsets are then checked against the
        // operand before use.
        for d in 0..rank {
            if g.window[d] == 0 || g.base[d] == 0 {
                return None;
            }
            let reach = g.out[d]
                .saturating_sub(1)
                .checked_mul(g.stride[d])?
                .checked_add((g.window[d] - 1).checked_mul(g.wdil[d])?)?;
            if reach > isize::MAX as usize {
                return None;
            }
        }
        Shape(g.input.iter().copied().collect()).checked_size()?;
        Shape(g.out.iter().copied().collect()).checked_size()?;
        Some((code, g))
    }

    fn in_size(&self) -> usize {
        count(&self.input)
    }

    fn out_size(&self) -> usize {
        count(&self.out)
    }

    /// Calls `f(o, positions)` for every result element `o` (row-major), where `positions`
    /// calls its argument with the operand offset of every element of the window, in window
    /// order, skipping padding and holes.
    fn for_each_window(&self, mut f: impl FnMut(usize, &mut dyn FnMut(&mut dyn FnMut(usize)))) {
        let rank = self.input.len();
        if self.out.contains(&0) {
            return;
        }
        let mut in_strides = vec![1usize; rank];
        // Saturating: with a zero dimension the other dimensions' product may not fit, but
        // then no position is inside the operand and no offset is used.
        for d in (0..rank.saturating_sub(1)).rev() {
            in_strides[d] = in_strides[d + 1].saturating_mul(self.input[d + 1]);
        }
        // The offset contribution of window element `k` of result index `o` along `d`, or None
        // where it falls on padding or a hole. Tabulated per dimension when the tables are
        // small (they are for pooling), so the inner loop does no division.
        let contribution = |d: usize, o: usize, k: usize| -> Option<usize> {
            // Position in the padded, dilated line; within `isize::MAX` by the type rule.
            let p = o * self.stride[d] + k * self.wdil[d];
            let q = p.checked_sub(self.lo[d])?;
            if !q.is_multiple_of(self.base[d]) || q / self.base[d] >= self.input[d] {
                return None;
            }
            Some(q / self.base[d] * in_strides[d])
        };
        const MAX_TABLE: usize = 1 << 20;
        let sizes: Option<usize> = (0..rank).try_fold(0usize, |acc, d| {
            acc.checked_add(self.out[d].checked_mul(self.window[d])?)
        });
        let tables: Option<Vec<Vec<Option<usize>>>> = match sizes {
            Some(n) if n <= MAX_TABLE => Some(
                (0..rank)
                    .map(|d| {
                        (0..self.out[d])
                            .flat_map(|od| (0..self.window[d]).map(move |kd| (od, kd)))
                            .map(|(od, kd)| contribution(d, od, kd))
                            .collect()
                    })
                    .collect(),
            ),
            _ => None,
        };
        let mut o = vec![0usize; rank];
        let mut k = vec![0usize; rank];
        let mut flat = 0usize;
        loop {
            let mut positions = |visit: &mut dyn FnMut(usize)| {
                k.iter_mut().for_each(|v| *v = 0);
                loop {
                    let mut off = 0usize;
                    let mut inside = true;
                    for d in 0..rank {
                        let c = match &tables {
                            Some(t) => t[d][o[d] * self.window[d] + k[d]],
                            None => contribution(d, o[d], k[d]),
                        };
                        match c {
                            Some(c) => off += c,
                            None => {
                                inside = false;
                                break;
                            }
                        }
                    }
                    if inside {
                        visit(off);
                    }
                    if !advance(&mut k, &self.window) {
                        break;
                    }
                }
            };
            f(flat, &mut positions);
            flat += 1;
            if !advance(&mut o, &self.out) {
                break;
            }
        }
    }
}

/// The element count of `dims`: 0 with a zero dimension, else the product (which the callers
/// checked to fit).
fn count(dims: &[usize]) -> usize {
    if dims.contains(&0) {
        0
    } else {
        dims.iter().product()
    }
}

/// Advances a row-major multi-index over `dims` (all nonzero); false when it wraps around.
fn advance(idx: &mut [usize], dims: &[usize]) -> bool {
    for d in (0..idx.len()).rev() {
        idx[d] += 1;
        if idx[d] < dims[d] {
            return true;
        }
        idx[d] = 0;
    }
    false
}

/// Whether `c` replaces `best` as the selected element (see the module documentation).
fn better<T: Num>(select: Select, c: T, best: T) -> bool {
    if best.is_nan() {
        return false;
    }
    if c.is_nan() {
        return true;
    }
    match select {
        Select::Max => c > best || (c == best && best.is_neg_zero() && !c.is_neg_zero()),
        Select::Min => c < best || (c == best && c.is_neg_zero() && !best.is_neg_zero()),
    }
}

/// Runs the loop of `code` into `out`: `a` is the reduced (or gathered, or scattered)
/// operand, `x` the operand the windows select on (the same as `a` for reductions).
fn run<T: Num>(code: Code, g: &Geometry, a: &[T], x: &[T], out: &mut [T]) {
    match code {
        Code::Reduce(m) => {
            let (init, f): (T, fn(T, T) -> T) = match m {
                Monoid::Sum => (T::ZERO, T::add),
                Monoid::Max => (T::LOWEST, T::max_nan),
                Monoid::Min => (T::HIGHEST, T::min_nan),
            };
            g.for_each_window(|o, positions| {
                let mut acc = init;
                positions(&mut |i| acc = f(acc, a[i]));
                out[o] = acc;
            });
        }
        Code::Gather(s) | Code::Scatter(s) => {
            let scatter = matches!(code, Code::Scatter(_));
            out.iter_mut().for_each(|v| *v = T::ZERO);
            g.for_each_window(|o, positions| {
                let mut best: Option<usize> = None;
                positions(&mut |i| {
                    if best.is_none_or(|b| better(s, x[i], x[b])) {
                        best = Some(i);
                    }
                });
                if let Some(i) = best {
                    if scatter {
                        out[i] = out[i].add(a[o]);
                    } else {
                        out[o] = a[i];
                    }
                }
            });
        }
    }
}

/// Runs `code` into a new vector of `n` elements (the caller reserved the memory).
fn run_vec<T: Num>(code: Code, g: &Geometry, a: &[T], x: &[T], n: usize) -> Data {
    let mut out = vec![T::ZERO; n];
    run(code, g, a, x, &mut out);
    T::wrap(out)
}

/// The kernel behind the JIT's imported symbols: runs the op described by the parameter block
/// `p` (see [`WindowOp::params`]) on `a` (the reduced, gathered or scattered operand) and `x`
/// (the operand the windows select on; ignored by reductions) into `out`. Returns false, doing
/// nothing, when the block is malformed or a slice length disagrees with it.
fn kernel<T: Num>(p: &[i64], a: &[T], x: &[T], out: &mut [T]) -> bool {
    let Some((code, g)) = Geometry::decode(p) else {
        return false;
    };
    let (ni, no) = (g.in_size(), g.out_size());
    let ok = match code {
        Code::Reduce(_) => a.len() == ni && out.len() == no,
        Code::Gather(_) => a.len() == ni && x.len() == ni && out.len() == no,
        Code::Scatter(_) => a.len() == no && x.len() == ni && out.len() == ni,
    };
    if ok {
        let x = if matches!(code, Code::Reduce(_)) {
            a
        } else {
            x
        };
        run(code, &g, a, x, out);
    }
    ok
}

/// The window kernel (`kernel`) for f64 buffers.
pub fn kernel_f64(p: &[i64], a: &[f64], x: &[f64], out: &mut [f64]) -> bool {
    kernel(p, a, x, out)
}

/// The window kernel (`kernel`) for f32 buffers.
pub fn kernel_f32(p: &[i64], a: &[f32], x: &[f32], out: &mut [f32]) -> bool {
    kernel(p, a, x, out)
}

/// The window kernel (`kernel`) for i32 buffers.
pub fn kernel_i32(p: &[i64], a: &[i32], x: &[i32], out: &mut [i32]) -> bool {
    kernel(p, a, x, out)
}
