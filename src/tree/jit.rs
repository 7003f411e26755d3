//! `jit` over trees: [`TreeJit`] compiles one positional function per list of argument
//! structures, and [`TreeJit::call_donating`] recycles the buffers of arguments given up with
//! [`Donate`].

use super::transforms::{Flat, FromTreeOutput, IntoTreeFn, TreeArg, TreeArgs, TreeFn};
use super::{Leaf, Tree, TreeDef};
use crate::{Array, Result, Type};
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

/// A jitted function of trees: each argument structure gets a positional [`crate::Jit`],
/// which compiles once per leaf types.
#[derive(Clone)]
pub struct TreeJit {
    func: TreeFn,
    opts: crate::JitOptions,
    compiled: Arc<Mutex<HashMap<Vec<TreeDef>, JitMember>>>,
    /// Donated buffers by type, waiting to be the outputs of a call.
    pool: Arc<Mutex<HashMap<Type, Vec<Array>>>>,
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

    /// Calls the compiled code on `Array` trees and rebuilds the output as an `R`.
    #[track_caller]
    pub fn call<A: TreeArgs<Array>, R: FromTreeOutput>(&self, args: A) -> Result<R> {
        let loc = Location::caller();
        let (defs, leaves) = args.flatten_args();
        let (j, flat) = self.member(&defs).map_err(|e| e.at(loc))?;
        let types: Vec<Type> = leaves.iter().map(|a| a.ty()).collect();
        let def = flat.out_def(&types).map_err(|e| e.at(loc))?;
        let outs = j.call_arrays(&leaves)?;
        R::from_tree_output(self.func.name(), &def, outs).map_err(|e| e.at(loc))
    }

    /// Calls the compiled code like [`TreeJit::call`], recycling the buffers of arguments
    /// wrapped in [`Donate`] (JAX's donation, by allocation rather than in place): a training
    /// step `step.call_donating((Donate(params), Donate(opt_state), &batch))` gives up the old `params` and
    /// `opt_state`, whose buffers become the outputs of the next call of the same types, so
    /// that a loop of steps allocates nothing once it runs. Outputs are written to buffers
    /// distinct from the inputs (the compiled code reads its inputs while it writes), so the
    /// peak memory is that of the inputs plus the outputs, as for `call`. Arguments passed by
    /// reference are read as usual.
    #[track_caller]
    pub fn call_donating<A: TreeArgs<Array>, R: FromTreeOutput>(&self, args: A) -> Result<R> {
        let loc = Location::caller();
        let (defs, leaves, donated) = args.flatten_args_donating();
        let (j, flat) = self.member(&defs).map_err(|e| e.at(loc))?;
        let types: Vec<Type> = leaves.iter().map(|a| a.ty()).collect();
        let def = flat.out_def(&types).map_err(|e| e.at(loc))?;
        let compiled = j.compiled_for(&types)?;
        let out_types = compiled.output_types().to_vec();
        let lock = || self.pool.lock().unwrap_or_else(|e| e.into_inner());
        let mut outs = Vec::with_capacity(out_types.len());
        for t in &out_types {
            let recycled = lock().get_mut(t).and_then(Vec::pop);
            outs.push(match recycled {
                Some(a) => a,
                None => Array::zeros(t).map_err(|e| e.at(loc))?,
            });
        }
        let refs: Vec<&Array> = leaves.iter().collect();
        let ran = compiled.call_into(&refs, &mut outs);
        drop(refs);
        // Keep as many donated buffers of each type as one call outputs, for the next call.
        let mut pool = lock();
        for (a, given) in leaves.into_iter().zip(donated) {
            let ty = a.ty();
            let wanted = out_types.iter().filter(|t| **t == ty).count();
            let slot = pool.entry(ty).or_default();
            if given && slot.len() < wanted {
                slot.push(a);
            }
        }
        drop(pool);
        ran?;
        R::from_tree_output(self.func.name(), &def, outs).map_err(|e| e.at(loc))
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
        pool: Arc::default(),
    }
}
