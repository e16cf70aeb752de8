//! libc functions that allocate internally, some under libc's own locks
//! (pthread_getattr_np on the main thread, as every Rust program's start-up
//! does; fopen, getline, opendir, asprintf): the program must finish, and the
//! live set at exit is exactly the program's own leak (333 B in 1 block).

use memshim_tests::*;

const FILE: &str = "libc_calls.c";

#[test]
fn valgrind_live_set_is_the_tally() {
    let Some(base) = valgrind_baseline(BASE_C) else {
        return;
    };
    let dir = programs::scratch();
    let Some(run) = valgrind_run(&program(FILE), &[] as &[&str], dir.path()) else {
        return;
    };
    assert_eq!(run.output.code(), 0, "{}", run.output.stderr_str());
    let t = Tally::only(&run.output.stderr_str(), "libc_calls");
    assert_eq!(
        (t.live_bytes, t.live_blocks),
        (333, 1),
        "the program's own tally"
    );
    let v = run.pid(t.pid);
    let mut m = Mismatches::default();
    valgrind_live_vs_tally(&mut m, &v, &t, &base);
    m.eq(
        "valgrind allocs - frees - baseline",
        (v.allocs - v.frees) - (base.allocs - base.frees),
        1,
    );
    m.finish(&format!("valgrind libc_calls {v:?}"));
}

#[test]
fn memshim_finishes_and_live_set_is_the_tally() {
    let base = memshim_baseline(BASE_C);
    let dir = programs::scratch();
    let run = memcollect_run(&program(FILE), &[] as &[&str], &["--top", "50"], dir.path());
    assert_eq!(run.output.code(), 0, "{}", run.output.stderr_str());
    let (p, t) = run.process_of("libc_calls");
    let a = p.totals;
    let mut m = Mismatches::default();
    m.eq(
        "totals.live_bytes - baseline",
        a.live_bytes - base.live_bytes,
        t.live_bytes,
    );
    m.eq(
        "totals.live_blocks - baseline",
        a.live_blocks - base.live_blocks,
        t.live_blocks,
    );
    m.eq(
        "totals.blocks_allocated - blocks_freed - baseline",
        (a.blocks_allocated - a.blocks_freed) - (base.blocks_allocated - base.blocks_freed),
        1,
    );
    m.eq("totals.lost_events", a.lost_events, 0);
    m.check(p.exit_code() == Some(0), format!("exit {}", p.exit));
    m.finish(&format!("memshim libc_calls (totals {a:?})"));
}
