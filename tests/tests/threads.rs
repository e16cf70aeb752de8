//! 4 threads allocate, hand their blocks to the next thread to free, and leak
//! 10 blocks each. Baseline: the same 4 threads doing nothing.

use memshim_tests::*;

#[test]
fn valgrind_agrees_with_tally() {
    check_valgrind_single("threads.c", "threads", BASE_THREADS);
}

#[test]
fn memshim_totals_equal_tally() {
    check_memshim_single("threads.c", "threads", BASE_THREADS);
}
