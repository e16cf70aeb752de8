//! The shim keeps its own memory out of the program's heap: the program's
//! blocks go exactly where they go without it.

use memshim_tests::*;

/// Block offsets and realloc moves, printed by the program in its main
/// thread and in a second one (with `mallinfo2`'s in-use bytes there), are the same plain
/// and under `memcollect run` (exact mode: every call's stack is captured,
/// which sets up the unwinder of each thread on its first call). When the
/// shim's own allocations came from the program's allocator, the unwinder
/// state of each thread landed among the program's blocks.
#[test]
fn the_programs_blocks_go_where_they_go_without_the_shim() {
    let dir = programs::scratch();
    let prog = program("heap_layout.c");
    let plain = run_plain(&prog, &[] as &[&str], dir.path());
    assert_eq!(plain.code(), 0);
    let text = plain.stdout_str();
    assert!(
        text.contains("main block 62") && text.contains("thread in use since start:"),
        "{text}"
    );
    for sample_bytes in ["0", "4096"] {
        let run = memcollect_run(
            &prog,
            &[] as &[&str],
            &["--sample-bytes", sample_bytes],
            dir.path(),
        );
        assert_eq!(run.output.code(), 0, "{}", run.output.stderr_str());
        assert_eq!(
            run.output.stdout_str(),
            text,
            "the program's heap differs under the shim (--sample-bytes {sample_bytes})"
        );
        if sample_bytes == "0" {
            // Every call recorded: the shim did unwind in both threads.
            let t = run.processes[0].totals;
            assert!(t.blocks_allocated >= 2 * (1 + 64 + 50 * 11), "{t:?}");
        }
    }
}
