//! memshim's leak classes equal memcheck's LEAK SUMMARY (minus the empty
//! program's baseline, on both sides), class by class, bytes and blocks:
//! direct leaks, a lost linked list and a lost cycle (indirect), blocks held
//! only through interior pointers (possible), globals (reachable), and C++
//! `new[]` of objects with destructors and `std::string`s.

use memshim_tests::leakcheck::{memcheck_leaks, Classes};
use memshim_tests::*;

fn memshim_classes(file: &str, tally: &str) -> Classes {
    let dir = programs::scratch();
    let run = memcollect_run(&program(file), &[] as &[&str], &[], dir.path());
    assert_eq!(run.output.code(), 0, "{}", run.output.stderr_str());
    let (p, _) = run.process_of(tally);
    assert!(
        p.json["leak_scan"].is_object(),
        "no exit scan for {file}: {}",
        p.json["leak_scan"]
    );
    Classes::from_json(&p.json["leaks"])
}

fn compare(file: &str, tally: &str, base: &str, base_tally: &str) {
    let dir = programs::scratch();
    let Some((vg, _, out)) = memcheck_leaks(&program(file), dir.path()) else {
        return;
    };
    let Some((vg_base, _, _)) = memcheck_leaks(&program(base), dir.path()) else {
        return;
    };
    let ours = memshim_classes(file, tally).minus(&memshim_classes(base, base_tally));
    let theirs = vg.minus(&vg_base);
    assert_eq!(
        ours,
        theirs,
        "memshim (left) and memcheck (right) disagree on {file}, baseline {base} subtracted;\nmemcheck said:\n{}",
        out.stderr_str()
    );
}

#[test]
fn c_program_classes_equal_memcheck() {
    compare("leak_classes.c", "leak_classes", BASE_C, "empty");
}

#[test]
fn cpp_program_classes_equal_memcheck() {
    compare(
        "leak_classes_cpp.cpp",
        "leak_classes_cpp",
        BASE_CPP,
        "empty_cpp",
    );
}

#[test]
fn sites_carry_their_class() {
    let dir = programs::scratch();
    let run = memcollect_run(
        &program("leak_classes.c"),
        &[] as &[&str],
        &["--top", "50"],
        dir.path(),
    );
    let (p, _) = run.process_of("leak_classes");
    let class_of = |func: &str| -> Vec<String> {
        p.sites
            .iter()
            .filter(|s| s.frames.first().and_then(|f| f.function.as_deref()) == Some(func))
            .map(|s| s.json["leak"]["class"].as_str().unwrap_or("-").to_owned())
            .collect::<std::collections::BTreeSet<String>>()
            .into_iter()
            .collect()
    };
    assert_eq!(class_of("keep_globals"), ["reachable"]);
    assert_eq!(class_of("lose_cycle"), ["definitely", "indirectly"]);
    assert_eq!(class_of("keep_interior"), ["possibly"]);
    assert_eq!(class_of("make_list"), ["definitely", "reachable"]);
}
