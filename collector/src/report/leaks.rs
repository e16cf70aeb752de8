//! Leak classes in the report: per process and per site, from the exit scan.

use std::collections::HashMap;

use memshim_proto::{LeakClass, StackId};

use super::{Amount, Leaks, SiteLeak};
use crate::leakcheck::suppressions::Kinds;
use crate::state::Session;

/// The process's leak summary and each site's share of it, when the exit
/// scan ran (`None` otherwise: a cut stream, a trace file, a running process).
pub fn classify(session: &Session) -> Option<(Leaks, HashMap<StackId, Leaks>)> {
    let scan = session.leaks();
    if !scan.done() {
        return None;
    }
    let mut total = Leaks::default();
    let mut per_site: HashMap<StackId, Leaks> = HashMap::new();
    for (addr, block) in session.heap().live().iter() {
        // A block allocated after the scan's snapshot was not classified.
        let Some(class) = scan.class_of(addr) else {
            continue;
        };
        for leaks in [&mut total, per_site.entry(block.stack).or_default()] {
            let amount = slot(leaks, class);
            amount.bytes += block.size;
            amount.blocks += 1;
        }
    }
    Some((total, per_site))
}

fn slot(leaks: &mut Leaks, class: LeakClass) -> &mut Amount {
    match class {
        LeakClass::Definitely => &mut leaks.definitely,
        LeakClass::Indirectly => &mut leaks.indirectly,
        LeakClass::Possibly => &mut leaks.possibly,
        LeakClass::Reachable => &mut leaks.reachable,
    }
}

/// A site's leak entry: its most severe class, with the amounts of each
/// (`"suppressed"` when a suppression silenced all its blocks).
pub fn site_leak(classes: &Leaks, suppressed_by: Option<&str>) -> Option<SiteLeak> {
    let (class, amount) = [
        ("definitely", classes.definitely),
        ("indirectly", classes.indirectly),
        ("possibly", classes.possibly),
        ("reachable", classes.reachable),
        ("suppressed", classes.suppressed),
    ]
    .into_iter()
    .find(|(_, a)| a.blocks > 0)?;
    Some(SiteLeak {
        class: class.into(),
        bytes: amount.bytes,
        blocks: amount.blocks,
        classes: Some(*classes),
        suppressed_by: suppressed_by.map(str::to_owned),
    })
}

/// Moves the classes of `kinds` from their slots in `leaks` to
/// `leaks.suppressed`; returns what moved.
pub fn suppress(leaks: &mut Leaks, kinds: Kinds) -> Amount {
    let mut moved = Amount::default();
    for (kind, amount) in [
        (Kinds::DEFINITELY, &mut leaks.definitely),
        (Kinds::INDIRECTLY, &mut leaks.indirectly),
        (Kinds::POSSIBLY, &mut leaks.possibly),
        (Kinds::REACHABLE, &mut leaks.reachable),
    ] {
        if kinds.contains(kind) {
            moved.bytes += amount.bytes;
            moved.blocks += amount.blocks;
            *amount = Amount::default();
        }
    }
    leaks.suppressed.bytes += moved.bytes;
    leaks.suppressed.blocks += moved.blocks;
    moved
}

/// Subtracts a site's classes (before suppression) and adds them back after.
pub fn replace(total: &mut Leaks, before: &Leaks, after: &Leaks) {
    let pairs = [
        (&mut total.definitely, before.definitely, after.definitely),
        (&mut total.indirectly, before.indirectly, after.indirectly),
        (&mut total.possibly, before.possibly, after.possibly),
        (&mut total.reachable, before.reachable, after.reachable),
        (&mut total.suppressed, before.suppressed, after.suppressed),
    ];
    for (t, b, a) in pairs {
        t.bytes = t.bytes.saturating_sub(b.bytes) + a.bytes;
        t.blocks = t.blocks.saturating_sub(b.blocks) + a.blocks;
    }
}
