//! Snapshots in a serving collector and the diff between them.

use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use memshim_collector::analysis::diff::diff;
use memshim_collector::control::{query, Action, Request};
use memshim_collector::registry::Registry;
use memshim_collector::server::{Server, Stop};
use memshim_collector::symbolize::SymbolCache;
use memshim_proto::FrameWriter;

mod common;
use common::malloc;

fn hello(pid: u32) -> memshim_proto::Event {
    common::hello(pid, None, 1)
}

fn snapshot(socket: &std::path::Path, name: &str) -> Result<(), String> {
    query(
        socket,
        &Request {
            action: Action::Snapshot(name.into()),
            ..Request::report(5, None)
        },
    )
    .map(|_| ())
}

fn get(socket: &std::path::Path, name: &str) -> memshim_collector::report::Report {
    query(
        socket,
        &Request {
            action: Action::GetSnapshot(name.into()),
            ..Request::default()
        },
    )
    .unwrap()
}

fn wait_live(socket: &std::path::Path, bytes: u64) {
    for _ in 0..200 {
        let r = query(socket, &Request::report(5, None)).unwrap();
        if r.processes
            .first()
            .is_some_and(|p| p.totals.live_bytes == bytes)
        {
            return;
        }
        thread::sleep(Duration::from_millis(10));
    }
    panic!("live bytes never reached {bytes}");
}

#[test]
fn snapshots_are_kept_and_diffed_per_site() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("collector.sock");
    let server = Arc::new(
        Server::bind(
            &socket,
            Arc::new(Registry::default()),
            Arc::new(SymbolCache::default()),
            Some(dir.path().to_owned()),
        )
        .unwrap(),
    );
    let stop = Arc::new(Stop::new().unwrap());
    let acceptor = {
        let (server, stop) = (Arc::clone(&server), Arc::clone(&stop));
        thread::spawn(move || server.serve(&stop))
    };
    let mut w = FrameWriter::new(UnixStream::connect(&socket).unwrap()).unwrap();
    w.write_batch(&[hello(42), malloc(1, 0x10, 100, 1), malloc(2, 0x20, 50, 2)])
        .unwrap();
    wait_live(&socket, 150);
    snapshot(&socket, "before").unwrap();
    w.write_batch(&[
        malloc(1_000_000_000, 0x30, 1_000, 1),
        malloc(1_000_000_001, 0x40, 24, 1),
    ])
    .unwrap();
    wait_live(&socket, 1_174);
    snapshot(&socket, "after").unwrap();
    assert!(snapshot(&socket, "../escape").is_err());
    assert!(dir.path().join("snapshot-after.json").is_file());

    let (a, b) = (get(&socket, "before"), get(&socket, "after"));
    let d = diff("before", &a, "after", &b, 10);
    assert_eq!(d.processes.len(), 1);
    let p = &d.processes[0];
    assert_eq!((p.pid_a, p.pid_b, p.delta_bytes), (42, 42, 1_024));
    assert_eq!(p.sites.len(), 1, "site 2 did not change: {:?}", p.sites);
    let s = &p.sites[0];
    assert_eq!(s.site, "0x1");
    assert_eq!(
        (s.live_bytes_a, s.live_bytes_b, s.delta_bytes),
        (100, 1_124, 1_024)
    );
    assert_eq!((s.delta_blocks, s.delta_alloc_calls), (2, 2));
    assert!(query(
        &socket,
        &Request {
            action: Action::GetSnapshot("missing".into()),
            ..Request::default()
        }
    )
    .unwrap_err()
    .contains("no snapshot named"));

    drop(w);
    stop.request();
    acceptor.join().unwrap();
    assert!(server.wait_idle(Duration::from_secs(5)));
}
