//! The collector on a real socket: streams, a garbage peer, a report request.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use memshim_collector::control::{query, Request};
use memshim_collector::registry::Registry;
use memshim_collector::server::{Server, Stop};
use memshim_collector::state::Exit;
use memshim_collector::symbolize::SymbolCache;
use memshim_proto::{Event, FrameWriter, StackDef};

mod common;
use common::{end, free, hello, malloc};

fn stream(socket: &std::path::Path, batches: &[Vec<Event>]) {
    let conn = UnixStream::connect(socket).unwrap();
    let mut w = FrameWriter::new(conn).unwrap();
    for b in batches {
        w.write_batch(b).unwrap();
    }
    w.into_inner().unwrap();
}

#[test]
fn serves_streams_ignores_garbage_and_answers_reports() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("sub/collector.sock");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let registry = Arc::new(Registry::default());
    let server = Arc::new(
        Server::bind(
            &socket,
            Arc::clone(&registry),
            Arc::new(SymbolCache::default()),
            Some(data.clone()),
        )
        .unwrap(),
    );
    let stop = Arc::new(Stop::new().unwrap());
    let acceptor = {
        let (server, stop) = (Arc::clone(&server), Arc::clone(&stop));
        thread::spawn(move || server.serve(&stop))
    };
    // A second collector on the same socket is refused.
    let err = Server::bind(
        &socket,
        Arc::new(Registry::default()),
        Arc::new(SymbolCache::default()),
        None,
    )
    .unwrap_err();
    assert!(err.contains("already listening"), "{err}");

    // Garbage peers: random bytes, a truncated stream, a silent close.
    let mut garbage = UnixStream::connect(&socket).unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    drop(garbage);
    let mut cut = UnixStream::connect(&socket).unwrap();
    cut.write_all(&memshim_proto::framing::stream_header())
        .unwrap();
    cut.write_all(&[0xff, 0xff, 0x00]).unwrap();
    drop(cut);
    drop(UnixStream::connect(&socket).unwrap());

    // A finished process with a leak, and one still running.
    stream(
        &socket,
        &[
            vec![
                hello(10, None, 1_000),
                Event::Stack(StackDef {
                    id: 7,
                    frames: vec![0x1234],
                }),
            ],
            vec![
                malloc(1, 0x100, 64, 7),
                malloc(2, 0x200, 32, 8),
                free(3, 0x200),
                end(4_000_000, 0),
            ],
        ],
    );
    let running = UnixStream::connect(&socket).unwrap();
    let mut running = FrameWriter::new(running).unwrap();
    running
        .write_batch(&[hello(20, None, 2_000), malloc(1, 0x100, 1000, 9)])
        .unwrap();

    // The running process must be visible while it runs.
    let mut report = None;
    for _ in 0..100 {
        let r = query(&socket, &Request::report(5, None)).unwrap();
        // Streams are ingested concurrently: wait until the ended one's end
        // is in too.
        if r.processes.len() == 2
            && r.processes[0].exit != Exit::Running
            && r.processes[1].totals.live_bytes == 1000
        {
            report = Some(r);
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let report = report.expect("both processes reported");
    let (done, live) = (&report.processes[0], &report.processes[1]);
    assert_eq!((done.pid, done.exit), (10, Exit::Code(0)));
    assert_eq!(done.totals.alloc_calls, 2);
    assert_eq!(done.totals.free_calls, 1);
    assert_eq!(done.totals.live_bytes, 64);
    assert_eq!(done.totals.peak_bytes, 96);
    assert_eq!(done.duration_ms, 4);
    assert_eq!(done.live_at_exit.bytes, 64);
    assert_eq!(done.command, "synthetic 10");
    assert_eq!(done.sites[0].id, "0x7");
    assert_eq!(done.sites[0].leak.as_ref().unwrap().bytes, 64);
    assert_eq!(
        done.sites[0].frames.len(),
        1,
        "unknown memory still yields a frame"
    );
    assert_eq!(done.sites[0].frames[0].function, "??");
    assert_eq!((live.pid, live.exit), (20, Exit::Running));
    assert!(live.sites[0].leak.is_none());
    assert!(live.sites[0].frames.is_empty(), "stack 9 was never defined");

    let only = query(&socket, &Request::report(5, Some(20))).unwrap();
    assert_eq!(only.processes.len(), 1);

    running.write_batch(&[end(5, 1)]).unwrap();
    drop(running.into_inner().unwrap());
    stop.request();
    acceptor.join().unwrap();
    assert!(server.wait_idle(Duration::from_secs(5)));
    // Both streams were saved byte for byte and replay to the same numbers.
    let saved: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(saved.len(), 2, "{saved:?}");
    assert!(saved
        .iter()
        .any(|p| p.file_name().unwrap() == "10-1000.mst"));
    let offline = memshim_collector::commands::report::offline(
        &saved,
        &memshim_collector::report::build::ReportOptions::new(5, Some(10)),
    )
    .unwrap();
    assert_eq!(offline.processes[0].totals, done.totals);
    server.remove_socket();
}

#[test]
fn forked_child_waits_for_its_parents_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("c.sock");
    let registry = Arc::new(Registry::default());
    let server = Arc::new(
        Server::bind(
            &socket,
            Arc::clone(&registry),
            Arc::new(SymbolCache::default()),
            None,
        )
        .unwrap(),
    );
    let stop = Arc::new(Stop::new().unwrap());
    let acceptor = {
        let (server, stop) = (Arc::clone(&server), Arc::clone(&stop));
        thread::spawn(move || server.serve(&stop))
    };
    // The child's stream arrives first; the parent's Forked comes later.
    let child = {
        let socket = socket.clone();
        thread::spawn(move || {
            stream(
                &socket,
                &[vec![hello(31, Some(30), 1_001), free(1, 0x100), end(2, 0)]],
            );
        })
    };
    thread::sleep(Duration::from_millis(200));
    stream(
        &socket,
        &[vec![
            hello(30, None, 1_000),
            malloc(1, 0x100, 500, 1),
            malloc(2, 0x200, 300, 1),
            Event::Forked {
                ts: 3,
                child_pid: 31,
            },
            end(4, 0),
        ]],
    );
    child.join().unwrap();
    stop.request();
    acceptor.join().unwrap();
    assert!(server.wait_idle(Duration::from_secs(5)));
    let report = query_after_stop(&registry);
    let c = report.processes.iter().find(|p| p.pid == 31).unwrap();
    assert_eq!(c.forked_from, Some(30));
    assert_eq!(
        (
            c.totals.free_calls,
            c.totals.blocks_freed,
            c.totals.unknown_frees
        ),
        (1, 1, 0)
    );
    assert_eq!(
        (
            c.totals.live_bytes,
            c.totals.peak_bytes,
            c.totals.alloc_calls
        ),
        (300, 800, 0)
    );
    assert_eq!(registry.pending_forks(), 0);
    server.remove_socket();
}

fn query_after_stop(registry: &Registry) -> memshim_collector::report::Report {
    memshim_collector::report::build::build_report(
        registry,
        &SymbolCache::default(),
        &memshim_collector::report::build::ReportOptions::new(5, None),
    )
}
