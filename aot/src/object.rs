//! Builds the object: every function's graph defined by [`ferrax_jit::define_graph`] in one
//! `ObjectModule` (local symbols), plus one exported C entry per function that takes a
//! pointer per input and output and the workspace, and calls the graph's scalar entry (for
//! all-scalar graphs) or its tensor entry.

use crate::{aot_err, Entry, Exporter};
use cranelift_codegen::ir::{
    types, AbiParam, Function, InstBuilder, MemFlagsData, Signature, StackSlotData, StackSlotKind,
    UserFuncName,
};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::{default_libcall_names, FuncId, Linkage, Module};
use cranelift_object::{ObjectBuilder, ObjectModule};
use ferrax_ir::{DType, Graph, Result};
use ferrax_jit::{call_scalar_entry, define_graph, Defined, Destination, EntryNames, JitOptions};

/// The Cranelift type of one element of `dtype` (bools are bytes holding 0 or 1).
fn elem_type(dtype: DType) -> types::Type {
    match dtype {
        DType::F32 => types::F32,
        DType::F64 => types::F64,
        DType::I32 => types::I32,
        DType::Bool => types::I8,
    }
}

/// Compiles every pending function of `ex` into one object; returns its bytes, the entries
/// and the target triple.
pub(crate) fn build(ex: &Exporter, opts: &JitOptions) -> Result<(Vec<u8>, Vec<Entry>, String)> {
    // Each graph's code is that of its rerolled form, as in the JIT; the largest decides the
    // Cranelift settings (huge unrolled graphs compile with the fast ones, as in the JIT).
    let rolled = ex
        .pending
        .iter()
        .map(|p| ferrax_jit::rerolled(&p.graph, opts))
        .collect::<Result<Vec<_>>>()?;
    let code: Vec<&Graph> = ex
        .pending
        .iter()
        .zip(&rolled)
        .map(|(p, r)| r.as_ref().unwrap_or(&p.graph))
        .collect();
    let largest = code
        .iter()
        .max_by_key(|g| g.num_values())
        .ok_or_else(|| aot_err("nothing to export"))?;
    let flags = ferrax_jit::code_flags(largest, opts, true)?;
    let isa = ex.target.isa(flags)?;
    let triple = isa.triple().to_string();
    let builder = ObjectBuilder::new(isa, ex.name.as_bytes().to_vec(), default_libcall_names())
        .map_err(|e| aot_err(format!("object builder: {e}")))?;
    let mut module = ObjectModule::new(builder);
    let mut entries = Vec::with_capacity(ex.pending.len());
    for (p, graph) in ex.pending.iter().zip(&code) {
        let named = |mut e: ferrax_ir::Error| {
            e.message = format!("exporting `{}`: {}", p.name, e.message);
            e
        };
        let tensor = format!("__ferrax_{}_tensor", p.name);
        let scalar = format!("__ferrax_{}_scalar", p.name);
        let names = EntryNames {
            tensor: &tensor,
            scalar: &scalar,
            linkage: Linkage::Local,
        };
        let defined =
            define_graph(&mut module, graph, opts, Destination::Object, &names).map_err(named)?;
        let bytes = define_entry(&mut module, &p.name, &p.graph, &defined).map_err(named)?;
        entries.push(Entry {
            name: p.name.clone(),
            inputs: p.graph.param_types(),
            outputs: p.graph.output_types(),
            // A scalar entry keeps its workspace on its stack.
            workspace: if defined.scalar.is_some() {
                0
            } else {
                defined.workspace
            },
            may_fail: defined.may_fail,
            code_bytes: defined.code_bytes + bytes,
        });
    }
    let product = module.finish();
    let bytes = product
        .emit()
        .map_err(|e| aot_err(format!("writing the object: {e}")))?;
    Ok((bytes, entries, triple))
}

/// Defines the exported C entry `name(in0, ..., out0, ..., workspace) -> i32`; returns its
/// machine code size.
fn define_entry(
    module: &mut ObjectModule,
    name: &str,
    graph: &Graph,
    defined: &Defined,
) -> Result<usize> {
    let ptr = types::I64;
    let (nin, nout) = (graph.params().len(), graph.outputs().len());
    let mut sig = Signature::new(module.isa().default_call_conv());
    sig.params
        .extend(std::iter::repeat_n(AbiParam::new(ptr), nin + nout + 1));
    sig.returns.push(AbiParam::new(types::I32));
    let id = module
        .declare_function(name, Linkage::Export, &sig)
        .map_err(|e| aot_err(format!("declare {name}: {e}")))?;
    let mut func = Function::with_name_signature(UserFuncName::user(0, id.as_u32()), sig);
    let mut fbc = FunctionBuilderContext::new();
    match defined.scalar {
        Some(sid) => scalar_body(module, &mut func, &mut fbc, graph, sid)?,
        None => tensor_body(module, &mut func, &mut fbc, nin, nout, defined.tensor)?,
    }
    let mut ctx = cranelift_codegen::Context::for_function(func);
    module
        .define_function(id, &mut ctx)
        .map_err(|e| aot_err(format!("cranelift codegen of {name}: {e:?}")))?;
    Ok(ctx
        .compiled_code()
        .map_or(0, |c| c.code_info().total_size as usize))
}

/// The entry of a graph with a tensor entry: the input and output pointers go into two
/// arrays on the stack, and the tensor entry's status is returned.
fn tensor_body(
    module: &mut ObjectModule,
    func: &mut Function,
    fbc: &mut FunctionBuilderContext,
    nin: usize,
    nout: usize,
    tensor: FuncId,
) -> Result<()> {
    let callee = module.declare_func_in_func(tensor, func);
    let cfg = module.isa().frontend_config();
    let mut fb = FunctionBuilder::new(func, fbc);
    let entry = fb.create_block();
    fb.append_block_params_for_function_params(entry);
    fb.switch_to_block(entry);
    let params = fb.block_params(entry).to_vec();
    let slot = fb.create_sized_stack_slot(StackSlotData::new(
        StackSlotKind::ExplicitSlot,
        (8 * (nin + nout).max(1)) as u32,
        3,
    ));
    for (k, &p) in params[..nin + nout].iter().enumerate() {
        fb.ins().stack_store(types::I64, p, slot, (8 * k) as i32);
    }
    let ins = fb.ins().stack_addr(types::I64, slot, 0);
    let outs = fb.ins().stack_addr(types::I64, slot, (8 * nin) as i32);
    let ws = params[nin + nout];
    let call = fb.ins().call(callee, &[ins, outs, ws]);
    let status = fb.inst_results(call)[0];
    fb.ins().return_(&[status]);
    fb.seal_all_blocks();
    fb.finalize(cfg);
    Ok(())
}

/// The entry of an all-scalar graph: loads each argument, calls the scalar entry (arguments
/// and results in registers) and stores each result; it cannot fail.
fn scalar_body(
    module: &mut ObjectModule,
    func: &mut Function,
    fbc: &mut FunctionBuilderContext,
    graph: &Graph,
    scalar: FuncId,
) -> Result<()> {
    let callee = module.declare_func_in_func(scalar, func);
    let cfg = module.isa().frontend_config();
    let mut fb = FunctionBuilder::new(func, fbc);
    let entry = fb.create_block();
    fb.append_block_params_for_function_params(entry);
    fb.switch_to_block(entry);
    let params = fb.block_params(entry).to_vec();
    let (nin, nout) = (graph.params().len(), graph.outputs().len());
    let flags = MemFlagsData::trusted();
    let mut args = Vec::with_capacity(nin + 1);
    for (k, &p) in graph.params().iter().enumerate() {
        args.push(
            fb.ins()
                .load(elem_type(graph.ty(p).dtype), flags, params[k], 0),
        );
    }
    let out_ty = graph
        .outputs()
        .first()
        .map_or(DType::F64, |&o| graph.ty(o).dtype);
    let results = call_scalar_entry(&mut fb, callee, args, out_ty, nout);
    for (k, v) in results.into_iter().enumerate() {
        fb.ins().store(flags, v, params[nin + k], 0);
    }
    let ok = fb.ins().iconst(types::I32, 0);
    fb.ins().return_(&[ok]);
    fb.seal_all_blocks();
    fb.finalize(cfg);
    Ok(())
}
