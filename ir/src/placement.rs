//! `Placement`: where a hash table keyed by equations (or by anything built from values) puts
//! its entries, so that the lookups of a transform stay in cache on large graphs.
//!
//! A transform emits equations whose newest operand is almost always a value it has just
//! built. With entries placed at random, every lookup in a table larger than the caches costs
//! a cache miss, and these misses grew with the graph until they were the transforms' largest
//! cost on long chains. A `Placement` places an entry by its newest value instead: the values
//! are cut into blocks of [`BLOCK`] consecutive values, and the entries whose newest value lies
//! in one block share a region of [`REGION`] buckets. Consecutive lookups then touch one or
//! two regions, already in cache. The regions of consecutive blocks are consecutive in the
//! table (wrapping around its end), so a walk that fills block after block writes the table
//! from front to back, which the processor's prefetchers follow; at random places, every new
//! region cost a cache miss on its control bytes and another on its entries, about one per
//! 16 equations, and these misses grew with the graph. A graph has about one equation per
//! value, so a block places 16 entries in its 32 buckets on average, and once the blocks wrap
//! around the table (whose buckets are at least 8/7 of its entries), a region is as full as
//! the table is on average. The table's control tag still comes from the key's own hash, so a
//! probe compares few entries.
//!
//! A block places at most [`REGION_LIMIT`] entries in its region (a value with many users
//! would otherwise make its region's probe sequences long); the entries beyond, and those
//! without a newest value, are placed by their key's hash alone. Counting what each block
//! placed in its region tells a lookup where to look: in the region while the block has
//! placed something there, and in the whole table as well once the block is full. Entries
//! store the 32-bit hash [`Placement::place`] gave them, from which [`table_hash`] recomputes
//! their table hash when the table grows.

/// Values per block: entries whose newest value lies in one block of this many consecutive
/// values share a region.
pub const BLOCK: u32 = 16;

/// The buckets of one block's region (a power of two: two control groups of the table).
pub const REGION: u32 = 32;

/// The most entries a block places in its region; later ones go to the whole table.
pub const REGION_LIMIT: u16 = 48;

/// The bits of a stored hash that place an entry (25); the 7 above them are the control tag.
const PLACE_BITS: u32 = (1 << 25) - 1;

/// The table hash of a stored 32-bit hash: the 32 bits in both halves, so that the table's
/// bucket index (low bits) and its control tag (top 7 bits) both come from the stored bits.
pub fn table_hash(stored: u32) -> u64 {
    (stored as u64) << 32 | stored as u64
}

/// The stored hash of an entry with key hash `key` placed in the region of block `block`: the
/// control tag from the key's top bits, the bucket the block's region start (the region after
/// the previous block's) plus an offset within the region from the key's low bits.
fn local_hash(key: u32, block: u32) -> u32 {
    // Consecutive blocks get consecutive regions (wrapping around the table), so that the
    // regions a walk fills one after another are neighbours in memory as well.
    let start = block.wrapping_mul(REGION);
    (key & !PLACE_BITS) | ((start | (key & (REGION - 1))) & PLACE_BITS)
}

/// The per-block counts of one table (see the module documentation).
#[derive(Clone, Debug, Default)]
pub struct Placement {
    /// Per block of values, how many entries are placed in its region.
    placed: Vec<u16>,
}

/// The stored hashes under which an entry may have been placed, in the order to probe them.
pub type Probes = [Option<u32>; 2];

impl Placement {
    /// A placement with room for the blocks of `values` values.
    pub fn with_capacity(values: usize) -> Placement {
        Placement {
            placed: Vec::with_capacity(values / BLOCK as usize + 1),
        }
    }

    /// The entries placed so far in the region of `block`.
    fn count(&self, block: u32) -> u16 {
        self.placed.get(block as usize).copied().unwrap_or(0)
    }

    /// Where to look for an entry with key hash `key` whose newest value has index `newest`
    /// (`None` for an entry without values): the stored hashes it may have, to be probed in
    /// order and each compared with the entry's stored hash.
    pub fn probes(&self, key: u32, newest: Option<u32>) -> Probes {
        match newest.map(|v| v / BLOCK) {
            None => [Some(key), None],
            Some(b) => match self.count(b) {
                0 => [None, None],
                n if n < REGION_LIMIT => [Some(local_hash(key, b)), None],
                _ => [Some(local_hash(key, b)), Some(key)],
            },
        }
    }

    /// The stored hash of a new entry with key hash `key` whose newest value has index
    /// `newest`, counting it in its block when it goes to the block's region.
    pub fn place(&mut self, key: u32, newest: Option<u32>) -> u32 {
        let Some(b) = newest.map(|v| v / BLOCK) else {
            return key;
        };
        let n = self.count(b);
        if n >= REGION_LIMIT {
            return key;
        }
        let slot = b as usize;
        if self.placed.len() <= slot {
            // The vector grows geometrically, so this costs constant time per block.
            self.placed.resize(slot + 1, 0);
        }
        self.placed[slot] = n + 1;
        local_hash(key, b)
    }
}
