//! fork: parent and child each leak their own known amounts; the child starts
//! with its parent's live set (5 blocks of 1000 bytes), frees 2 of them.
//! Both end by `exit`, or by `_exit`, which runs no handlers.

use memshim_tests::*;

const FILE: &str = "fork.c";

#[test]
fn valgrind_agrees_with_tallies() {
    let Some(base) = valgrind_baseline(BASE_C) else {
        return;
    };
    let dir = programs::scratch();
    let Some(run) = valgrind_run(&program(FILE), &[] as &[&str], dir.path()) else {
        return;
    };
    assert_eq!(run.output.code(), 0, "{}", run.output.stderr_str());
    let text = run.output.stderr_str();
    let parent = Tally::only(&text, "fork_parent");
    let child = Tally::only(&text, "fork_child");
    assert_eq!(child.ppid, parent.pid);
    let mut m = Mismatches::default();
    valgrind_vs_tally(&mut m, &run.pid(parent.pid), &parent, &base);
    valgrind_vs_tally(&mut m, &run.pid(child.pid), &child, &base);
    m.finish(&format!(
        "valgrind vs fork tallies ({parent:?}, {child:?}; {:?})",
        run.per_pid
    ));
}

#[test]
fn memshim_reports_both_processes() {
    check_both_processes(&[]);
}

#[test]
fn memshim_reports_both_processes_ended_by_underscore_exit() {
    check_both_processes(&["_exit"]);
}

fn check_both_processes(args: &[&str]) {
    let base = memshim_baseline(BASE_C);
    let dir = programs::scratch();
    let run = memcollect_run(&program(FILE), args, &["--top", "50"], dir.path());
    assert_eq!(run.output.code(), 0, "{}", run.output.stderr_str());
    let text = run.output.stderr_str();
    let parent_t = Tally::only(&text, "fork_parent");
    let child_t = Tally::only(&text, "fork_child");
    // The expected numbers (the tallies themselves are checked against valgrind).
    assert_eq!(
        (child_t.live_bytes, child_t.live_blocks),
        (3 * 1000 + 3 * 777, 6)
    );
    assert_eq!(
        (parent_t.live_bytes, parent_t.live_blocks),
        (4 * 1000 + 2 * 5555, 6)
    );
    let mut m = Mismatches::default();
    m.eq(
        "number of processes in the report",
        run.processes.len() as i64,
        2,
    );
    let parent = run.process(parent_t.pid);
    let child = run.process(child_t.pid);
    m.eq("child's ppid", child.ppid, parent_t.pid);
    memshim_vs_tally(&mut m, parent, &parent_t, &base, false);
    let mut mc = Mismatches::default();
    memshim_vs_tally(&mut mc, child, &child_t, &base, true);
    let mut all = Vec::new();
    if let Err(e) = std::panic::catch_unwind(|| {
        m.finish(&format!(
            "parent (tally {parent_t:?}, totals {:?})",
            parent.totals
        ))
    }) {
        all.push(panic_text(e));
    }
    if let Err(e) = std::panic::catch_unwind(|| {
        mc.finish(&format!(
            "child (tally {child_t:?}, totals {:?})",
            child.totals
        ))
    }) {
        all.push(panic_text(e));
    }
    assert!(all.is_empty(), "{}", all.join("\n"));
    // Each process's own leak is a site of its own.
    let has_site = |p: &ProcessReport, bytes: i64, blocks: i64| {
        p.sites
            .iter()
            .any(|s| s.live_bytes == bytes && s.live_blocks == blocks)
    };
    assert!(
        has_site(child, 3 * 777, 3),
        "child: no site with 3 x 777 live: {:?}",
        child.sites.iter().map(|s| s.describe()).collect::<Vec<_>>()
    );
    assert!(
        has_site(parent, 2 * 5555, 2),
        "parent: no site with 2 x 5555 live: {:?}",
        parent
            .sites
            .iter()
            .map(|s| s.describe())
            .collect::<Vec<_>>()
    );
}

fn panic_text(e: Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}
