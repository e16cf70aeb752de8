//! The program's own `mmap`, `munmap` and `mremap` calls: the report's
//! mapped totals at exit are exactly what the program left mapped
//! (tests/programs/mappings.c: 160 KiB anonymous in 2 ranges, 32 KiB from a
//! file in 1), whole and partial unmaps and growing `mremap`s (which keep
//! the kind of the range they grow) included.

use memshim_tests::*;

#[test]
fn mapped_totals_at_exit_are_the_programs() {
    let dir = programs::scratch();
    let run = memcollect_run(&program("mappings.c"), &[] as &[&str], &[], dir.path());
    assert_eq!(run.output.code(), 0, "{}", run.output.stderr_str());
    let [p] = run.processes.as_slice() else {
        panic!("one process expected: {:?}", run.report);
    };
    let totals = &p.json["totals"];
    let field = |k: &str| {
        totals[k]
            .as_u64()
            .unwrap_or_else(|| panic!("totals.{k}: {totals}"))
    };
    let mut m = Mismatches::default();
    m.eq(
        "mmap_anonymous_bytes",
        field("mmap_anonymous_bytes") as i64,
        160 * 1024,
    );
    m.eq(
        "mmap_file_bytes",
        field("mmap_file_bytes") as i64,
        32 * 1024,
    );
    m.eq(
        "mmap_live_bytes",
        field("mmap_live_bytes") as i64,
        192 * 1024,
    );
    m.eq("mmap_ranges", field("mmap_ranges") as i64, 3);
    m.finish(&format!("mappings.c totals {totals}"));
}
