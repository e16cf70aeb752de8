//! A program that closes every descriptor it did not open (as daemons do),
//! by `close` in a loop, `closefrom`, `close_range` or `dup2` onto every
//! number, then opens a file and a socket pair that get the lowest numbers
//! back. Its output must be the same as without the shim (the shim's own
//! descriptors look closed), nothing of the stream may be lost, and nothing
//! of the shim's may land in the program's file or socket. Only a raw system
//! call can still close them: the report then says the stream was cut.

use memshim_tests::*;

const FILE: &str = "descriptors.c";

fn check(how: &str) {
    let base = memshim_baseline(BASE_C);
    let dir = programs::scratch();
    let prog = program(FILE);
    let plain_out = dir.path().join("plain.txt");
    let plain = run_plain(&prog, &[how, plain_out.to_str().unwrap()], dir.path());
    assert_eq!(plain.code(), 0, "{}", plain.stderr_str());
    let shim_out = dir.path().join("shim.txt");
    let run = memcollect_run(&prog, &[how, shim_out.to_str().unwrap()], &[], dir.path());
    assert_eq!(run.output.code(), 0, "{}", run.output.stderr_str());
    let (plain_text, shim_text) = (
        std::fs::read_to_string(&plain_out).unwrap(),
        std::fs::read_to_string(&shim_out).unwrap(),
    );
    assert_eq!(shim_text, plain_text, "the program's own file differs");
    let (p, t) = run.process_of("descriptors");
    assert_eq!(
        (t.blocks_allocated, t.live_blocks, t.live_bytes),
        (1100, 50, 5000)
    );
    let mut m = Mismatches::default();
    memshim_vs_tally(&mut m, p, &t, &base, false);
    m.eq("totals.lost_events", p.totals.lost_events, 0);
    m.finish(&format!("{how}: totals {:?}, tally {t:?}", p.totals));
}

#[test]
fn closing_every_descriptor_one_by_one_spares_the_stream() {
    check("close");
}

#[test]
fn closefrom_spares_the_stream() {
    check("closefrom");
}

#[test]
fn close_range_spares_the_stream() {
    check("close_range");
}

#[test]
fn dup2_onto_every_descriptor_moves_the_stream_aside() {
    check("dup2");
}

#[test]
fn a_vfork_child_taking_every_number_leaves_the_parents_stream_alone() {
    check("vfork");
}

#[test]
fn a_raw_close_range_cuts_the_stream_and_the_report_says_so() {
    let dir = programs::scratch();
    let out = dir.path().join("out.txt");
    let run = memcollect_run(
        &program(FILE),
        &["raw", out.to_str().unwrap()],
        &[],
        dir.path(),
    );
    assert_eq!(run.output.code(), 0, "{}", run.output.stderr_str());
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "raw: 1 ok, 0 failed; fds 3 4 5; the socket said ping\n"
    );
    let p = &run.processes[0];
    assert_eq!(p.exit_code(), Some(0));
    assert_eq!(p.json["stream_cut_early"], true, "{}", p.json);
    assert!(p.totals.alloc_calls < 1100, "{:?}", p.totals);
}
