//! posix_spawn: the parent's stream survives its vfork-style child's exec;
//! parent and child (leak_sites) each have exactly their own numbers.

use memshim_tests::*;

#[test]
fn valgrind_agrees_with_tallies() {
    let Some(base) = valgrind_baseline(BASE_C) else {
        return;
    };
    let dir = programs::scratch();
    let child = program("leak_sites.c");
    let Some(run) = valgrind_run(&program("spawn.c"), &[&child], dir.path()) else {
        return;
    };
    assert_eq!(run.output.code(), 0, "{}", run.output.stderr_str());
    let text = run.output.stderr_str();
    let mut m = Mismatches::default();
    for name in ["spawn", "leak_sites"] {
        let t = Tally::only(&text, name);
        valgrind_vs_tally(&mut m, &run.pid(t.pid), &t, &base);
    }
    m.finish(&format!("valgrind vs spawn tallies ({:?})", run.per_pid));
}

#[test]
fn memshim_parent_and_spawned_child() {
    let base = memshim_baseline(BASE_C);
    let dir = programs::scratch();
    let child = program("leak_sites.c");
    let run = memcollect_run(&program("spawn.c"), &[&child], &["--top", "50"], dir.path());
    assert_eq!(run.output.code(), 0, "{}", run.output.stderr_str());
    let text = run.output.stderr_str();
    let parent_t = Tally::only(&text, "spawn");
    assert_eq!(
        (parent_t.live_bytes, parent_t.live_blocks),
        (7 * 640, 7),
        "the program's own tally"
    );
    let mut m = Mismatches::default();
    for name in ["spawn", "leak_sites"] {
        let t = Tally::only(&text, name);
        let p = run.process(t.pid);
        let mut mp = Mismatches::default();
        memshim_vs_tally(&mut mp, p, &t, &base, false);
        if let Err(e) = std::panic::catch_unwind(|| {
            mp.finish(&format!("{name} (tally {t:?}; totals {:?})", p.totals))
        }) {
            m.check(
                false,
                e.downcast_ref::<String>().cloned().unwrap_or_default(),
            );
        }
    }
    let parent = run.process(parent_t.pid);
    m.check(
        parent
            .sites
            .iter()
            .any(|s| s.live_bytes == 7 * 640 && s.functions().contains(&"leak_before_spawn")),
        format!(
            "parent: no site of 7 x 640 B naming leak_before_spawn: {:?}",
            parent
                .sites
                .iter()
                .map(|s| s.describe())
                .collect::<Vec<_>>()
        ),
    );
    m.finish(&format!(
        "posix_spawn (processes: {:?})",
        run.processes
            .iter()
            .map(|p| (p.pid, p.exit.to_string()))
            .collect::<Vec<_>>()
    ));
}
