//! `--group function|file|module`: sites summed by the function, source file
//! or module they are attributed to (the first frame outside the C/C++
//! runtime and the allocation wrappers, see [`super::attribution`]), so that
//! the same allocation reached by many paths adds up.

use std::collections::HashMap;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use super::attribution::{attributed_frame, base_name};
use crate::report::{Frame, Usage};

/// Key of groups whose stack never arrived.
const NO_STACK: &str = "(stack not received)";

/// What sites are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// The attributed function (and its module).
    Function,
    /// The attributed frame's source file (its module when it has no line information).
    File,
    /// The attributed frame's module.
    Module,
}

impl GroupBy {
    /// The plural shown in text (`functions`, `files`, `modules`).
    pub fn plural(self) -> &'static str {
        match self {
            GroupBy::Function => "functions",
            GroupBy::File => "source files",
            GroupBy::Module => "modules",
        }
    }
}

/// Sites summed under one key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// The function name, source file or module path.
    pub key: String,
    /// For function groups, the function's module (functions of the same
    /// name in different modules are different groups).
    #[serde(default)]
    pub module: Option<String>,
    /// Allocations.
    pub alloc_calls: u64,
    /// Bytes requested.
    pub bytes_allocated: u64,
    /// Bytes live now (at exit once ended).
    pub live_bytes: u64,
    /// Blocks live now.
    pub live_blocks: u64,
    /// Live bytes at the moment of the process peak.
    pub peak_bytes: u64,
    /// Distinct sites (stacks) in the group.
    pub sites: u64,
}

/// The key of a site's group: its attributed frame's function, file or module.
pub fn group_key(by: GroupBy, frames: &[Frame]) -> (String, Option<String>) {
    let Some(f) = attributed_frame(frames) else {
        return (NO_STACK.into(), None);
    };
    let module = || f.module.clone().unwrap_or_else(|| "??".into());
    match by {
        GroupBy::Function => (f.function.clone(), f.module.clone()),
        GroupBy::File => match &f.file {
            Some(file) => (file.clone(), None),
            None => (format!("[{}]", base_name(&module())), None),
        },
        GroupBy::Module => (module(), None),
    }
}

/// Sums sites into groups.
#[derive(Debug)]
pub struct Grouper {
    by: GroupBy,
    /// Figures summed per (key, module).
    groups: HashMap<(String, Option<String>), Usage>,
}

impl Grouper {
    /// An empty grouping by `by`.
    pub fn new(by: GroupBy) -> Self {
        Grouper {
            by,
            groups: HashMap::new(),
        }
    }

    /// Adds one site (its symbolized frames and its figures).
    pub fn add(&mut self, frames: &[Frame], usage: &Usage) {
        self.groups
            .entry(group_key(self.by, frames))
            .or_default()
            .add(usage);
    }

    /// The `top` groups: most live bytes first, then most bytes allocated.
    pub fn finish(self, top: usize) -> Vec<Group> {
        let mut groups: Vec<Group> = self
            .groups
            .into_iter()
            .map(|((key, module), u)| Group {
                key,
                module,
                alloc_calls: u.alloc_calls,
                bytes_allocated: u.bytes_allocated,
                live_bytes: u.live_bytes,
                live_blocks: u.live_blocks,
                peak_bytes: u.peak_bytes,
                sites: u.sites,
            })
            .collect();
        groups.sort_by(|a, b| {
            (b.live_bytes, b.bytes_allocated, b.alloc_calls)
                .cmp(&(a.live_bytes, a.bytes_allocated, a.alloc_calls))
                .then_with(|| (&a.key, &a.module).cmp(&(&b.key, &b.module)))
        });
        groups.truncate(top);
        groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, file: Option<&str>, module: &str) -> Frame {
        Frame {
            function: function.into(),
            file: file.map(Into::into),
            line: Some(1),
            module: Some(module.into()),
            address: "0x1".into(),
        }
    }

    fn usage(bytes: u64) -> Usage {
        Usage {
            name: String::new(),
            sites: 1,
            alloc_calls: 1,
            bytes_allocated: bytes,
            live_bytes: 0,
            live_blocks: 0,
            peak_bytes: 0,
        }
    }

    #[test]
    fn paths_to_the_same_function_add_up() {
        let libc = "/usr/lib/x86_64-linux-gnu/libc.so.6";
        let a = [
            frame("__GI___strdup", Some("strdup.c"), libc),
            frame("remember", Some("/app/a.c"), "/app/bin"),
            frame("handle", Some("/app/a.c"), "/app/bin"),
        ];
        let b = [
            frame("remember", Some("/app/a.c"), "/app/bin"),
            frame("main", Some("/app/b.c"), "/app/bin"),
        ];
        let c = [frame("main", None, "/app/bin")];
        let mut g = Grouper::new(GroupBy::Function);
        for (frames, bytes) in [(&a[..], 10), (&b[..], 20), (&c[..], 5), (&[][..], 1)] {
            g.add(frames, &usage(bytes));
        }
        let groups = g.finish(10);
        assert_eq!(groups[0].key, "remember");
        assert_eq!(groups[0].bytes_allocated, 30);
        assert_eq!(groups[0].sites, 2);
        assert_eq!(groups[0].module.as_deref(), Some("/app/bin"));
        assert_eq!(groups[2].key, NO_STACK);

        let mut g = Grouper::new(GroupBy::File);
        g.add(&a, &usage(10));
        g.add(&c, &usage(5));
        let groups = g.finish(1);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].key, "/app/a.c");
        assert_eq!(group_key(GroupBy::File, &c).0, "[bin]");
        assert_eq!(group_key(GroupBy::Module, &a).0, "/app/bin");
    }
}
