//! `jit` over trees: [`TreeJit`] compiles one positional function per list of argument
//! structures, and [`TreeJit::call_donating`] recycles the buffers of arguments given up with
//! [`Donate`].

use super::transforms::{Flat, FromTreeOutput, IntoTreeFn, TreeArg, TreeArgs, TreeFn};
use super::{Leaf, Tree, TreeDef};
use crate::{Array, Result, Type};
use std::borrow::Cow;
use std::collections::HashMap;
use std::panic::Location;
use std::sync::{Arc, Mutex};

/// A tree argument given up by the caller: [`TreeJit::call_donating`] recycles its buffers
/// for the outputs (elsewhere it is an argument by value like any other).
#[derive(Clone, Debug)]
pub struct Donate<T>(pub T);

impl<L: Leaf, T: Tree<L>> TreeArg<L> for Donate<T> {
    fn flatten_arg(self, defs: &mut Vec<TreeDef>, leaves: &mut Vec<L>) {
        defs.push(self.0.def());
        self.0.into_each_leaf(&mut |l| leaves.push(l));
    }

    fn flatten_arg_donating(
        self,
        defs: &mut Vec<TreeDef>,
        leaves: &mut Vec<L>,
        donated: &mut Vec<bool>,
    ) {
        let before = leaves.len();
        self.flatten_arg(defs, leaves);
        donated.resize(donated.len() + leaves.len() - before, true);
    }

    fn matches_def(&self, def: &TreeDef) -> bool {
        Tree::<L>::matches_def(&self.0, def)
    }

    fn flatten_leaves_borrowed<'a>(self, leaves: &mut Vec<Cow<'a, L>>, donated: &mut Vec<bool>)
    where
        Self: Sized + 'a,
    {
        let before = leaves.len();
        self.0.into_each_leaf(&mut |l| leaves.push(Cow::Owned(l)));
        donated.resize(donated.len() + leaves.len() - before, true);
    }
}

/// The compiled function of one list of argument structures, with its output structure.
type JitMember = (crate::Jit, Flat);

/// What a call needs once the argument structures and leaf types are known: the compiled
/// code, the output structure and types, and where donated buffers go. The last one used is
/// kept, so that a training loop calling one step over and over finds it by comparing
/// structures and types, without hashing them or rebuilding the output structure.
struct Prepared {
    defs: Vec<TreeDef>,
    types: Vec<Type>,
    compiled: crate::Compiled,
    out_def: TreeDef,
    /// Per output, the argument leaf whose buffer it is written into when that leaf is
    /// donated (see `Compiled::call_in_place`).
    in_place: Vec<Option<usize>>,
    /// Per output, a buffer of its type donated by an earlier call, waiting to be written.
    slots: Mutex<Recycled>,
}

/// The buffers a donating call leaves for the next, with the plan of the last pattern of
/// given-up leaves (kept here so that a call in the steady state allocates nothing for them
/// and searches nothing).
#[derive(Default)]
struct Recycled {
    /// Per output, a donated buffer of its type waiting to be written.
    buffers: Vec<Option<Array>>,
    /// Where the last donating call's buffers went.
    plan: Option<DonationPlan>,
}

/// Where a donating call's outputs take their buffers, for one pattern of leaves given up
/// (donated and passed by value): made when the pattern first occurs, so that later calls
/// with the same pattern only compare it (per leaf, one flag) instead of searching the
/// outputs for a buffer of each leaf's type.
struct DonationPlan {
    /// Per leaf, whether the call gave its buffer up.
    given: Vec<bool>,
    /// Per output, the given-up leaf whose buffer it is written into, in place.
    in_place: Vec<Option<usize>>,
    /// The other given-up leaves, each with the output whose waiting buffer it becomes for
    /// the next call: an output of its type that took no buffer in place in this call.
    keep: Vec<(usize, usize)>,
}

impl DonationPlan {
    /// Per leaf, whether the call gave it up: marked in `donated` and passed by value.
    fn given<'a>(
        leaves: &'a [Cow<'_, Array>],
        donated: &'a [bool],
    ) -> impl Iterator<Item = bool> + 'a {
        (leaves.iter().enumerate())
            .map(|(j, a)| donated.get(j) == Some(&true) && matches!(a, Cow::Owned(_)))
    }

    /// Whether the plan is the one of these leaves.
    fn fits(&self, leaves: &[Cow<'_, Array>], donated: &[bool]) -> bool {
        self.given.len() == leaves.len()
            && Self::given(leaves, donated).eq(self.given.iter().copied())
    }

    /// The plan of `p`'s call on these leaves. An output that may overwrite a given-up leaf
    /// (`Compiled::in_place_outputs`) takes its buffer. The other given-up leaves go to the
    /// other outputs of their types (chosen per pattern, not per compiled function: an
    /// output whose in-place argument was passed by reference, such as a moment
    /// `(1 − β)·g + β·m` that may overwrite the gradient `g`, would otherwise be zero-filled
    /// anew on every call while the donated moment went unused).
    fn new(p: &Prepared, leaves: &[Cow<'_, Array>], donated: &[bool]) -> DonationPlan {
        let given: Vec<bool> = Self::given(leaves, donated).collect();
        let mut used = vec![false; leaves.len()];
        let in_place: Vec<Option<usize>> = (p.in_place.iter())
            .map(|&j| {
                let j = j.filter(|&j| given.get(j) == Some(&true) && !used[j])?;
                used[j] = true;
                Some(j)
            })
            .collect();
        let types = p.compiled.output_types();
        let mut filled: Vec<bool> = in_place.iter().map(Option::is_some).collect();
        let mut keep = Vec::new();
        for (j, ((&g, &u), t)) in given.iter().zip(&used).zip(&p.types).enumerate() {
            if !g || u {
                continue;
            }
            if let Some(k) = (0..types.len()).find(|&k| !filled[k] && types[k] == *t) {
                filled[k] = true;
                keep.push((j, k));
            }
        }
        DonationPlan {
            given,
            in_place,
            keep,
        }
    }
}

/// A jitted function of trees: each argument structure gets a positional [`crate::Jit`],
/// which compiles once per leaf types.
#[derive(Clone)]
pub struct TreeJit {
    func: TreeFn,
    opts: crate::JitOptions,
    compiled: Arc<Mutex<HashMap<Vec<TreeDef>, JitMember>>>,
    /// Prepared calls by argument structures and leaf types, and the last one used.
    prepared: Arc<Mutex<PreparedCache>>,
}

/// [`TreeJit`]'s prepared calls.
#[derive(Default)]
struct PreparedCache {
    last: Option<Arc<Prepared>>,
    all: HashMap<(Vec<TreeDef>, Vec<Type>), Arc<Prepared>>,
}

impl TreeJit {
    fn member(&self, defs: &[TreeDef]) -> Result<(crate::Jit, Flat)> {
        let lock = || self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = lock().get(defs) {
            return Ok(m.clone());
        }
        let flat = self.func.flat(defs)?;
        let j = crate::jit_with(&flat.func, self.opts)?;
        lock().insert(defs.to_vec(), (j.clone(), flat.clone()));
        Ok((j, flat))
    }

    /// Flattens a call's arguments, checking their structures against the last prepared
    /// call's without building them: the structures (`None` when they are the last call's,
    /// which is returned too), the leaves and the donation flags.
    #[allow(clippy::type_complexity)]
    fn flatten<'a, A: TreeArgs<Array> + 'a>(
        &self,
        args: A,
    ) -> (
        Option<Arc<Prepared>>,
        Option<Vec<TreeDef>>,
        Vec<Cow<'a, Array>>,
        Vec<bool>,
    ) {
        let last = self
            .prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last
            .clone();
        match last {
            Some(p) => {
                let (defs, leaves, donated) = args.flatten_args_like(&p.defs, p.types.len());
                (Some(p), defs, leaves, donated)
            }
            None => {
                let (defs, leaves, donated) = args.flatten_args_borrowed();
                (None, Some(defs), leaves, donated)
            }
        }
    }

    /// The prepared call for these leaves and structures (`None`: those of `last`, the last
    /// prepared call), compiling on first use.
    fn prepare(
        &self,
        last: Option<Arc<Prepared>>,
        defs: Option<Vec<TreeDef>>,
        leaves: &[Cow<'_, Array>],
    ) -> Result<Arc<Prepared>> {
        let lock = || self.prepared.lock().unwrap_or_else(|e| e.into_inner());
        let same_types = |p: &Prepared| {
            p.types.len() == leaves.len() && p.types.iter().zip(leaves).all(|(t, a)| a.has_type(t))
        };
        let defs = match (defs, last) {
            (None, Some(p)) if same_types(&p) => return Ok(p),
            (None, Some(p)) => p.defs.clone(),
            (Some(defs), _) => defs,
            (None, None) => {
                return Err(crate::Error::new(
                    crate::ErrorKind::Structure,
                    "jit: a call's argument structures are unknown",
                ))
            }
        };
        if let Some(p) = lock()
            .last
            .as_ref()
            .filter(|p| p.defs == defs && same_types(p))
        {
            return Ok(p.clone());
        }
        let types: Vec<Type> = leaves.iter().map(|a| a.ty()).collect();
        let key = (defs, types);
        let found = lock().all.get(&key).cloned();
        let p = match found {
            Some(p) => p,
            None => {
                let (defs, types) = key.clone();
                let (j, flat) = self.member(&defs)?;
                let out_def = flat.out_def(&types)?;
                let compiled = j.compiled_for(&types)?;
                let in_place = compiled.in_place_outputs().to_vec();
                let slots = Mutex::new(Recycled {
                    buffers: vec![None; compiled.output_types().len()],
                    plan: None,
                });
                let p = Arc::new(Prepared {
                    defs,
                    types,
                    compiled,
                    out_def,
                    in_place,
                    slots,
                });
                lock().all.entry(key).or_insert(p).clone()
            }
        };
        lock().last = Some(p.clone());
        Ok(p)
    }

    /// Runs the prepared call on `leaves`. With `donated` (one flag per leaf), an output
    /// that may overwrite a donated leaf takes its buffer, the other outputs take the buffers
    /// donated by an earlier call (or new zeros), and the other leaves marked donated become
    /// the next donating call's outputs, as the call's [`DonationPlan`] says; without,
    /// outputs are new buffers (see `Compiled::call_refs`).
    fn run(
        &self,
        p: &Prepared,
        leaves: Vec<Cow<'_, Array>>,
        donated: Option<&[bool]>,
    ) -> Result<Vec<Array>> {
        let lock = || p.slots.lock().unwrap_or_else(|e| e.into_inner());
        let Some(donated) = donated else {
            let refs: Vec<&Array> = leaves.iter().map(|a| &**a).collect();
            return p.compiled.call_refs(&refs);
        };
        // The waiting buffers and the plan are taken out (not copied) and put back below, so
        // that a concurrent call finds none of them rather than the same ones.
        let Recycled { mut buffers, plan } = std::mem::take(&mut *lock());
        let plan = match plan {
            Some(plan) if plan.fits(&leaves, donated) => plan,
            _ => DonationPlan::new(p, &leaves, donated),
        };
        let types = p.compiled.output_types();
        buffers.resize(types.len(), None);
        let mut leaves: Vec<Option<Cow<'_, Array>>> = leaves.into_iter().map(Some).collect();
        let mut outs = Vec::with_capacity(types.len());
        let mut failed = None;
        for ((slot, t), &j) in buffers.iter_mut().zip(types).zip(&plan.in_place) {
            let waiting = slot.take();
            // A given-up leaf the output may overwrite becomes the output's buffer.
            if let Some(Some(Cow::Owned(a))) = j.and_then(|j| leaves.get_mut(j)).map(Option::take) {
                outs.push(a);
                continue;
            }
            match waiting.map_or_else(|| Array::zeros(t), Ok) {
                Ok(a) => outs.push(a),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let ran = match failed {
            Some(e) => Err(e),
            None => {
                // The arguments' list is on the stack up to 32 leaves, as the JIT's own lists
                // are: one allocation fewer per call.
                let (mut inline, mut heap) = ([None; 32], Vec::new());
                let refs: &mut [Option<&Array>] = match inline.get_mut(..leaves.len()) {
                    Some(r) => r,
                    None => {
                        heap.resize(leaves.len(), None);
                        &mut heap
                    }
                };
                for (r, a) in refs.iter_mut().zip(&leaves) {
                    *r = a.as_deref();
                }
                p.compiled.call_in_place(refs, &mut outs)
            }
        };
        // The other given-up leaves wait for the next call.
        for &(j, k) in &plan.keep {
            if let (Some(Some(Cow::Owned(a))), Some(slot @ None)) =
                (leaves.get_mut(j).map(Option::take), buffers.get_mut(k))
            {
                *slot = Some(a);
            }
        }
        let mut recycled = lock();
        if recycled.buffers.is_empty() {
            recycled.buffers = buffers;
        } else {
            // A concurrent call put its buffers back first: fill its empty slots.
            for (slot, a) in recycled.buffers.iter_mut().zip(buffers) {
                if slot.is_none() {
                    *slot = a;
                }
            }
        }
        recycled.plan = Some(plan);
        drop(recycled);
        ran.map(|()| outs)
    }

    /// Calls the compiled code on `Array` trees and rebuilds the output as an `R`. Trees
    /// passed by reference are read in place (not copied).
    #[track_caller]
    pub fn call<A: TreeArgs<Array>, R: FromTreeOutput>(&self, args: A) -> Result<R> {
        let loc = Location::caller();
        let (last, defs, leaves, _) = self.flatten(args);
        let p = self.prepare(last, defs, &leaves).map_err(|e| e.at(loc))?;
        let outs = self.run(&p, leaves, None).map_err(|e| e.at(loc))?;
        R::from_tree_output(self.func.name(), &p.out_def, outs).map_err(|e| e.at(loc))
    }

    /// Calls the compiled code like [`TreeJit::call`], reusing the buffers of arguments
    /// wrapped in [`Donate`] (JAX's donation): a training step
    /// `step.call_donating((Donate(params), Donate(opt_state), &batch))` gives up the old
    /// `params` and `opt_state`. An output that the compiled code computes by an elementwise
    /// loop reading a donated leaf only at the index it writes (an optimizer's update of a
    /// parameter or a moment, see `Compiled::in_place_outputs`) is written into that leaf's
    /// buffer, in place; the other donated leaves become the outputs of the next call of the
    /// same types. A loop of steps allocates nothing once it runs, and the in-place updates
    /// stream through half the memory. Arguments passed by reference are read as usual.
    #[track_caller]
    pub fn call_donating<A: TreeArgs<Array>, R: FromTreeOutput>(&self, args: A) -> Result<R> {
        let loc = Location::caller();
        let (last, defs, leaves, donated) = self.flatten(args);
        let p = self.prepare(last, defs, &leaves).map_err(|e| e.at(loc))?;
        let outs = self
            .run(&p, leaves, Some(&donated))
            .map_err(|e| e.at(loc))?;
        R::from_tree_output(self.func.name(), &p.out_def, outs).map_err(|e| e.at(loc))
    }

    /// The TreeFn being compiled.
    pub fn tree_fn(&self) -> TreeFn {
        self.func.clone()
    }
}

/// Prepares a function of trees for compilation (see [`crate::jit`]).
pub fn jit<M>(f: impl IntoTreeFn<M>) -> TreeJit {
    jit_with(f, crate::JitOptions::default())
}

/// [`jit`] with options.
pub fn jit_with<M>(f: impl IntoTreeFn<M>, opts: crate::JitOptions) -> TreeJit {
    TreeJit {
        func: f.into_tree_fn(),
        opts,
        compiled: Arc::default(),
        prepared: Arc::default(),
    }
}
