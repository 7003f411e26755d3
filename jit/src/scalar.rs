//! Zero-overhead typed callables for all-scalar graphs: `ScalarFn1`..`ScalarFn4` call the
//! native scalar entry directly (arguments and a single result in registers; several results
//! through a pointer to a stack array). All checks happen once, when the callable is made.

use crate::Compiled;
use ferrax_ir::{DType, Result};
use std::marker::PhantomData;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
    impl Sealed for i32 {}
}

/// A Rust scalar type the scalar entry can take and return.
pub trait ScalarType: Copy + Default + sealed::Sealed + 'static {
    /// The matching IR dtype.
    const DTYPE: DType;
}

impl ScalarType for f32 {
    const DTYPE: DType = DType::F32;
}
impl ScalarType for f64 {
    const DTYPE: DType = DType::F64;
}
impl ScalarType for i32 {
    const DTYPE: DType = DType::I32;
}

macro_rules! scalar_fn {
    ($name:ident, $as_fn:ident, $as_fn_n:ident, $n:literal, $($a:ident),*) => {
        /// A native function of fixed arity over one scalar type with `M` results.
        ///
        /// Holds the compiled code alive; `Send + Sync` and cheap to clone.
        #[derive(Clone)]
        pub struct $name<T: ScalarType, const M: usize = 1> {
            f: *const u8,
            _keep: Compiled,
            _t: PhantomData<fn() -> T>,
        }

        impl<T: ScalarType, const M: usize> std::fmt::Debug for $name<T, M> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name)).field("outputs", &M).finish()
            }
        }

        // SAFETY: `f` points to immutable machine code kept alive by `_keep`, which is
        // `Send + Sync`; calling it touches no shared state.
        unsafe impl<T: ScalarType, const M: usize> Send for $name<T, M> {}
        // SAFETY: as above.
        unsafe impl<T: ScalarType, const M: usize> Sync for $name<T, M> {}

        impl<T: ScalarType> $name<T, 1> {
            /// Calls the function.
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            pub fn call(&self, $($a: T),*) -> T {
                // SAFETY: checked at creation: the entry takes these scalars and returns one.
                let f = unsafe {
                    std::mem::transmute::<*const u8, extern "C" fn($(scalar_fn!(@t $a T)),*) -> T>(self.f)
                };
                f($($a),*)
            }
        }

        impl<T: ScalarType, const M: usize> $name<T, M> {
            /// Calls the function, returning all `M` results.
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            pub fn call_multi(&self, $($a: T),*) -> [T; M] {
                if M == 1 {
                    // SAFETY: as in `call`.
                    let f = unsafe {
                        std::mem::transmute::<*const u8, extern "C" fn($(scalar_fn!(@t $a T)),*) -> T>(self.f)
                    };
                    [f($($a),*); M]
                } else {
                    // The entry writes every result, so the array is not zeroed first.
                    let mut out = std::mem::MaybeUninit::<[T; M]>::uninit();
                    // SAFETY: checked at creation: with several results the entry writes all
                    // `M` of them to the array behind its trailing pointer.
                    unsafe {
                        let f = std::mem::transmute::<
                            *const u8,
                            extern "C" fn($(scalar_fn!(@t $a T),)* *mut T),
                        >(self.f);
                        f($($a,)* out.as_mut_ptr().cast::<T>());
                        out.assume_init()
                    }
                }
            }
        }

        impl Compiled {
            #[doc = concat!("A typed callable for a graph of ", stringify!($n),
                " scalar parameters and one scalar output, all of type `T`.")]
            #[track_caller]
            pub fn $as_fn<T: ScalarType>(&self) -> Result<$name<T, 1>> {
                self.$as_fn_n::<T, 1>()
            }

            #[doc = concat!("A typed callable for a graph of ", stringify!($n),
                " scalar parameters and `M` scalar outputs, all of type `T`.")]
            #[track_caller]
            pub fn $as_fn_n<T: ScalarType, const M: usize>(&self) -> Result<$name<T, M>> {
                let loc = std::panic::Location::caller();
                let f = self.scalar_entry(T::DTYPE, $n, M).map_err(|e| e.at(loc))?;
                Ok($name { f, _keep: self.clone(), _t: PhantomData })
            }
        }
    };
    (@t $a:ident $t:ident) => { $t };
}

scalar_fn!(ScalarFn1, as_fn1, as_fn1_n, 1, a);
scalar_fn!(ScalarFn2, as_fn2, as_fn2_n, 2, a, b);
scalar_fn!(ScalarFn3, as_fn3, as_fn3_n, 3, a, b, c);
scalar_fn!(ScalarFn4, as_fn4, as_fn4_n, 4, a, b, c, d);
