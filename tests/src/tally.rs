//! The programs' own tally lines (see `tests/programs/tally.h`).

use serde_json::Value;

/// One `{"tally":1,...}` line: what a process says it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    pub program: String,
    pub pid: i64,
    pub ppid: i64,
    pub blocks_allocated: i64,
    pub blocks_freed: i64,
    pub bytes_allocated: i64,
    pub live_bytes: i64,
    pub live_blocks: i64,
    /// -1 when the program does not track it (stress).
    pub peak_bytes: i64,
    /// Counts inherited from before a fork (0 except in a fork child).
    pub base_blocks_allocated: i64,
    pub base_blocks_freed: i64,
    pub base_bytes_allocated: i64,
}

impl Tally {
    pub fn parse_line(line: &str) -> Option<Tally> {
        let line = line.trim();
        if !line.starts_with("{\"tally\"") {
            return None;
        }
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("bad tally line {line:?}: {e}"));
        let i = |k: &str| {
            v[k].as_i64()
                .unwrap_or_else(|| panic!("tally line lacks {k}: {line}"))
        };
        Some(Tally {
            program: v["program"].as_str().unwrap_or("").to_owned(),
            pid: i("pid"),
            ppid: i("ppid"),
            blocks_allocated: i("blocks_allocated"),
            blocks_freed: i("blocks_freed"),
            bytes_allocated: i("bytes_allocated"),
            live_bytes: i("live_bytes"),
            live_blocks: i("live_blocks"),
            peak_bytes: i("peak_bytes"),
            base_blocks_allocated: i("base_blocks_allocated"),
            base_blocks_freed: i("base_blocks_freed"),
            base_bytes_allocated: i("base_bytes_allocated"),
        })
    }

    /// Every tally line in a stream (e.g. a program's stderr).
    pub fn parse_all(text: &str) -> Vec<Tally> {
        text.lines().filter_map(Tally::parse_line).collect()
    }

    /// The only tally line of a stream for `program`; panics otherwise.
    pub fn only(text: &str, program: &str) -> Tally {
        let all: Vec<Tally> = Tally::parse_all(text)
            .into_iter()
            .filter(|t| t.program == program)
            .collect();
        assert_eq!(
            all.len(),
            1,
            "expected one tally line of {program}, got {all:?}; stream:\n{text}"
        );
        all.into_iter().next().unwrap()
    }
}
