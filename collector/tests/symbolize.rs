//! Symbolizing a real binary compiled at test time.

use std::path::Path;
use std::process::Command;

use memshim_collector::state::modules::ModuleMap;
use memshim_collector::symbolize::{SymbolCache, Symbolizer};
use memshim_proto::{Module, Segment};

const SOURCE: &str = r#"#include <stdlib.h>
int sink;
__attribute__((noinline)) int target_function(int x) {
    sink = x * 3;
    return sink + 1;
}
int main(void) { return target_function(2) == 7 ? 0 : 1; }
"#;

/// ELF address and size of a symbol, from `nm -S`.
fn symbol(binary: &Path, name: &str) -> (u64, u64) {
    let out = Command::new("nm")
        .arg("-S")
        .arg(binary)
        .output()
        .expect("nm runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.ends_with(&format!(" {name}")))
        .unwrap_or_else(|| panic!("{name} not in nm output:\n{text}"));
    let mut fields = line.split_whitespace();
    let addr = u64::from_str_radix(fields.next().unwrap(), 16).unwrap();
    let size = u64::from_str_radix(fields.next().unwrap(), 16).unwrap();
    (addr, size)
}

/// The GNU build-id, from `readelf -n`.
fn build_id(binary: &Path) -> Vec<u8> {
    let out = Command::new("readelf")
        .arg("-n")
        .arg(binary)
        .output()
        .expect("readelf runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .expect("gcc emits a build-id");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn module(path: &Path, base: u64, build_id: Vec<u8>) -> Module {
    Module {
        ts: 0,
        path: path.display().to_string(),
        base,
        segments: vec![Segment {
            vaddr: 0,
            memsz: 0x10_0000,
            file_offset: 0,
            executable: true,
        }],
        build_id,
    }
}

#[test]
fn symbolizes_a_function_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("prog.c");
    let bin = dir.path().join("prog");
    std::fs::write(&src, SOURCE).unwrap();
    let status = Command::new("gcc")
        .args(["-g", "-O0", "-Wl,--build-id", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .expect("gcc runs");
    assert!(status.success());
    let (addr, size) = symbol(&bin, "target_function");
    let base = 0x5555_0000_0000;
    let mut modules = ModuleMap::default();
    modules.load(module(&bin, base, build_id(&bin)));
    modules.load(module(
        Path::new("/opt/libmemshim.so"),
        0x7000_0000_0000,
        vec![],
    ));

    let cache = SymbolCache::default();
    let mut symbolizer = Symbolizer::new(&cache);
    // A "return address" inside target_function, past its prologue (line 4 or 5),
    // a frame in the shim (dropped), and one in unknown memory.
    let ret = base + addr + size / 2 + 1;
    let frames = symbolizer.stack(None, &modules, &[ret, 0x7000_0000_1000, 0x42]);
    assert_eq!(frames.len(), 2, "{frames:?}");
    let f = &frames[0];
    assert_eq!(f.function, "target_function");
    assert!(f.file.as_deref().unwrap().ends_with("prog.c"), "{f:?}");
    assert!(matches!(f.line, Some(4) | Some(5)), "{f:?}");
    assert_eq!(f.module.as_deref(), Some(bin.to_str().unwrap()));
    assert_eq!(f.address, format!("{ret:#x}"));
    assert_eq!(
        (frames[1].function.as_str(), frames[1].module.as_deref()),
        ("??", None)
    );
    // Cached: the same answer again.
    assert_eq!(symbolizer.stack(None, &modules, &[ret])[0], frames[0]);

    // A module whose build-id differs from the file on disk is not trusted.
    let mut changed = ModuleMap::default();
    changed.load(module(&bin, base, vec![1, 2, 3, 4]));
    let frames = Symbolizer::new(&cache).stack(None, &changed, &[ret]);
    assert_eq!(frames[0].function, "<path changed on disk since the run>");
}
