//! Allocation calls that succeed and that fail: errno and results are the
//! same with the shim, and failed calls are not blocks.

use memshim_tests::*;

#[test]
fn errno_and_failures_unchanged() {
    let base = memshim_baseline(BASE_C);
    let dir = programs::scratch();
    let prog = program("errno_check.c");
    let plain = run_plain(&prog, &[] as &[&str], dir.path());
    assert_eq!(plain.code(), 0);
    assert!(
        plain
            .stdout_str()
            .contains("malloc(huge)                       null   errno=12"),
        "{}",
        plain.stdout_str()
    );
    let run = memcollect_run(&prog, &[] as &[&str], &[], dir.path());
    assert_eq!(run.output.code(), 0, "{}", run.output.stderr_str());
    assert!(
        run.output.stdout == plain.stdout,
        "output differs under the shim:\n--- plain\n{}--- memcollect\n{}",
        plain.stdout_str(),
        run.output.stdout_str()
    );
    assert_eq!(run.processes.len(), 1);
    let a = run.processes[0].totals;
    let mut m = Mismatches::default();
    m.eq(
        "totals.blocks_allocated - baseline",
        a.blocks_allocated - base.blocks_allocated,
        5,
    );
    m.eq(
        "totals.blocks_freed - baseline",
        a.blocks_freed - base.blocks_freed,
        4,
    );
    m.eq(
        "totals.live_blocks - baseline",
        a.live_blocks - base.live_blocks,
        1,
    );
    m.eq(
        "(bytes_allocated - live_bytes) - baseline's",
        (a.bytes_allocated - a.live_bytes) - (base.bytes_allocated - base.live_bytes),
        400,
    );
    m.eq("totals.lost_events", a.lost_events, 0);
    m.finish(&format!("errno_check (totals {a:?})"));
}
