//! Turning return addresses into functions, files and lines, from the files on disk.
//!
//! Results are cached per (module path, build-id, ELF address) in a
//! [`SymbolCache`] shared by every report; the DWARF parsing itself happens in
//! a [`Symbolizer`] that lives for one report (blazesym's is not `Send`).
//!
//! Addresses outside every module are looked up in the process's
//! `/tmp/perf-PID.map` ([`perfmap`]), read once per pid (again when it grew).
//! Python frames are named from the code objects the process described
//! ([`python`]).

pub mod perfmap;
pub mod python;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use blazesym::symbolize::source::{Elf, Source};
use blazesym::symbolize::{CodeInfo, Input, Symbolized};
use memshim_proto::{Module, PythonFrame};

use crate::report::Frame;
use crate::state::modules::ModuleMap;
use perfmap::PerfMap;

/// File name of the shim, whose frames never belong in a report.
const SHIM_FILE_NAME: &str = "libmemshim.so";
/// Function name shown for frames whose module no longer matches the run.
const CHANGED_ON_DISK: &str = "<path changed on disk since the run>";
/// Function name shown for frames that cannot be symbolized.
const UNKNOWN_FUNCTION: &str = "??";
/// Module shown for frames named by a perf map.
pub const JIT_MODULE: &str = "[jit]";

/// What symbolizing one address inside a module gave (module-independent part).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Located {
    function: String,
    file: Option<String>,
    line: Option<u32>,
}

/// Whether a module's file on disk can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileStatus {
    Usable,
    Changed,
    Unreadable,
}

type FileKey = (String, Vec<u8>);

#[derive(Debug, Default)]
struct CacheInner {
    files: HashMap<FileKey, FileStatus>,
    addresses: HashMap<(FileKey, u64), Arc<[Located]>>,
    /// Perf maps by pid (`None`: no readable map).
    perf_maps: HashMap<u32, Option<Arc<PerfMap>>>,
}

/// Symbolization results shared across reports and threads.
#[derive(Debug, Default)]
pub struct SymbolCache {
    inner: Mutex<CacheInner>,
}

impl SymbolCache {
    /// The cache's contents. A panic elsewhere while it was held leaves the
    /// maps consistent (each update is one insert), so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Symbolizes stacks for one report.
pub struct Symbolizer<'c> {
    cache: &'c SymbolCache,
    blaze: Option<blazesym::symbolize::Symbolizer>,
}

impl<'c> Symbolizer<'c> {
    /// A symbolizer that reads and fills `cache`.
    pub fn new(cache: &'c SymbolCache) -> Self {
        Symbolizer { cache, blaze: None }
    }

    /// The frames of a stack of process `pid`, innermost first: one per
    /// function, inlined ones included; the shim's own frames are dropped.
    /// Addresses outside every module are named from `pid`'s perf map, if any.
    pub fn stack(
        &mut self,
        pid: Option<u32>,
        modules: &ModuleMap,
        addresses: &[u64],
    ) -> Vec<Frame> {
        let mut frames = Vec::with_capacity(addresses.len());
        for &addr in addresses {
            if let Some(py) = PythonFrame::decode(addr) {
                frames.push(python::frame(py, modules.python_code(py.code)));
                continue;
            }
            // A return address points after the call: look up the call itself.
            let pc = addr.saturating_sub(1);
            let address = format!("{addr:#x}");
            let Some(module) = modules.find(pc) else {
                frames.push(match pid.and_then(|pid| self.jit(pid, pc)) {
                    Some(name) => jit_frame(name, address),
                    None => unknown(address, None),
                });
                continue;
            };
            if module.path.is_empty() {
                frames.push(unknown(address, Some("[vdso]".into())));
                continue;
            }
            if Path::new(&module.path)
                .file_name()
                .is_some_and(|n| n == SHIM_FILE_NAME)
            {
                continue;
            }
            let module_name = Some(module.path.clone());
            for located in self.locate(module, pc.wrapping_sub(module.base)).iter() {
                frames.push(Frame {
                    function: located.function.clone(),
                    file: located.file.clone(),
                    line: located.line,
                    module: module_name.clone(),
                    address: address.clone(),
                });
            }
        }
        frames
    }

    /// The perf map name of `pc` in process `pid`: the map is read on first
    /// use, and read again when an address is missing and the file grew.
    fn jit(&mut self, pid: u32, pc: u64) -> Option<String> {
        let known = self.cache.lock().perf_maps.get(&pid).cloned();
        if let Some(Some(map)) = &known {
            if let Some(name) = map.find(pc) {
                return Some(name.to_owned());
            }
        }
        let path = perfmap::path_of(pid);
        let grown = match &known {
            None => true,
            Some(None) => path.exists(),
            // Grown, or replaced by a new process of the same pid.
            Some(Some(map)) => std::fs::metadata(&path).is_ok_and(|m| m.len() != map.read_bytes()),
        };
        if !grown {
            return None;
        }
        let map = PerfMap::read(&path).map(Arc::new);
        let name = map.as_ref().and_then(|m| m.find(pc)).map(str::to_owned);
        self.cache.lock().perf_maps.insert(pid, map);
        name
    }

    fn locate(&mut self, module: &Module, vaddr: u64) -> Arc<[Located]> {
        let file: FileKey = (module.path.clone(), module.build_id.clone());
        let key = (file, vaddr);
        if let Some(hit) = self.cached(&key) {
            return hit;
        }
        let located: Arc<[Located]> = match self.file_status(&key.0) {
            FileStatus::Changed => Arc::new([named(CHANGED_ON_DISK)]),
            FileStatus::Unreadable => Arc::new([named(UNKNOWN_FUNCTION)]),
            FileStatus::Usable => self.resolve(&module.path, vaddr).into(),
        };
        self.cache
            .lock()
            .addresses
            .insert(key, Arc::clone(&located));
        located
    }

    fn cached(&self, key: &(FileKey, u64)) -> Option<Arc<[Located]>> {
        self.cache.lock().addresses.get(key).cloned()
    }

    fn file_status(&self, file: &FileKey) -> FileStatus {
        let known = self.cache.lock().files.get(file).copied();
        if let Some(status) = known {
            return status;
        }
        let (path, expected) = file;
        let status = match blazesym::helper::read_elf_build_id(Path::new(path)) {
            Err(_) => FileStatus::Unreadable,
            Ok(on_disk) => {
                let on_disk = on_disk.map(|b| b.into_owned()).unwrap_or_default();
                if expected.is_empty() || on_disk == *expected {
                    FileStatus::Usable
                } else {
                    FileStatus::Changed
                }
            }
        };
        self.cache.lock().files.insert(file.clone(), status);
        status
    }

    fn resolve(&mut self, path: &str, vaddr: u64) -> Vec<Located> {
        let blaze = self.blaze.get_or_insert_with(|| {
            blazesym::symbolize::Symbolizer::builder()
                .enable_code_info(true)
                .enable_inlined_fns(true)
                .enable_demangling(true)
                .build()
        });
        let source = Source::Elf(Elf::new(path));
        let sym = match blaze.symbolize_single(&source, Input::VirtOffset(vaddr)) {
            Ok(Symbolized::Sym(sym)) => sym,
            _ => return vec![named(UNKNOWN_FUNCTION)],
        };
        // blazesym lists inlined calls outermost first; the report wants innermost first.
        let mut out: Vec<Located> = sym
            .inlined
            .iter()
            .rev()
            .map(|f| located(&f.name, f.code_info.as_ref()))
            .collect();
        out.push(located(&sym.name, sym.code_info.as_deref()));
        out
    }
}

fn named(function: &str) -> Located {
    Located {
        function: function.into(),
        file: None,
        line: None,
    }
}

fn located(name: &str, code: Option<&CodeInfo<'_>>) -> Located {
    Located {
        function: name.into(),
        file: code.map(|c| c.to_path().display().to_string()),
        line: code.and_then(|c| c.line),
    }
}

fn jit_frame(name: String, address: String) -> Frame {
    let source = perfmap::source_of(&name);
    Frame {
        file: source.as_ref().map(|(f, _)| f.clone()),
        line: source.map(|(_, l)| l),
        function: name,
        module: Some(JIT_MODULE.into()),
        address,
    }
}

fn unknown(address: String, module: Option<String>) -> Frame {
    Frame {
        function: UNKNOWN_FUNCTION.into(),
        file: None,
        line: None,
        module,
        address,
    }
}
