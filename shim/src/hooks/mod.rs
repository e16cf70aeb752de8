//! The interposed functions, exported under their C names.
//!
//! Each hook forwards to the real function and reports what happened to
//! [`crate::recorder`]. They are grouped by what they intercept:
//! the heap ([`heap`]), memory mappings ([`mmap`]) and the process's life
//! ([`process`]: `fork`, `exec`, `exit`, `main`'s return), the program's
//! descriptor calls that could close or take the shim's own ([`fd`]), and
//! on x86-64 `dlclose` for the in-process unwinder ([`dl`]).

#[cfg(target_arch = "x86_64")]
pub mod dl;
pub mod fd;
pub mod heap;
pub mod mmap;
pub mod process;
