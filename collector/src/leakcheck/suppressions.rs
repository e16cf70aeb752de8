//! Leak suppressions: a text file of stack patterns whose leaks are expected.
//!
//! ```text
//! # comments and blank lines are ignored; one suppression per line:
//! NAME = leak:KINDS | MATCHER | MATCHER …
//!
//! my-cache      = leak:definitely,indirectly | function:cache_init | module:libcache.so*
//! openssl-init  = leak:possibly | stack:CRYPTO_malloc [libcrypto*];...;OPENSSL_init_crypto
//! parser-arena  = stack:arena_grow [myapp];arena_new;parse_file
//! ```
//!
//! * `NAME`: letters, digits, `_ - . :`; shown in reports as the suppression that matched.
//! * `leak:KINDS` (optional, default `definitely,indirectly,possibly`): the
//!   leak classes it silences, comma-separated: `definitely`, `indirectly`,
//!   `possibly`, `reachable` (memcheck's `definite`, `indirect`, `possible`
//!   are accepted too), or `all`.
//! * `function:GLOB`: some frame of the allocation's stack has a matching function.
//! * `module:GLOB`: some frame's module (full path or file name) matches.
//! * `stack:FRAME;FRAME;…`: the stack, from the innermost frame (the caller of
//!   `malloc`), frame by frame; each `FRAME` is `FUNCTION_GLOB` or
//!   `FUNCTION_GLOB [MODULE_GLOB]`; `...` stands for any number of frames; the
//!   stack may go on after the last pattern.
//!
//! Every matcher of a line must match. Globs use `*` (any run of characters)
//! and `?` (one character). A site's blocks of the listed classes move to
//! `suppressed`; the first matching line wins (files in command-line order,
//! then the default set).

use serde::{Deserialize, Serialize};

use crate::analysis::attribution::{attributed_frame, base_name};
use crate::analysis::categories::glob;
use crate::report::{Frame, Leaks, SiteReport};

/// The built-in set, for what runtimes leave at exit on purpose.
pub const DEFAULT_SUPPRESSIONS: &str = include_str!("default.supp");

/// Name under which the built-in set is reported in errors.
pub const DEFAULT_SOURCE: &str = "<default suppressions>";

/// Frames written in a generated suppression.
pub const GENERATED_FRAMES: usize = 6;

/// The leak classes a suppression applies to, as a bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kinds(pub u8);

impl Kinds {
    /// Definitely lost.
    pub const DEFINITELY: Kinds = Kinds(1);
    /// Indirectly lost.
    pub const INDIRECTLY: Kinds = Kinds(2);
    /// Possibly lost.
    pub const POSSIBLY: Kinds = Kinds(4);
    /// Still reachable.
    pub const REACHABLE: Kinds = Kinds(8);
    /// The default: every class of lost memory, not reachable blocks.
    pub const LOST: Kinds = Kinds(7);

    /// Whether `other`'s classes are all in `self`.
    pub fn contains(self, other: Kinds) -> bool {
        self.0 & other.0 == other.0
    }

    /// Parses `definitely,possibly`, `all`, or memcheck's spellings.
    pub fn parse(text: &str) -> Result<Kinds, String> {
        let mut bits = 0;
        for word in text.split(',') {
            bits |= match word.trim() {
                "definitely" | "definite" => 1,
                "indirectly" | "indirect" => 2,
                "possibly" | "possible" => 4,
                "reachable" => 8,
                "all" | "*" => 15,
                other => {
                    return Err(format!(
                    "unknown leak kind `{other}` (definitely, indirectly, possibly, reachable, all)"
                ))
                }
            };
        }
        Ok(Kinds(bits))
    }

    /// `definitely,indirectly`, in class order.
    pub fn names(self) -> String {
        let names = ["definitely", "indirectly", "possibly", "reachable"];
        (0..4)
            .filter(|i| self.0 & (1 << i) != 0)
            .map(|i| names[i])
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The classes of `leaks` that hold blocks.
    pub fn of(leaks: &Leaks) -> Kinds {
        let mut bits = 0;
        for (i, a) in [
            leaks.definitely,
            leaks.indirectly,
            leaks.possibly,
            leaks.reachable,
        ]
        .iter()
        .enumerate()
        {
            if a.blocks > 0 {
                bits |= 1 << i;
            }
        }
        Kinds(bits)
    }
}

/// One frame pattern of a `stack:` matcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FramePattern {
    /// `...`: any number of frames.
    Any,
    /// A function glob and an optional module glob.
    Frame {
        /// Glob on the function name.
        function: String,
        /// Glob on the module's path or file name.
        module: Option<String>,
    },
}

/// One matcher of a suppression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Matcher {
    /// Some frame's function matches.
    Function(String),
    /// Some frame's module matches.
    Module(String),
    /// The stack, from the innermost frame, matches these patterns.
    Stack(Vec<FramePattern>),
}

/// One suppression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    /// Its name, reported when it matches.
    pub name: String,
    /// The classes it silences.
    pub kinds: Kinds,
    /// All must match.
    pub matchers: Vec<Matcher>,
    /// Where it was defined: `FILE:LINE`.
    pub origin: String,
}

/// An ordered set of suppressions: the first match wins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppressions {
    /// In priority order.
    pub list: Vec<Suppression>,
}

fn module_matches(pattern: &str, module: Option<&str>) -> bool {
    module.is_some_and(|path| glob(pattern, path) || glob(pattern, base_name(path)))
}

fn frame_matches(function: &str, module: Option<&str>, f: &Frame) -> bool {
    glob(function, &f.function) && module.is_none_or(|m| module_matches(m, f.module.as_deref()))
}

fn stack_matches(patterns: &[FramePattern], frames: &[Frame]) -> bool {
    match patterns.split_first() {
        None => true,
        Some((FramePattern::Any, rest)) => {
            (0..=frames.len()).any(|i| stack_matches(rest, &frames[i..]))
        }
        Some((FramePattern::Frame { function, module }, rest)) => {
            frames.split_first().is_some_and(|(f, more)| {
                frame_matches(function, module.as_deref(), f) && stack_matches(rest, more)
            })
        }
    }
}

impl Matcher {
    /// Whether this matcher accepts a site with these frames (innermost first).
    pub fn matches(&self, frames: &[Frame]) -> bool {
        match self {
            Matcher::Function(g) => frames.iter().any(|f| glob(g, &f.function)),
            Matcher::Module(g) => frames
                .iter()
                .any(|f| module_matches(g, f.module.as_deref())),
            Matcher::Stack(patterns) => !frames.is_empty() && stack_matches(patterns, frames),
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c))
}

fn parse_stack(text: &str) -> Result<Vec<FramePattern>, String> {
    let mut out = Vec::new();
    for part in text.split(';') {
        let part = part.trim();
        if part.is_empty() {
            return Err("empty frame in `stack:` (frames are separated by `;`)".into());
        }
        if part == "..." {
            out.push(FramePattern::Any);
            continue;
        }
        let (function, module) = match part.strip_suffix(']') {
            Some(head) => {
                let (f, m) = head
                    .rsplit_once('[')
                    .ok_or_else(|| format!("frame `{part}` ends in `]` without `[`"))?;
                let m = m.trim();
                if m.is_empty() {
                    return Err(format!("empty module glob in frame `{part}`"));
                }
                (f.trim(), Some(m.to_owned()))
            }
            None => (part, None),
        };
        if function.is_empty() {
            return Err(format!("empty function glob in frame `{part}`"));
        }
        out.push(FramePattern::Frame {
            function: function.to_owned(),
            module,
        });
    }
    Ok(out)
}

impl Suppressions {
    /// Parses the text of a suppressions file; `source` names it in errors,
    /// which read `SOURCE:LINE: what`.
    pub fn parse(text: &str, source: &str) -> Result<Suppressions, String> {
        let mut list = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let origin = format!("{source}:{}", i + 1);
            let err = |what: &str| format!("{origin}: {what}");
            let (name, rest) = line.split_once('=').ok_or_else(|| {
                err("expected `NAME = leak:KINDS | function:GLOB | module:GLOB | stack:FRAME;FRAME…`")
            })?;
            let name = name.trim();
            if !valid_name(name) {
                return Err(err(&format!(
                    "bad suppression name `{name}` (letters, digits, `_ - . :`)"
                )));
            }
            let mut kinds = None;
            let mut matchers = Vec::new();
            for part in rest.split('|') {
                let part = part.trim();
                let (field, value) = part.split_once(':').ok_or_else(|| {
                    err(&format!(
                        "`{part}`: expected leak:KINDS, function:GLOB, module:GLOB or stack:FRAMES"
                    ))
                })?;
                let value = value.trim();
                if value.is_empty() {
                    return Err(err(&format!("empty value after `{}:`", field.trim())));
                }
                match field.trim() {
                    "leak" => {
                        if kinds.is_some() {
                            return Err(err("`leak:` given twice"));
                        }
                        kinds = Some(Kinds::parse(value).map_err(|e| err(&e))?);
                    }
                    "function" | "fun" => matchers.push(Matcher::Function(value.to_owned())),
                    "module" | "obj" => matchers.push(Matcher::Module(value.to_owned())),
                    "stack" => {
                        matchers.push(Matcher::Stack(parse_stack(value).map_err(|e| err(&e))?))
                    }
                    other => return Err(err(&format!("unknown matcher `{other}:`"))),
                }
            }
            if matchers.is_empty() {
                return Err(err(
                    "a suppression needs at least one function:, module: or stack: matcher",
                ));
            }
            list.push(Suppression {
                name: name.to_owned(),
                kinds: kinds.unwrap_or(Kinds::LOST),
                matchers,
                origin,
            });
        }
        Ok(Suppressions { list })
    }

    /// Reads and parses a suppressions file.
    pub fn load(path: &std::path::Path) -> Result<Suppressions, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the suppressions file {}: {e}", path.display()))?;
        Suppressions::parse(&text, &path.display().to_string())
    }

    /// The built-in set.
    pub fn defaults() -> Suppressions {
        // The embedded text is checked by a unit test; never fails in practice.
        Suppressions::parse(DEFAULT_SUPPRESSIONS, DEFAULT_SOURCE).unwrap_or_default()
    }

    /// The files given on the command line, in order, then (unless disabled) the defaults.
    pub fn assemble(
        files: &[std::path::PathBuf],
        with_defaults: bool,
    ) -> Result<Option<Suppressions>, String> {
        let mut all = Suppressions::default();
        for f in files {
            all.list.extend(Suppressions::load(f)?.list);
        }
        if with_defaults {
            all.list.extend(Suppressions::defaults().list);
        }
        Ok((!all.list.is_empty()).then_some(all))
    }

    /// Every class some suppression applies to.
    pub fn kinds(&self) -> Kinds {
        Kinds(self.list.iter().fold(0, |k, s| k | s.kinds.0))
    }

    /// The first suppression that matches a site with these frames and holds
    /// blocks of the classes `present`.
    pub fn find(&self, frames: &[Frame], present: Kinds) -> Option<&Suppression> {
        self.list
            .iter()
            .filter(|s| s.kinds.0 & present.0 != 0)
            .find(|s| s.matchers.iter().all(|m| m.matches(frames)))
    }
}

/// A glob that matches `text` literally (the characters the suppression
/// syntax or globs give a meaning to become `?`).
fn literal(text: &str) -> String {
    text.chars()
        .map(|c| if "*?|;[]".contains(c) { '?' } else { c })
        .collect()
}

/// A ready-to-paste suppression for a leaking site: its unsuppressed lost
/// classes and its innermost frames.
pub fn generate(site: &SiteReport) -> Option<String> {
    let leak = site.leak.as_ref()?;
    let classes = leak.classes?;
    let kinds = Kinds(Kinds::of(&classes).0 & Kinds::LOST.0);
    if kinds.0 == 0 || site.frames.is_empty() {
        return None;
    }
    let named: Vec<Frame> = site
        .frames
        .iter()
        .filter(|f| f.function != "??")
        .cloned()
        .collect();
    let stem: String = attributed_frame(&named)
        .map_or("site", |f| f.function.as_str())
        .chars()
        .take_while(|&c| c != '(' && c != '<')
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let stem = stem.trim_matches('-');
    let stem = if stem.is_empty() { "site" } else { stem };
    let frames: Vec<String> = site
        .frames
        .iter()
        .take(GENERATED_FRAMES)
        .map(|f| {
            let function = if f.function == "??" {
                "*".to_owned()
            } else {
                literal(&f.function)
            };
            match &f.module {
                Some(m) => format!("{function} [{}]", literal(base_name(m))),
                None => function,
            }
        })
        .collect();
    Some(format!(
        "leak-{stem}-{} = leak:{} | stack:{}",
        site.id,
        kinds.names(),
        frames.join(";")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, module: &str) -> Frame {
        Frame::for_test(function, module)
    }

    #[test]
    fn the_default_set_parses() {
        let d = Suppressions::parse(DEFAULT_SUPPRESSIONS, DEFAULT_SOURCE).unwrap();
        assert!(d.list.len() >= 4);
        assert!(d.list.iter().all(|s| !s.kinds.contains(Kinds::REACHABLE)));
    }

    #[test]
    fn stacks_match_from_the_innermost_frame() {
        let s = Suppressions::parse(
            "a = leak:definitely | stack:_PyObject_*alloc [*python3*]\n\
             b = leak:possibly,definite | stack:malloc;...;main [app]\n",
            "t",
        )
        .unwrap();
        let py = [
            frame("_PyObject_Malloc", "/x/libpython3.11.so.1.0"),
            frame("new_keys_object", "/x/libpython3.11.so.1.0"),
        ];
        assert_eq!(s.find(&py, Kinds::DEFINITELY).unwrap().name, "a");
        assert!(s.find(&py, Kinds::POSSIBLY).is_none());
        let ffi = [
            frame("ffi_call_unix64", "/x/libffi.so.8"),
            frame("_PyObject_Malloc", "/x/libpython3.11.so.1.0"),
        ];
        assert!(s.find(&ffi, Kinds::DEFINITELY).is_none());
        let app = [
            frame("malloc", "/lib/libc.so.6"),
            frame("f", "/bin/app"),
            frame("g", "/bin/app"),
            frame("main", "/bin/app"),
            frame("__libc_start_main", "/lib/libc.so.6"),
        ];
        assert_eq!(s.find(&app, Kinds::POSSIBLY).unwrap().name, "b");
        let other = [
            frame("malloc", "/lib/libc.so.6"),
            frame("main", "/bin/other"),
        ];
        assert!(s.find(&other, Kinds::POSSIBLY).is_none());
    }

    #[test]
    fn all_matchers_must_match() {
        let s = Suppressions::parse("x = function:cache_* | module:libcache.so*", "t").unwrap();
        assert_eq!(s.list[0].kinds, Kinds::LOST);
        let hit = [frame("cache_put", "/usr/lib/libcache.so.1")];
        let miss = [frame("cache_put", "/usr/lib/libother.so")];
        assert!(s.find(&hit, Kinds::INDIRECTLY).is_some());
        assert!(s.find(&miss, Kinds::INDIRECTLY).is_none());
        assert!(s.find(&hit, Kinds::REACHABLE).is_none());
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let e = Suppressions::parse("# c\n\nbad line", "f.supp").unwrap_err();
        assert!(e.starts_with("f.supp:3: "), "{e}");
        let e = Suppressions::parse("x = leak:sometimes | function:a", "f").unwrap_err();
        assert!(e.starts_with("f:1: ") && e.contains("sometimes"), "{e}");
        assert!(Suppressions::parse("x = leak:definitely", "f").is_err());
        assert!(Suppressions::parse("x y = function:a", "f").is_err());
        assert!(Suppressions::parse("x = stack:a;;b", "f").is_err());
        assert!(Suppressions::parse("x = stack:a [", "f").is_ok());
        assert!(Suppressions::parse("x = stack:a []", "f").is_err());
        assert!(Suppressions::parse("x = symbol:a", "f").is_err());
        assert!(Suppressions::parse("x = function:", "f").is_err());
    }

    #[test]
    fn generated_suppressions_match_their_site() {
        use crate::report::{Amount, Histogram, SiteLeak};
        let frames = vec![
            frame("operator new[](unsigned long)", "/lib/libstdc++.so.6"),
            frame("make<int*>|x", "/bin/app"),
            frame("??", "/bin/app"),
            frame("main", "/bin/app"),
        ];
        let classes = Leaks {
            definitely: Amount {
                bytes: 8,
                blocks: 1,
            },
            reachable: Amount {
                bytes: 8,
                blocks: 1,
            },
            ..Leaks::default()
        };
        let site = SiteReport {
            id: "1f".into(),
            frames: frames.clone(),
            alloc_calls: 2,
            bytes_allocated: 16,
            live_bytes: 16,
            live_blocks: 2,
            peak_bytes: 16,
            leak: Some(SiteLeak {
                class: "definitely".into(),
                bytes: 8,
                blocks: 1,
                classes: Some(classes),
                suppressed_by: None,
            }),
            size_histogram: Histogram::default(),
            lifetime_histogram: Histogram::default(),
            usable_bytes: 0,
            internal_fragmentation_bytes: 0,
            freed_blocks: 0,
            temporary_allocs: 0,
            short_lived_allocs: 0,
            allocs_per_second: 0.0,
            realloc_grows: 0,
            max_realloc_chain: 0,
            module: None,
            category: None,
            estimate: None,
        };
        let text = generate(&site).unwrap();
        assert!(
            text.starts_with("leak-make-1f = leak:definitely | stack:"),
            "{text}"
        );
        let parsed = Suppressions::parse(&text, "gen").unwrap();
        assert!(parsed.find(&frames, Kinds::DEFINITELY).is_some(), "{text}");
        let mut other = frames.clone();
        other[3].function = "not_main".into();
        assert!(parsed.find(&other, Kinds::DEFINITELY).is_none());
    }
}
