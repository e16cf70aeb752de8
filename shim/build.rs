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
    link_unwinder_statically();
}

/// Links the unwinder that Rust's standard library needs (`_Unwind_*`) from
/// the static `libgcc_eh.a` instead of `libgcc_s.so.1`.
///
/// Why: every process the shim is preloaded into would otherwise load
/// `libgcc_s` too, and its constructor (`__cpu_indicator_init`) executes
/// `cpuid` about ten times. Inside a virtual machine each `cpuid` exits to the
/// hypervisor; measured here, loading `libgcc_s` added about 0.1 ms to every
/// process start, a tenth of `/bin/true`. std asks the linker for `-lgcc_s`
/// itself, and there is no stable switch to change that (only `-Z build-std`),
/// so a linker script named `libgcc_s.so`, found first on the search path,
/// redirects that request to `libgcc_eh.a`. The copy is private to the shim:
/// rustc's version script keeps every `_Unwind_*` symbol local, so the host's
/// C++ exceptions still go through the host's own `libgcc_s`.
fn link_unwinder_statically() {
    let out_dir =
        std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let script = out_dir.join("libgcc_s.so");
    std::fs::write(&script, "INPUT(-lgcc_eh)\n").expect("write the libgcc_s linker script");
    println!("cargo:rustc-link-search=native={}", out_dir.display());
}
