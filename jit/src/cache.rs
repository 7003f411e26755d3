//! The compile cache: graphs are keyed by structural hash and options, confirmed by full
//! equality, and held weakly so that dropping a function frees its code.

use crate::compiled::{Compiled, Inner};
use crate::{compile, stats, JitOptions};
use ferrax_ir::{Graph, Result};
use hashbrown::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, Weak};

type Table = HashMap<u64, Vec<Weak<Inner>>>;

fn table() -> &'static Mutex<(Table, usize)> {
    static T: OnceLock<Mutex<(Table, usize)>> = OnceLock::new();
    T.get_or_init(|| Mutex::new((HashMap::new(), 0)))
}

fn key(graph: &Graph, opts: &JitOptions) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    graph.structural_hash().hash(&mut h);
    opts.hash(&mut h);
    h.finish()
}

/// Like [`compile`], but returns the already compiled function when an equal graph was
/// compiled with the same options and is still alive.
pub fn compile_cached(graph: &Graph, opts: &JitOptions) -> Result<Compiled> {
    let k = key(graph, opts);
    {
        let guard = table().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = guard.0.get(&k) {
            for w in list {
                if let Some(inner) = w.upgrade() {
                    if inner.opts == *opts && inner.graph == *graph {
                        stats::CACHE_HITS.fetch_add(1, Ordering::Relaxed);
                        return Ok(Compiled { inner });
                    }
                }
            }
        }
    }
    let c = compile(graph, opts)?;
    let mut guard = table().lock().unwrap_or_else(|e| e.into_inner());
    let (map, inserts) = &mut *guard;
    map.entry(k).or_default().push(Arc::downgrade(&c.inner));
    *inserts += 1;
    if *inserts % 64 == 0 {
        map.retain(|_, list| {
            list.retain(|w| w.strong_count() > 0);
            !list.is_empty()
        });
    }
    Ok(c)
}

/// Empties the compile cache (live functions stay valid).
pub fn clear_cache() {
    table().lock().unwrap_or_else(|e| e.into_inner()).0.clear();
}
