//! realloc chains (growing in place and moving, past the mmap threshold,
//! shrinking), realloc(NULL, n) and reallocarray.

use memshim_tests::*;

#[test]
fn valgrind_agrees_with_tally() {
    check_valgrind_single("realloc.c", "realloc", BASE_C);
}

#[test]
fn memshim_totals_equal_tally() {
    let (run, _dir) = check_memshim_single("realloc.c", "realloc", BASE_C);
    // 105 blocks: 1 realloc(NULL) + 50 + 14 + 10 grow/shrink, 1 obstacle malloc,
    // 1 reallocarray(NULL) + 7 reallocarray, 1 malloc + 20 realloc.
    let (p, t) = run.process_of("realloc");
    assert_eq!(t.blocks_allocated, 105, "the program itself changed");
    let base = memshim_baseline(BASE_C);
    let mut m = Mismatches::default();
    // realloc(): 1 of NULL + 50 + 14 + 10 + 20 = 95; reallocarray(): 1 of NULL
    // + 6 + 1 = 8. Every call of the realloc family counts as a realloc call.
    m.eq(
        "totals.realloc_calls - baseline",
        p.totals.realloc_calls - base.realloc_calls,
        103,
    );
    m.finish("realloc calls");
}
