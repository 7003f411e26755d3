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

/// The buffers a donating call leaves for the next, with the call's scratch list (kept here
/// so that a call in the steady state allocates neither).
#[derive(Default)]
struct Recycled {
    /// Per output, a donated buffer of its type waiting to be written.
    buffers: Vec<Option<Array>>,
    /// Per output, whether it took a donated leaf's buffer in place in the current call.
    served: Vec<bool>,
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
            p.types.len() == leaves.len()
                && p.types
                    .iter()
                    .zip(leaves)
                    .all(|(t, a)| t.dtype == a.dtype() && t.dims() == a.dims())
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
                    served: Vec::new(),
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
    /// the next donating call's outputs; without, outputs are new buffers (see
    /// `Compiled::call_refs`).
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
        // The lists are taken out (not copied) and put back below, so that their storage
        // serves every call.
        let Recycled {
            buffers: mut waiting,
            mut served,
        } = std::mem::take(&mut *lock());
        let types = p.compiled.output_types();
        waiting.resize(types.len(), None);
        served.clear();
        served.resize(types.len(), false);
        let mut leaves: Vec<Option<Cow<'_, Array>>> = leaves.into_iter().map(Some).collect();
        let mut outs = Vec::with_capacity(types.len());
        for (k, (slot, t)) in waiting.iter_mut().zip(types).enumerate() {
            let slot = slot.take();
            // A donated leaf the output may overwrite becomes the output's buffer.
            if let Some(j) = p.in_place[k].filter(|&j| donated.get(j) == Some(&true)) {
                if let Some(Cow::Owned(a)) = leaves.get_mut(j).and_then(Option::take) {
                    outs.push(a);
                    served[k] = true;
                    continue;
                }
            }
            outs.push(slot.map_or_else(|| Array::zeros(t), Ok)?);
        }
        let refs: Vec<Option<&Array>> = leaves.iter().map(|a| a.as_deref()).collect();
        let ran = p.compiled.call_in_place(&refs, &mut outs);
        drop(refs);
        // Keep the other donated leaves for the next call, each as the buffer of an output of
        // its type that took none in place in this call (chosen per call, not per compiled
        // function: an output whose in-place argument was passed by reference, such as a
        // moment `(1 − β)·g + β·m` that may overwrite the gradient `g`, would otherwise be
        // zero-filled anew on every call while the donated moment went unused).
        let mut recycled = lock();
        if recycled.buffers.is_empty() {
            // `waiting` is all `None` now: its storage becomes the list again.
            recycled.buffers = waiting;
        }
        let slots = &mut recycled.buffers;
        slots.resize(outs.len(), None);
        for (a, &given) in leaves.into_iter().zip(donated) {
            let (true, Some(Cow::Owned(a))) = (given, a) else {
                continue;
            };
            let free = (0..types.len()).find(|&k| {
                !served[k]
                    && slots[k].is_none()
                    && types[k].dtype == a.dtype()
                    && types[k].dims() == a.dims()
            });
            if let Some(k) = free {
                slots[k] = Some(a);
            }
        }
        recycled.served = served;
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
