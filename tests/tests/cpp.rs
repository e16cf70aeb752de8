//! C++: new/delete, new[]/delete[], std::vector growth, std::string, and a
//! leaked new int[1000]. Baseline: the empty C++ program (libstdc++'s pool).

use memshim_tests::*;

#[test]
fn valgrind_agrees_with_tally() {
    check_valgrind_single("cpp.cpp", "cpp", BASE_CPP);
}

#[test]
fn memshim_totals_equal_tally() {
    let (run, _dir) = check_memshim_single("cpp.cpp", "cpp", BASE_CPP);
    let (p, _) = run.process_of("cpp");
    // The leaked int[1000] is a site of its own, named through its function.
    let all: Vec<String> = p.sites.iter().map(|s| s.describe()).collect();
    let leak = p
        .sites
        .iter()
        .find(|s| s.functions().iter().any(|f| f.contains("leak_ints")))
        .unwrap_or_else(|| panic!("no site names leak_ints:\n{}", all.join("\n")));
    assert_eq!(
        (leak.live_bytes, leak.live_blocks, leak.alloc_calls),
        (4000, 1, 1),
        "{}",
        leak.describe()
    );
}
