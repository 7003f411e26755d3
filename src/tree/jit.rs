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
    slots: Mutex<Vec<Option<Array>>>,
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

    /// The prepared call for these structures and leaves, compiling on first use.
    fn prepare(&self, defs: Vec<TreeDef>, leaves: &[Cow<'_, Array>]) -> Result<Arc<Prepared>> {
        let lock = || self.prepared.lock().unwrap_or_else(|e| e.into_inner());
        let same = |p: &Prepared| {
            p.defs == defs
                && p.types.len() == leaves.len()
                && p.types
                    .iter()
                    .zip(leaves)
                    .all(|(t, a)| t.dtype == a.dtype() && t.dims() == a.dims())
        };
        if let Some(p) = lock().last.as_ref().filter(|p| same(p)) {
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
                let slots = Mutex::new(vec![None; compiled.output_types().len()]);
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
    /// the next donating call's outputs; without, outputs are new zeros.
    fn run(
        &self,
        p: &Prepared,
        leaves: Vec<Cow<'_, Array>>,
        donated: Option<&[bool]>,
    ) -> Result<Vec<Array>> {
        let lock = || p.slots.lock().unwrap_or_else(|e| e.into_inner());
        let Some(donated) = donated else {
            let mut outs = p
                .compiled
                .output_types()
                .iter()
                .map(Array::zeros)
                .collect::<Result<Vec<Array>>>()?;
            let refs: Vec<&Array> = leaves.iter().map(|a| &**a).collect();
            p.compiled.call_into(&refs, &mut outs)?;
            return Ok(outs);
        };
        let mut waiting = std::mem::take(&mut *lock());
        let types = p.compiled.output_types();
        waiting.resize(types.len(), None);
        let mut leaves: Vec<Option<Cow<'_, Array>>> = leaves.into_iter().map(Some).collect();
        let mut outs = Vec::with_capacity(types.len());
        // Per output, whether it took a donated leaf's buffer in place in this call.
        let mut served = vec![false; types.len()];
        for (k, (slot, t)) in waiting.into_iter().zip(types).enumerate() {
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
        let mut slots = lock();
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
        drop(slots);
        ran.map(|()| outs)
    }

    /// Calls the compiled code on `Array` trees and rebuilds the output as an `R`. Trees
    /// passed by reference are read in place (not copied).
    #[track_caller]
    pub fn call<A: TreeArgs<Array>, R: FromTreeOutput>(&self, args: A) -> Result<R> {
        let loc = Location::caller();
        let (defs, leaves, _) = args.flatten_args_borrowed();
        let p = self.prepare(defs, &leaves).map_err(|e| e.at(loc))?;
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
        let (defs, leaves, donated) = args.flatten_args_borrowed();
        let p = self.prepare(defs, &leaves).map_err(|e| e.at(loc))?;
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
