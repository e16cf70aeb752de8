//! Builds the one piece of the shim written in C: the per-thread state.
//!
//! Stable Rust cannot choose a TLS model, and a shared library's default
//! (global-dynamic) may call `malloc` on a thread's first access, which
//! re-enters the shim. C can ask for `initial-exec`: the state then lives in
//! the static TLS block that exists from the moment the thread does.

fn main() {
    println!("cargo:rerun-if-changed=src/thread_state.c");
    cc::Build::new()
        .file("src/thread_state.c")
        .flag("-fvisibility=hidden")
        .flag("-ftls-model=initial-exec")
        .opt_level(2)
        .compile("memshim_thread_state");
}
