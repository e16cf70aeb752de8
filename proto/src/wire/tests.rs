//! The hand-coded batches against bincode's serialization of the serde form
//! ([`super::reference`]): same bytes out, same events (or same refusal) back.

use super::reference::{CompactAlloc, RefDecoder, RefEncoder, Wire};
use super::*;
use crate::event::*;
use crate::python::PythonCode;

/// SplitMix64: a seeded generator for reproducible batches, without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len() as u64) as usize]
    }

    /// Small values, values on either side of each varint width, extremes, anything.
    fn value(&mut self) -> u64 {
        const EDGES: [u64; 16] = [
            0,
            1,
            249,
            250,
            251,
            252,
            0xffff,
            0x1_0000,
            0x1_0001,
            0xffff_ffff,
            0x1_0000_0000,
            0x1_0000_0001,
            i64::MAX as u64,
            1 << 63,
            u64::MAX - 1,
            u64::MAX,
        ];
        match self.below(4) {
            0 => self.below(300),
            1 => self.pick(&EDGES),
            2 => self.below(1 << 20),
            _ => self.next(),
        }
    }

    /// A difference whose zigzag form is [`Rng::value`], or a small one.
    fn delta(&mut self) -> i64 {
        if self.below(2) == 0 {
            self.below(600) as i64 - 300
        } else {
            let z = self.value();
            ((z >> 1) as i64) ^ -((z & 1) as i64)
        }
    }
}

/// A stream of random events, each relative to the last so that differences hit every width.
struct Stream {
    rng: Rng,
    ts: u64,
    tid: u32,
    addr: u64,
    stacks: Vec<StackId>,
}

impl Stream {
    fn new(seed: u64) -> Self {
        Stream {
            rng: Rng(seed),
            ts: 0,
            tid: 1,
            addr: 0x5555_0000,
            stacks: vec![0, 1, 250, 251, u64::MAX],
        }
    }

    fn step(&mut self) -> (u64, u32, u64) {
        let r = &mut self.rng;
        self.ts = match r.below(8) {
            0 => r.pick(&[0, u64::MAX, u64::MAX / 1000 * 1000, 999]),
            1..=3 => {
                let us = (self.ts / 1000).wrapping_add(r.delta() as u64);
                (us.min(u64::MAX / 1000) * 1000).saturating_add(r.below(1000))
            }
            _ => self.ts.saturating_add(r.below(5000)),
        };
        self.tid = match r.below(6) {
            0 => r.pick(&[0, 1, u32::MAX, 125, 126]),
            1 => self.tid.wrapping_add(r.delta() as u32),
            2 => r.next() as u32,
            _ => self.tid,
        };
        self.addr = match r.below(4) {
            0 => r.value(),
            _ => self.addr.wrapping_add(r.delta() as u64),
        };
        (self.ts, self.tid, self.addr)
    }

    fn stack(&mut self) -> StackId {
        if self.rng.below(8) == 0 {
            let id = self.rng.value();
            self.stacks.push(id);
            id
        } else {
            let i = self.rng.below(self.stacks.len() as u64) as usize;
            self.stacks[i]
        }
    }

    fn event(&mut self) -> Event {
        let (ts, tid, addr) = self.step();
        match self.rng.below(20) {
            0..=8 => {
                let size = self.rng.value();
                let usable_size = match self.rng.below(3) {
                    0 => size,
                    1 => size.wrapping_add(self.rng.below(24)),
                    _ => self.rng.value(),
                };
                let kind = self.rng.pick(&[
                    AllocKind::Malloc,
                    AllocKind::Calloc,
                    AllocKind::Realloc,
                    AllocKind::Aligned,
                ]);
                let stack = self.stack();
                Event::Alloc(Alloc {
                    ts,
                    tid,
                    addr,
                    size,
                    usable_size,
                    stack,
                    kind,
                })
            }
            9..=16 => Event::Free(Free {
                ts,
                tid,
                addr,
                realloc: self.rng.below(3) == 0,
            }),
            _ => self.full(ts, tid, addr),
        }
    }

    /// One of the events without a compact form.
    fn full(&mut self, ts: u64, tid: u32, addr: u64) -> Event {
        let v = self.rng.value();
        let r = &mut self.rng;
        match r.below(14) {
            0 => Event::Hello(Hello {
                pid: tid,
                ppid: 1,
                forked_from: (v & 1 == 0).then_some(tid),
                exe: "/usr/bin/ünïcode".into(),
                argv: vec!["a".into(), "b".repeat((v % 300) as usize)],
                start_unix_ns: v,
                start_mono_ns: ts,
                sample_bytes: v >> 3,
                stack_depth: 64,
                shim_version: "0.1.0".into(),
            }),
            1 => Event::Module(Module {
                ts,
                path: "/lib/libc.so.6".into(),
                base: addr,
                segments: vec![Segment {
                    vaddr: v,
                    memsz: 4096,
                    file_offset: 0,
                    executable: true,
                }],
                build_id: vec![0xab; (v % 40) as usize],
            }),
            2 => Event::ModuleUnloaded { ts, base: v },
            3 => Event::Stack(StackDef {
                id: v,
                frames: (0..v % 70).map(|i| addr.wrapping_add(i * 251)).collect(),
            }),
            4 => Event::PythonCode(PythonCode {
                id: v,
                qualname: "C.m".into(),
                filename: "x.py".into(),
                first_line: v as u32,
                line_table: vec![1, 2, 251, 255],
            }),
            5 => Event::ReallocFailed { ts, tid, addr },
            6 => Event::Mmap(Mmap {
                ts,
                tid,
                addr,
                len: v,
                prot: -1,
                flags: v as i32,
                fd: -1,
                remap: v.is_multiple_of(2),
            }),
            7 => Event::Munmap(Munmap {
                ts,
                tid,
                addr,
                len: v,
                remap: v.is_multiple_of(3),
            }),
            8 => Event::Forked { ts, child_pid: tid },
            9 => Event::Stats(Stats {
                ts,
                rss_bytes: v,
                heap_bytes: v / 2,
                heap_in_use_bytes: v / 3,
                queue_wait_ns: 0,
            }),
            10 => Event::Lost { count: v },
            11 => Event::ScanRequest { ts },
            12 => Event::LeakScan(LeakScan {
                ts,
                duration_ns: v,
                classes: vec![LeakClass::Definitely, LeakClass::Reachable],
                root_bytes: 1,
                heap_bytes: 2,
            }),
            _ => Event::End(End {
                ts,
                reason: r.pick(&[
                    EndReason::Exit(-3),
                    EndReason::ExitCodeUnknown,
                    EndReason::Exec,
                ]),
                lost_events: v,
            }),
        }
    }

    fn batch(&mut self, len: usize) -> Vec<Event> {
        (0..len).map(|_| self.event()).collect()
    }
}

/// What a decoder gives back: compact events keep their time in whole microseconds.
fn as_decoded(events: &[Event]) -> Vec<Event> {
    events
        .iter()
        .map(|e| match *e {
            Event::Alloc(a) => Event::Alloc(Alloc {
                ts: a.ts / 1000 * 1000,
                ..a
            }),
            Event::Free(f) => Event::Free(Free {
                ts: f.ts / 1000 * 1000,
                ..f
            }),
            ref other => other.clone(),
        })
        .collect()
}

fn encode(enc: &mut Encoder, events: &[Event]) -> Vec<u8> {
    let mut out = Vec::new();
    enc.encode_batch(events, &mut out);
    out
}

/// Encodes `batches` as one stream both ways, checks the bytes are the same
/// and that both decoders give the events back.
fn check_stream(batches: &[Vec<Event>]) {
    let (mut enc, mut reference) = (Encoder::default(), RefEncoder::default());
    let (mut dec, mut ref_dec) = (Decoder::default(), RefDecoder::default());
    for (i, events) in batches.iter().enumerate() {
        let bytes = encode(&mut enc, events);
        let expected = reference.encode_batch(events);
        assert!(
            bytes == expected,
            "batch {i} of {} events differs",
            events.len()
        );
        let back = dec.decode_batch(&bytes).unwrap();
        assert!(back == as_decoded(events), "batch {i} decodes differently");
        assert!(ref_dec.decode_batch(&bytes).unwrap() == back);
    }
}

#[test]
fn random_streams_have_bincodes_bytes_and_round_trip() {
    for seed in 0..200 {
        let mut s = Stream::new(seed);
        let batches: Vec<_> = (0..8)
            .map(|_| {
                let len = s.rng.pick(&[0, 1, 2, 249, 250, 251, 300]) as usize;
                let len = if seed % 3 == 0 {
                    s.rng.below(700) as usize
                } else {
                    len
                };
                s.batch(len)
            })
            .collect();
        check_stream(&batches);
    }
}

/// The element count is written before the body, and `NewStack`s can widen it.
#[test]
fn counts_and_stack_indices_at_varint_widths() {
    let mut s = Stream::new(7);
    // 0xffff events and a new stack: a count of 0x1_0000; 0x1_0001 new stacks: index 0x1_0000.
    let cases = [249usize, 250, 251]
        .into_iter()
        .flat_map(|len| [0, 1, 2, len].map(|new| (len, new)))
        .chain([(0xffff, 1), (0x1_0001, 0x1_0001)]);
    for (len, new) in cases {
        let batch: Vec<Event> = (0..len)
            .map(|i| {
                let (ts, tid, addr) = s.step();
                Event::Alloc(Alloc {
                    ts,
                    tid,
                    addr,
                    size: 8,
                    usable_size: 8,
                    stack: if i < new { 1000 + i as u64 } else { 7 },
                    kind: AllocKind::Malloc,
                })
            })
            .collect();
        // Two batches: the second one uses indices the first gave out.
        check_stream(&[batch.clone(), batch]);
    }
}

#[test]
fn frames_from_the_public_api_are_what_the_old_path_read() {
    let mut s = Stream::new(99);
    let batches: Vec<_> = (0..5).map(|_| s.batch(400)).collect();
    let mut w = crate::FrameWriter::new(Vec::new()).unwrap();
    let mut expected = crate::framing::stream_header().to_vec();
    let mut reference = RefEncoder::default();
    for b in &batches {
        w.write_batch(b).unwrap();
        let payload = reference.encode_batch(b);
        expected.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        expected.extend_from_slice(&payload);
    }
    assert!(w.into_inner().unwrap() == expected);
    let mut r = crate::FrameReader::new(&expected[..]).unwrap();
    for b in &batches {
        assert!(r.next_batch().unwrap().unwrap() == as_decoded(b));
    }
    assert!(r.next_batch().unwrap().is_none());
}

/// A first batch with every kind of element in it.
fn every_kind() -> Vec<u8> {
    let mut s = Stream::new(3);
    let mut events = s.batch(20);
    for kind in [
        AllocKind::Malloc,
        AllocKind::Calloc,
        AllocKind::Realloc,
        AllocKind::Aligned,
    ] {
        let (ts, tid, addr) = s.step();
        events.push(Event::Alloc(Alloc {
            ts,
            tid,
            addr,
            size: 300,
            usable_size: 70_000,
            stack: 0x1_0000_0000,
            kind,
        }));
    }
    for realloc in [false, true] {
        let (ts, tid, addr) = s.step();
        events.push(Event::Free(Free {
            ts,
            tid,
            addr,
            realloc,
        }));
    }
    for _ in 0..14 {
        let (ts, tid, addr) = s.step();
        events.push(s.full(ts, tid, addr));
    }
    encode(&mut Encoder::default(), &events)
}

/// Decodes `payload` as a first batch both ways; they must agree (and not panic).
fn decode_both(payload: &[u8]) -> Option<Vec<Event>> {
    let ours = Decoder::default().decode_batch(payload).ok();
    let theirs = RefDecoder::default().decode_batch(payload).ok();
    assert!(ours == theirs, "decoders disagree on {payload:?}");
    ours
}

#[test]
fn every_truncation_is_an_error() {
    let payload = every_kind();
    assert!(decode_both(&payload).is_some());
    for cut in 0..payload.len() {
        assert!(
            Decoder::default().decode_batch(&payload[..cut]).is_err(),
            "cut at {cut}"
        );
    }
}

/// Every byte replaced by values that matter to varints and tags, then every
/// byte removed and a byte inserted everywhere: the hand-coded decoder
/// accepts exactly what bincode accepted, and gives the same events.
#[test]
fn corrupt_batches_are_refused_as_bincode_refused_them() {
    let payload = every_kind();
    let mut refused = 0;
    for i in 0..payload.len() {
        for v in [
            0u8, 1, 2, 5, 6, 7, 8, 0x7f, 0x80, 250, 251, 252, 253, 254, 255,
        ] {
            let mut c = payload.clone();
            c[i] = v;
            refused += usize::from(decode_both(&c).is_none());
            c[i] = payload[i] ^ 0x10;
            decode_both(&c);
        }
        let mut c = payload.clone();
        c.remove(i);
        decode_both(&c);
        c.insert(i, payload[i]);
        c.insert(i, 0xfe);
        decode_both(&c);
    }
    assert!(
        refused > payload.len() * 3,
        "only {refused} corruptions refused"
    );
}

#[test]
fn specific_corruptions_are_errors() {
    let err = |bytes: &[u8]| Decoder::default().decode_batch(bytes).unwrap_err();
    assert!(matches!(
        err(&[]),
        WireError::Varint(VarintError::Truncated)
    ));
    assert!(matches!(err(&[1, 8]), WireError::Tag(8)));
    assert!(matches!(err(&[1, 251, 8, 0]), WireError::Tag(8)));
    // A tag is a u32: the u64 marker is refused.
    assert!(matches!(
        err(&[1, 253, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        WireError::Varint(VarintError::BadMarker(253))
    ));
    assert!(matches!(
        err(&[1, 2, 0, 0, 0, 1, 0, 0]),
        WireError::UndeclaredStack(0)
    ));
    assert!(matches!(
        err(&[1, 6, 252, 1, 2]),
        WireError::Varint(VarintError::Truncated)
    ));
    assert!(matches!(
        err(&[1, 6, 0, 0, 254]),
        WireError::Varint(VarintError::BadMarker(254))
    ));
    let mut trailing = every_kind();
    trailing.push(0);
    assert!(matches!(err(&trailing), WireError::Trailing(1)));
    // A count larger than the elements present, by one or by far: no huge allocation.
    let mut longer = every_kind();
    longer[0] += 1;
    assert!(matches!(
        err(&longer),
        WireError::Varint(VarintError::Truncated)
    ));
    let mut huge = vec![253, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    huge.extend([6, 0, 0, 0].repeat(1000));
    assert!(matches!(err(&huge), WireError::TooMany(u64::MAX)));
    // Over the element limit with every element present: refused before decoding.
    let over = MAX_BATCH_ELEMENTS + 1;
    let mut many = vec![252];
    many.extend((over as u32).to_le_bytes());
    many.extend([6, 0, 0, 0].repeat(over as usize));
    assert!(matches!(err(&many), WireError::TooMany(n) if n == over));
    // At the limit, accepted.
    let mut most = vec![252];
    most.extend((MAX_BATCH_ELEMENTS as u32).to_le_bytes());
    most.extend([6, 0, 0, 0].repeat(MAX_BATCH_ELEMENTS as usize));
    assert_eq!(
        Decoder::default().decode_batch(&most).unwrap().len() as u64,
        MAX_BATCH_ELEMENTS
    );
    assert!(matches!(err(&[1, 0, 99]), WireError::Full(_)));
    // Wider forms than needed are accepted, as bincode accepts them.
    assert_eq!(
        decode_both(&[251, 1, 0, 251, 6, 0, 0, 0, 0]).unwrap().len(),
        1
    );
}

// The tests below predate the hand-coded batches and check the differences.

fn alloc(ts: u64, tid: u32, addr: u64, stack: StackId) -> Event {
    Event::Alloc(Alloc {
        ts,
        tid,
        addr,
        size: 40,
        usable_size: 40 + 8,
        stack,
        kind: AllocKind::Realloc,
    })
}

fn free(ts: u64, tid: u32, addr: u64) -> Event {
    Event::Free(Free {
        ts,
        tid,
        addr,
        realloc: true,
    })
}

/// The elements of a batch, through the serde form.
fn elements(payload: &[u8]) -> Vec<Wire> {
    bincode::serde::decode_from_slice(payload, config())
        .unwrap()
        .0
}

#[test]
fn differences_survive_threads_going_back_in_time_and_address() {
    let events = vec![
        alloc(5_000_000, 900, 0x7f00_0000_1000, 77),
        alloc(4_000_000, 12, 0x5500_0000_0010, u64::MAX),
        free(4_000_000, 12, 0x7f00_0000_1000),
        alloc(9_000_000, 900, 0x10, 77),
    ];
    let mut enc = Encoder::default();
    let mut dec = Decoder::default();
    let payload = encode(&mut enc, &events);
    let wire = elements(&payload);
    assert_eq!(
        wire.iter()
            .filter(|w| matches!(w, Wire::NewStack(_)))
            .count(),
        2
    );
    assert_eq!(dec.decode_batch(&payload).unwrap(), events);
    // State carries over to the next batch: the known stack needs no declaration.
    let more = vec![alloc(9_001_000, 900, 0x20, 77)];
    let payload = encode(&mut enc, &more);
    assert_eq!(elements(&payload).len(), 1);
    assert_eq!(dec.decode_batch(&payload).unwrap(), more);
}

#[test]
fn timestamps_travel_in_microseconds() {
    let mut enc = Encoder::default();
    let mut dec = Decoder::default();
    let back = dec
        .decode_batch(&encode(&mut enc, &[free(1_234_567, 1, 8)]))
        .unwrap();
    assert_eq!(back, vec![free(1_234_000, 1, 8)]);
}

#[test]
fn an_undeclared_stack_index_is_an_error() {
    let c = CompactAlloc {
        dt_us: 0,
        dtid: 0,
        daddr: 0,
        size: 1,
        slack: 0,
        stack: 3,
    };
    let payload = bincode::serde::encode_to_vec(vec![Wire::Malloc(c)], config()).unwrap();
    assert!(matches!(
        Decoder::default().decode_batch(&payload),
        Err(WireError::UndeclaredStack(3))
    ));
}
