//! Value numbering modulo reassociation: floating-point sums and products are numbered by what
//! they compute in exact arithmetic, so values that the graph computes along different routes
//! (`2·(u·2t)`, `(2t)·(2u)` and `-(2·(-(2t·u)))`, which the reverse passes of nested
//! derivatives produce over and over) become one value, and a chain of constant scalings
//! (`2·(3·x)`) becomes one scaling.
//!
//! Every float `neg`, `square`, `mul`, `add` and `sub` gets a *form*: a sum of at most
//! [`MAX_TERMS`] terms, each a finite nonzero coefficient times a product of at most
//! [`MAX_ATOMS`] atoms (values that are not such sums or products, or sums used as factors:
//! products are never distributed over sums). Forms are canonical (terms sorted by their
//! atoms, atoms sorted by value, like terms merged), so one hash table keyed by the form, with
//! its coefficients divided by the first one, finds every earlier value that equals the new one
//! up to a constant factor. The new value is then that value (factor 1), its negation
//! (factor −1), or one multiplication by the factor; otherwise the equation is copied as it is.
//! Each equation is looked at once and its form has a bounded size, so the pass is linear in
//! the graph size (plus hashing); it never adds an equation except for a new constant, and
//! a result with more equations than its input is discarded.
//!
//! Where it runs: on the results of `grad` and `value_and_grad`
//! ([`super::try_simplify_reassociating`]), so on every level of a nested derivative, but not
//! on the intermediate JVP, linear and transposed graphs every transform builds. There, merging
//! two routes to one value can expose a cancellation that was hidden in the graph's structure
//! (`(a + b) + (a − b)` where the two `b` were computed differently); the pass keeps it (it
//! never cancels), and after transposition the folded `1 − 1` leaves a `x·0` term that the
//! exact passes must keep as well (NaN for infinite `x`). Run everywhere, the pass made the
//! second derivative of `sin x · eˣ` one equation larger than before; run on `grad`'s results
//! only, no measured graph grows.
//!
//! Numerical policy (also in ARCHITECTURE.md): the rewrites are identities of real arithmetic
//! (commutativity and associativity of `+` and `·`, merging like terms, folding constant
//! factors and constant summands) and may change rounding, the sign of a zero result, and
//! where an intermediate result overflows or underflows. They never cancel: like terms merge
//! only when their coefficients have the same sign (so `2y − y`, `x − x`, `(x + y) − y` and
//! the compensations of Kahan summation or Veltkamp splitting are left as they are), a form
//! with a zero or non-finite coefficient (`x·0`, a constant that overflowed) is not numbered,
//! products are never distributed over sums, and no operand of the original expression is
//! dropped. So, barring intermediate overflow, a NaN or ±∞ reaching the original reaches the
//! replacement in the same way. Integer and bool arithmetic is left alone.

use crate::emit::{self, splat};
use ferrax_ir::ops::{BinaryOp, UnaryOp};
use ferrax_ir::placement::{table_hash, Placement};
use ferrax_ir::{Builder, DType, Graph, InstData, Op, Result, Type, Value};
use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use smallvec::{smallvec, SmallVec};
use std::hash::{BuildHasher, Hasher};

/// The most atoms (with repetition) in one product.
pub const MAX_ATOMS: usize = 8;

/// The most terms in one sum.
pub const MAX_TERMS: usize = 8;

/// A product of atoms: values of the new graph sorted by index, repeated for powers.
type Atoms = SmallVec<[Value; 4]>;

/// One term of a form: `c · Π atoms`.
#[derive(Clone, Debug, PartialEq)]
struct Term {
    c: f64,
    atoms: Atoms,
}

/// A sum of terms with distinct atom lists, sorted by them.
type Form = SmallVec<[Term; 2]>;

/// The most atoms a [`StoredTerm`] keeps in place.
const INLINE_ATOMS: usize = 2;

/// A term of a recorded form: its coefficient and its `len` atoms, kept in `inline` when
/// there are at most [`INLINE_ATOMS`] of them and otherwise in [`Store::atoms`] from `start`.
/// The first term of a form also holds the form's number of terms (`terms`).
#[derive(Clone, Copy, Debug)]
struct StoredTerm {
    c: f64,
    inline: [Value; INLINE_ATOMS],
    start: u32,
    len: u8,
    terms: u8,
}

/// The recorded forms of one run, flat: form `i` is the terms of `terms` from `i` on (as many
/// as its first term says), and a term's atoms are in place or in `atoms`. Recording a form
/// appends to at most two vectors and allocates nothing per form; a one-term product of two
/// atoms, the commonest form, takes 24 bytes (against 72 for a [`Form`] kept whole), and
/// reading it touches one place.
struct Store {
    terms: Vec<StoredTerm>,
    atoms: Vec<Value>,
}

/// `n` as a `u32` index of a [`Store`] vector. Every form has at most [`MAX_TERMS`] terms of
/// at most [`MAX_ATOMS`] atoms and there is at most one form per equation, so this holds for
/// any graph that fits in memory.
fn index32(n: usize) -> u32 {
    u32::try_from(n).expect("form store index within u32")
}

impl Store {
    /// An empty store with room for about `n` forms of one term.
    fn with_capacity(n: usize) -> Store {
        Store {
            terms: Vec::with_capacity(n),
            atoms: Vec::new(),
        }
    }

    /// The terms of form `i`.
    fn terms(&self, i: u32) -> &[StoredTerm] {
        let i = i as usize;
        &self.terms[i..i + usize::from(self.terms[i].terms)]
    }

    /// The atoms of a stored term.
    fn atoms<'a>(&'a self, t: &'a StoredTerm) -> &'a [Value] {
        let len = usize::from(t.len);
        if len <= INLINE_ATOMS {
            &t.inline[..len]
        } else {
            &self.atoms[t.start as usize..t.start as usize + len]
        }
    }

    /// Form `i`, rebuilt (on the stack, for the forms of at most two terms of at most four
    /// atoms that nearly every equation has).
    fn get(&self, i: u32) -> Form {
        self.terms(i)
            .iter()
            .map(|t| Term {
                c: t.c,
                atoms: Atoms::from_slice(self.atoms(t)),
            })
            .collect()
    }

    /// Records `form` (of at most [`MAX_TERMS`] terms of at most [`MAX_ATOMS`] atoms) and
    /// returns its index.
    fn push(&mut self, form: &[Term]) -> u32 {
        let i = index32(self.terms.len());
        for (k, t) in form.iter().enumerate() {
            let mut inline = [Value(0); INLINE_ATOMS];
            let mut start = 0;
            if t.atoms.len() <= INLINE_ATOMS {
                inline[..t.atoms.len()].copy_from_slice(&t.atoms);
            } else {
                start = index32(self.atoms.len());
                self.atoms.extend_from_slice(&t.atoms);
            }
            self.terms.push(StoredTerm {
                c: t.c,
                inline,
                start,
                len: t.atoms.len() as u8,
                terms: if k == 0 { form.len() as u8 } else { 0 },
            });
        }
        i
    }

    /// Whether form `i` and `y` are equal once each is divided by its first coefficient.
    fn same_key(&self, i: u32, y: &[Term]) -> bool {
        let x = self.terms(i);
        let (cx, cy) = (x[0].c, y[0].c);
        x.len() == y.len()
            && x.iter().zip(y).all(|(s, t)| {
                (s.c / cx).to_bits() == (t.c / cy).to_bits() && self.atoms(s) == t.atoms.as_slice()
            })
    }
}

/// Marks a value of the new graph that has no recorded form.
const NO_FORM: u32 = u32::MAX;

/// Rounds `c` to `dtype` and keeps it only if it is finite and nonzero.
fn coefficient(c: f64, dtype: DType) -> Option<f64> {
    let c = match dtype {
        DType::F32 => c as f32 as f64,
        _ => c,
    };
    (c.is_finite() && c != 0.0).then_some(c)
}

/// The state of one run: the builder, the forms it recorded, the form of every numbered
/// value, and the table of normalised forms.
///
/// Each recorded form is stored once, in `store`; a value's form is its index there
/// (`forms`, indexed by value), and the table holds, for each normalised form seen, the
/// index of the first form with that normalisation and the value that computes it. The
/// table's key is the form divided by its first coefficient, the value's type being implied
/// (every atom of a form has the type of the value). Keys are hashed and compared in place,
/// so a lookup builds nothing. Entries are placed by the form's newest atom
/// ([`ferrax_ir::placement`]), so that the lookups of one walk stay in cache, and keep the
/// 32-bit hash that placed them.
struct Numbering {
    b: Builder,
    store: Store,
    forms: Vec<u32>,
    table: HashTable<(u32, Value, u32)>,
    placement: Placement,
    hasher: DefaultHashBuilder,
    /// The splat constants built so far, by type index and bits: `emit::like` of the same
    /// type and number always returns the same value of the append-only builder, and a
    /// scaling by a constant needs one, so it is built once instead of hash-consed again.
    splats: HashMap<(u32, u64), Value>,
}

/// The newest atom of a form (atoms are sorted within a term), if it has one.
fn newest(form: &[Term]) -> Option<u32> {
    form.iter()
        .filter_map(|t| t.atoms.last())
        .map(|a| a.0)
        .max()
}

/// The hash of `form` divided by its first coefficient (32 bits of it).
fn key_hash(hasher: &DefaultHashBuilder, form: &[Term]) -> u32 {
    let mut h = hasher.build_hasher();
    let c0 = form[0].c;
    for t in form {
        h.write_u64((t.c / c0).to_bits());
        h.write_usize(t.atoms.len());
        for a in &t.atoms {
            h.write_usize(a.index());
        }
    }
    h.finish() as u32
}

impl Numbering {
    /// The index of the recorded form of `v`, if it has one.
    fn recorded(&self, v: Value) -> Option<u32> {
        self.forms.get(v.index()).copied().filter(|&i| i != NO_FORM)
    }

    /// The earlier value whose form equals `form` (of type `ty`) up to a constant factor, and
    /// the first coefficient of that value's form.
    fn lookup(&self, ty: &Type, form: &[Term], key: u32) -> Option<(Value, f64)> {
        let probes = self.placement.probes(key, newest(form));
        probes.into_iter().find_map(|stored| {
            let stored = stored?;
            self.table
                .find(table_hash(stored), |&(i, w, h)| {
                    h == stored && self.store.same_key(i, form) && self.b.ty(w) == ty
                })
                .map(|&(i, w, _)| (w, self.store.terms(i)[0].c))
        })
    }

    /// The form of `v` in the new graph: its recorded form, a constant, or `v` as an atom.
    fn form(&self, v: Value) -> Form {
        if let Some(i) = self.recorded(v) {
            return self.store.get(i);
        }
        let dtype = self.b.ty(v).dtype;
        match splat(&self.b, v).and_then(|c| coefficient(c, dtype)) {
            Some(c) => smallvec![Term {
                c,
                atoms: Atoms::new()
            }],
            None => atom(v),
        }
    }

    /// The form of `v` as a factor of a product. A sum of several terms is an atom: the first
    /// value numbered with the same form up to a constant factor, times that factor, so that
    /// products of proportional sums get proportional forms.
    fn factor(&self, v: Value) -> Form {
        let f = self.form(v);
        if f.len() == 1 {
            return f;
        }
        let ty = self.b.ty(v);
        let key = key_hash(&self.hasher, &f);
        match self.lookup(ty, &f, key) {
            Some((w, cw)) => match coefficient(f[0].c / cw, ty.dtype) {
                Some(c) => smallvec![Term {
                    c,
                    atoms: smallvec![w]
                }],
                None => atom(v),
            },
            None => atom(v),
        }
    }

    /// The form of `op(args)`, if it has one.
    fn form_of(&self, op: &Op, args: &[Value], dtype: DType) -> Option<Form> {
        match op {
            Op::Unary(UnaryOp::Neg) => scaled(self.form(args[0]), -1.0, dtype),
            Op::Unary(UnaryOp::Square) => {
                let f = self.factor(args[0]);
                product(&f, &f, dtype)
            }
            Op::Binary(BinaryOp::Mul) => {
                let (x, y) = (self.form(args[0]), self.form(args[1]));
                if is_constant(&x) {
                    return scaled(y, x[0].c, dtype);
                }
                if is_constant(&y) {
                    return scaled(x, y[0].c, dtype);
                }
                product(&self.factor(args[0]), &self.factor(args[1]), dtype)
            }
            Op::Binary(BinaryOp::Add) => sum(&self.form(args[0]), &self.form(args[1]), dtype),
            Op::Binary(BinaryOp::Sub) => {
                let y = scaled(self.form(args[1]), -1.0, dtype)?;
                sum(&self.form(args[0]), &y, dtype)
            }
            _ => None,
        }
    }

    /// A splat of `x` with the type of `v` ([`emit::like`], remembered).
    fn like(&mut self, v: Value, x: f64) -> Result<Value> {
        let key = (self.b.graph().type_index(v), x.to_bits());
        if let Some(&k) = self.splats.get(&key) {
            return Ok(k);
        }
        let k = emit::like(&mut self.b, v, x)?;
        self.splats.insert(key, k);
        Ok(k)
    }

    /// `factor · w` in the new graph.
    fn scale(&mut self, w: Value, factor: f64) -> Result<Value> {
        if factor == 1.0 {
            Ok(w)
        } else if factor == -1.0 {
            emit::neg(&mut self.b, w)
        } else {
            let c = self.like(w, factor)?;
            emit::mul(&mut self.b, w, c)
        }
    }

    /// Constant folding through a chain of scalings and constant additions: a form `c·a`
    /// becomes one multiplication (`2·(3·x)` → `6·x`), a form `k ± a` one addition or
    /// subtraction (`(x + 1) + 2` → `x + 3`); other forms are left to the equation itself.
    fn direct(&mut self, form: &Form) -> Result<Option<Value>> {
        match form.as_slice() {
            [t] if t.atoms.len() == 1 => self.scale(t.atoms[0], t.c).map(Some),
            [k, t] if k.atoms.is_empty() && t.atoms.len() == 1 && t.c.abs() == 1.0 => {
                let a = t.atoms[0];
                let k = self.like(a, k.c)?;
                if t.c > 0.0 {
                    emit::add(&mut self.b, a, k).map(Some)
                } else {
                    emit::sub(&mut self.b, k, a).map(Some)
                }
            }
            _ => Ok(None),
        }
    }

    /// The scaling `k · p` that `inst` computes (a multiplication by a splat constant other
    /// than one, or a negation), with `p` and `k` in the new graph; `map` maps the input
    /// graph's values to the new graph's.
    fn scaling(&self, inst: &InstData, map: &[Option<Value>]) -> Option<(Value, f64)> {
        let arg = |k: usize| inst.args.get(k).and_then(|a| map[a.index()]);
        match (&inst.op, inst.args.len()) {
            (Op::Unary(UnaryOp::Neg), 1) => Some((arg(0)?, -1.0)),
            (Op::Binary(BinaryOp::Mul), 2) => {
                let (a, c) = (arg(0)?, arg(1)?);
                let dtype = self.b.ty(a).dtype;
                if !matches!(dtype, DType::F32 | DType::F64) {
                    return None;
                }
                let k = |v| splat(&self.b, v).and_then(|k| coefficient(k, dtype));
                match (k(a), k(c)) {
                    (None, Some(k)) if k != 1.0 => Some((a, k)),
                    (Some(k), None) if k != 1.0 => Some((c, k)),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// `args[i] · (k · args[1 − i])`: a product whose operand `i` stands for a scaling by `k`
    /// that was not emitted (see [`number_live`]).
    fn scaled_product(&mut self, args: &[Value], (i, k): (usize, f64)) -> Result<Value> {
        let ky = self.scale(args[1 - i], k)?;
        emit::mul(&mut self.b, args[i], ky)
    }

    /// Emits the equation `op(args)` (already mapped to the new graph), numbering it when it
    /// is float arithmetic. With `pending = Some((i, k))`, `op` is a multiplication whose
    /// operand `i` is `k` times `args[i]`, a scaling left out (see [`number_live`]).
    fn push(
        &mut self,
        op: &Op,
        args: &[Value],
        pending: Option<(usize, f64)>,
    ) -> Result<SmallVec<[Value; 1]>> {
        let dtype = match args.first() {
            Some(&a) if is_arith(op) => self.b.ty(a).dtype,
            _ => return emit::push(&mut self.b, op.clone(), args),
        };
        if !matches!(dtype, DType::F32 | DType::F64) {
            return emit::push(&mut self.b, op.clone(), args);
        }
        let form = self.form_of(op, args, dtype).and_then(|f| match pending {
            Some((_, k)) => scaled(f, k, dtype),
            None => Some(f),
        });
        let Some(form) = form.filter(|f| !is_constant(f)) else {
            if let Some(p) = pending {
                return Ok(smallvec![self.scaled_product(args, p)?]);
            }
            return emit::push(&mut self.b, op.clone(), args);
        };
        let c0 = form[0].c;
        let key = key_hash(&self.hasher, &form);
        let found = self.lookup(self.b.ty(args[0]), &form, key);
        let v = if let Some((w, cw)) = found {
            match coefficient(c0 / cw, dtype) {
                Some(f) => self.scale(w, f)?,
                None => emit::push1(&mut self.b, op.clone(), args)?,
            }
        } else if let Some(v) = self.direct(&form)? {
            v
        } else if let Some(p) = pending {
            self.scaled_product(args, p)?
        } else {
            emit::push1(&mut self.b, op.clone(), args)?
        };
        // The form is stored once, for the table (the first value with its normalisation)
        // and for `v` (unless `v` already has a form), or not at all.
        let new_key = found.is_none();
        let new_form = self.recorded(v).is_none();
        if new_key || new_form {
            let i = self.store.push(&form);
            if new_key {
                let stored = self.placement.place(key, newest(&form));
                self.table
                    .insert_unique(table_hash(stored), (i, v, stored), |e| table_hash(e.2));
            }
            if new_form {
                if self.forms.len() <= v.index() {
                    self.forms.resize(v.index() + 1, NO_FORM);
                }
                self.forms[v.index()] = i;
            }
        }
        Ok(smallvec![v])
    }
}

/// Whether `op` is one of the operations that get a form.
fn is_arith(op: &Op) -> bool {
    matches!(
        op,
        Op::Unary(UnaryOp::Neg | UnaryOp::Square)
            | Op::Binary(BinaryOp::Mul | BinaryOp::Add | BinaryOp::Sub)
    )
}

/// `v` as an atom: `1 · v`.
fn atom(v: Value) -> Form {
    smallvec![Term {
        c: 1.0,
        atoms: smallvec![v]
    }]
}

/// Whether `f` is a constant (one term without atoms).
fn is_constant(f: &Form) -> bool {
    f.len() == 1 && f[0].atoms.is_empty()
}

/// `k · f`, if every coefficient stays finite and nonzero.
fn scaled(mut f: Form, k: f64, dtype: DType) -> Option<Form> {
    for t in &mut f {
        t.c = coefficient(t.c * k, dtype)?;
    }
    Some(f)
}

/// The product of two one-term forms.
fn product(x: &Form, y: &Form, dtype: DType) -> Option<Form> {
    let (x, y) = (&x[0], &y[0]);
    if x.atoms.len() + y.atoms.len() > MAX_ATOMS {
        return None;
    }
    let mut atoms: Atoms = x.atoms.iter().chain(&y.atoms).copied().collect();
    atoms.sort_unstable();
    Some(smallvec![Term {
        c: coefficient(x.c * y.c, dtype)?,
        atoms
    }])
}

/// The sum of two forms, like terms merged (unless their coefficients cancel).
fn sum(x: &Form, y: &Form, dtype: DType) -> Option<Form> {
    let mut out = Form::new();
    let (mut i, mut j) = (0, 0);
    while i < x.len() || j < y.len() {
        let next = match (x.get(i), y.get(j)) {
            (Some(a), Some(b)) if a.atoms == b.atoms => {
                if (a.c < 0.0) != (b.c < 0.0) {
                    return None;
                }
                i += 1;
                j += 1;
                Term {
                    c: coefficient(a.c + b.c, dtype)?,
                    atoms: a.atoms.clone(),
                }
            }
            (Some(a), Some(b)) if a.atoms < b.atoms => {
                i += 1;
                a.clone()
            }
            (Some(a), None) => {
                i += 1;
                a.clone()
            }
            (_, Some(b)) => {
                j += 1;
                b.clone()
            }
            (None, None) => break,
        };
        out.push(next);
        if out.len() > MAX_TERMS {
            return None;
        }
    }
    Some(out)
}

/// Value numbering modulo reassociation (see the module documentation); the result has dead
/// equations removed and is never larger than `g`.
pub fn reassoc(g: &Graph) -> Result<Graph> {
    Ok(number(g)?.unwrap_or_else(|| g.clone()))
}

/// [`reassoc`] of a graph the caller no longer needs, which is returned as it is (not copied)
/// when numbering would make it larger.
pub fn reassoc_owned(g: Graph) -> Result<Graph> {
    Ok(number(&g)?.unwrap_or(g))
}

/// The numbered graph with dead equations removed, or `None` when it has more equations
/// than `g`.
fn number(g: &Graph) -> Result<Option<Graph>> {
    number_live(g, None)
}

/// The numbered graph with dead equations removed, or `None` when it has more equations
/// than `g` has live ones. With `live` (from [`Graph::live_insts`]), only the equations it
/// flags are numbered: the same walk as over `g.without_dead_code()`, without moving every
/// equation of `g` to drop the others first.
pub(crate) fn number_live(g: &Graph, live: Option<&[bool]>) -> Result<Option<Graph>> {
    let mut n = Numbering {
        b: Builder::with_capacity(g.num_values(), g.num_insts()),
        store: Store::with_capacity(g.num_insts()),
        forms: Vec::with_capacity(g.num_values()),
        table: HashTable::with_capacity(g.num_insts()),
        placement: Placement::with_capacity(g.num_values()),
        hasher: DefaultHashBuilder::default(),
        splats: HashMap::new(),
    };
    let params: Vec<Value> = g
        .params()
        .iter()
        .map(|&p| n.b.param(g.ty(p).clone()))
        .collect();
    let mut map: Vec<Option<Value>> = vec![None; g.num_values()];
    for (&p, &q) in g.params().iter().zip(&params) {
        map[p.index()] = Some(q);
    }
    // Constants off the running product: a scaling `x = k·p` whose one use is a product
    // `x·y` with `y` older than `p` is not emitted; the product becomes `p·(k·y)`. The reverse
    // pass of a long chain multiplies its running cotangent by each step's derivative,
    // `(ct·1.0001)·cos x` for `x ← sin x·1.0001 + 0.1`: two multiplications per step on the
    // running product, the chain's critical path, and, once it is subnormal, a slow microcode
    // assist each on many CPUs. `ct·(1.0001·cos x)` puts one there and computes the other
    // beside it from values the forward pass made long before, as a hand-written tape does.
    // Leaving the scaling out (rather than emitting it and bypassing it) adds no equation,
    // even transiently. `user[v]` is the one equation using `v` (none for an output or a
    // value used more than once); `pending[v]` the factor of a scaling left out.
    const NONE: u32 = u32::MAX;
    const MANY: u32 = u32::MAX - 1;
    let mut user = vec![NONE; g.num_values()];
    for (i, inst) in g.insts() {
        if live.is_none_or(|l| l[i.index()]) {
            for &a in inst.args.iter() {
                let u = &mut user[a.index()];
                *u = if *u == NONE { index32(i.index()) } else { MANY };
            }
        }
    }
    for &o in g.outputs() {
        user[o.index()] = MANY;
    }
    let mut pending: HashMap<u32, f64> = HashMap::new();
    for (i, inst) in g.insts() {
        if live.is_some_and(|l| !l[i.index()]) {
            continue;
        }
        if let [r] = inst.results.as_slice() {
            if let Some((p, k)) = n.scaling(inst, &map) {
                let u = user[r.index()];
                let older = (u < MANY)
                    .then(|| g.inst(ferrax_ir::Inst::from_index(u as usize)))
                    .filter(|ui| ui.op == Op::Binary(BinaryOp::Mul) && ui.args.len() == 2)
                    .and_then(|ui| {
                        let y = if ui.args[0] == *r {
                            ui.args[1]
                        } else {
                            ui.args[0]
                        };
                        (y != *r).then(|| map[y.index()]).flatten()
                    })
                    .is_some_and(|y| y.index() < p.index() && splat(&n.b, y).is_none());
                if older {
                    map[r.index()] = Some(p);
                    pending.insert(index32(r.index()), k);
                    continue;
                }
            }
        }
        let args: SmallVec<[Value; 4]> = inst
            .args
            .iter()
            .map(|&a| map[a.index()].expect("verified graph"))
            .collect();
        let scaled = match pending.is_empty() {
            true => None,
            false => inst
                .args
                .iter()
                .enumerate()
                .find_map(|(j, a)| pending.remove(&index32(a.index())).map(|k| (j, k))),
        };
        let outs = n.push(&inst.op, &args, scaled)?;
        for (&r, &o) in inst.results.iter().zip(&outs) {
            map[r.index()] = Some(o);
        }
    }
    let outs: Vec<Value> = g
        .outputs()
        .iter()
        .map(|&o| map[o.index()].expect("verified graph"))
        .collect();
    // The forms and the table are freed before dead code is removed (a partial move would
    // keep them until the function returns).
    drop(map);
    let Numbering {
        b,
        store,
        forms,
        table,
        placement: _,
        hasher: _,
        splats: _,
    } = n;
    drop((store, forms, table));
    // The builder merged identical equations as they were pushed, so dropping the dead ones
    // in place gives what a rebuild through `dce` would, without a second graph.
    let out = b.finish(&outs).without_dead_code();
    let size = live.map_or(g.num_insts(), |l| l.iter().filter(|&&k| k).count());
    Ok((out.num_insts() <= size).then_some(out))
}
