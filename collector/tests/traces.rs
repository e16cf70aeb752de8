//! Offline reports from trace files, good and bad.

use memshim_collector::commands::report::offline;
use memshim_collector::report::build::ReportOptions;
use memshim_collector::state::Exit;
use memshim_proto::{Alloc, AllocKind, Event, FrameWriter, Hello};

fn options() -> ReportOptions {
    ReportOptions::new(3, None)
}

fn trace() -> Vec<u8> {
    let hello = Event::Hello(Hello {
        pid: 5,
        ppid: 1,
        forked_from: None,
        exe: "/bin/t".into(),
        argv: vec!["t".into()],
        start_unix_ns: 0,
        start_mono_ns: 0,
        sample_bytes: 0,
        stack_depth: 64,
        shim_version: "test".into(),
    });
    let alloc = |addr| {
        Event::Alloc(Alloc {
            ts: 1,
            tid: 1,
            addr,
            size: 10,
            usable_size: 16,
            stack: 1,
            kind: AllocKind::Malloc,
        })
    };
    let mut w = FrameWriter::new(Vec::new()).unwrap();
    w.write_batch(&[hello, alloc(0x10)]).unwrap();
    w.write_batch(&[alloc(0x20)]).unwrap();
    w.into_inner().unwrap()
}

#[test]
fn garbage_and_headerless_files_are_clean_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8], &str); 3] = [
        ("garbage.mst", b"this is not a trace at all", "bad magic"),
        ("empty.mst", b"", "bad magic"),
        (
            "header-only.mst",
            &memshim_proto::framing::stream_header(),
            "does not start with Hello",
        ),
    ];
    for (name, bytes, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = offline(&[path], &options()).unwrap_err();
        assert!(
            err.message.contains(name) && err.message.contains(expected),
            "{}",
            err.message
        );
    }
    let missing = offline(&[dir.path().join("nope.mst")], &options()).unwrap_err();
    assert!(
        missing.message.contains("cannot open"),
        "{}",
        missing.message
    );
}

#[test]
fn truncated_or_corrupt_tails_keep_what_was_read() {
    let dir = tempfile::tempdir().unwrap();
    let full = trace();
    let path = dir.path().join("t.mst");
    std::fs::write(&path, &full).unwrap();
    let report = offline(std::slice::from_ref(&path), &options()).unwrap();
    assert_eq!(report.processes[0].totals.live_bytes, 20);
    assert_eq!(report.processes[0].exit, Exit::Cut, "no End event: cut");

    std::fs::write(&path, &full[..full.len() - 2]).unwrap();
    let report = offline(std::slice::from_ref(&path), &options()).unwrap();
    assert_eq!(
        report.processes[0].totals.live_bytes, 10,
        "the first frame survives"
    );

    let mut corrupt = full.clone();
    let n = corrupt.len();
    corrupt[n - 6..].fill(0xff);
    std::fs::write(&path, &corrupt).unwrap();
    let report = offline(&[path], &options()).unwrap();
    assert_eq!(report.processes[0].totals.live_bytes, 10);
}
