//! posix_memalign, aligned_alloc, memalign and valloc; some leaked.

use memshim_tests::*;

#[test]
fn valgrind_agrees_with_tally() {
    check_valgrind_single("aligned.c", "aligned", BASE_C);
}

#[test]
fn memshim_totals_equal_tally() {
    check_memshim_single("aligned.c", "aligned", BASE_C);
}
