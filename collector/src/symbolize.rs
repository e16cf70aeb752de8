//! Turning return addresses into functions, files and lines, from the files on disk.
//!
//! Results are cached per (module path, build-id, ELF address) in a
//! [`SymbolCache`] shared by every report, together with the one blazesym
//! symbolizer that parses the files: a file parsed for one report serves the
//! next. A collector that watches processes run (`run`, `serve`) parses each
//! module's file in the background as soon as the module is announced
//! ([`SymbolCache::warm`]), so that a report at the end does not start by
//! decompressing and parsing debug information: on two cores, an idle one
//! usually does it while the program runs. What was resolved in files with
//! debug information is also kept on disk per build-id (`symbolize/disk.rs`), so that
//! the next run does not parse them at all.
//!
//! Addresses outside every module are looked up in the process's
//! `/tmp/perf-PID.map` ([`perfmap`]), read once per pid (again when it grew).
//! Python frames are named from the code objects the process described
//! ([`python`]).

mod disk;
pub mod perfmap;
pub mod python;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use blazesym::symbolize::source::{Elf, Source};
use blazesym::symbolize::{CodeInfo, Input, Symbolized};
use memshim_proto::{Module, PythonFrame};

use crate::report::Frame;
use crate::state::modules::ModuleMap;
use disk::DiskCache;
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// Files whose saved results were looked for on disk, and whether there were any.
    preloaded: HashMap<FileKey, bool>,
    /// Files with results resolved since the last save to disk.
    unsaved: HashSet<FileKey>,
}

/// Symbolization results shared across reports and threads, and the
/// symbolizer that produces them.
#[derive(Debug, Default)]
pub struct SymbolCache {
    inner: Mutex<CacheInner>,
    /// The one blazesym symbolizer: whoever resolves an address takes it.
    blaze: Mutex<Blaze>,
    /// Reports in progress; background parsing waits while there are any.
    reports: AtomicUsize,
    /// Where [`SymbolCache::warm`] queues modules (`None`: no thread).
    warmer: OnceLock<Option<Sender<Module>>>,
    /// Results saved by earlier runs (`symbolize/disk.rs`); `None` in tests and when turned off.
    disk: Option<DiskCache>,
}

/// blazesym's symbolizer, made to move between threads.
///
/// It is not `Send` because it keeps `Rc`s, `RefCell`s and `dyn` resolvers
/// without `Send` bounds. All of them are owned by the symbolizer and
/// reachable only through it; it uses no thread-local state; it is only ever
/// used through `&mut` under the [`SymbolCache::blaze`] mutex, which orders
/// every access; and what a lookup returns is copied into owned [`Located`]
/// values before the lock is released. So no reference count or cell is ever
/// touched by two threads without that ordering.
#[derive(Default)]
struct Blaze(Option<blazesym::symbolize::Symbolizer>);

// SAFETY: see the type's documentation.
unsafe impl Send for Blaze {}

impl std::fmt::Debug for Blaze {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Blaze")
    }
}

impl SymbolCache {
    /// A cache that also reads and saves results on disk, in the directory
    /// the environment names (`symbolize/disk.rs`): what the commands use.
    pub fn persistent() -> SymbolCache {
        SymbolCache {
            disk: DiskCache::from_env(),
            ..SymbolCache::default()
        }
    }

    /// A cache saving its results in `dir`.
    #[cfg(test)]
    pub(crate) fn saved_in(dir: &Path) -> SymbolCache {
        SymbolCache {
            disk: Some(DiskCache::at(dir)),
            ..SymbolCache::default()
        }
    }

    /// The cache's contents. A panic elsewhere while it was held leaves the
    /// maps consistent (each update is one insert), so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `module`'s file to be parsed in the background, ahead of the
    /// reports that will need it. The thread starts on the first call; a
    /// module without a file (the vDSO) or the shim itself is skipped.
    pub fn warm(self: &Arc<Self>, module: &Module) {
        if module.path.is_empty() || is_shim(&module.path) {
            return;
        }
        let warmer = self.warmer.get_or_init(|| {
            let (tx, rx) = mpsc::channel();
            let cache = Arc::downgrade(self);
            std::thread::Builder::new()
                .name("memcollect-symbols".into())
                .spawn(move || warm_queued(&cache, &rx))
                .ok()
                .map(|_| tx)
        });
        if let Some(tx) = warmer {
            // The thread ends only with the cache, so the send cannot fail.
            let _ = tx.send(module.clone());
        }
    }

    /// Whether some address of the file at `path` has been looked up.
    #[cfg(test)]
    pub(crate) fn has_looked_up(&self, path: &str) -> bool {
        self.lock().addresses.keys().any(|((p, _), _)| p == path)
    }

    /// The functions, innermost first, at ELF address `vaddr` of `module`.
    fn locate(&self, module: &Module, vaddr: u64) -> Arc<[Located]> {
        let key = (file_key(module), vaddr);
        if let Some(hit) = self.lock().addresses.get(&key).cloned() {
            return hit;
        }
        let located: Arc<[Located]> = match self.file_status(&key.0) {
            FileStatus::Changed => Arc::new([named(CHANGED_ON_DISK)]),
            FileStatus::Unreadable => Arc::new([named(UNKNOWN_FUNCTION)]),
            FileStatus::Usable => {
                if self.preload(&key.0) {
                    if let Some(hit) = self.lock().addresses.get(&key).cloned() {
                        return hit;
                    }
                }
                let located = self.resolve(&module.path, vaddr).into();
                if self.disk.is_some() && !key.0 .1.is_empty() {
                    self.lock().unsaved.insert(key.0.clone());
                }
                located
            }
        };
        self.lock().addresses.insert(key, Arc::clone(&located));
        located
    }

    /// Reads the results earlier runs saved for `file` (once); returns
    /// whether there were any.
    fn preload(&self, file: &FileKey) -> bool {
        let Some(disk) = &self.disk else {
            return false;
        };
        if file.1.is_empty() {
            return false;
        }
        if let Some(&found) = self.lock().preloaded.get(file) {
            return found;
        }
        let saved = disk.load(&file.1);
        let found = !saved.is_empty();
        let mut inner = self.lock();
        for (vaddr, located) in saved {
            inner
                .addresses
                .entry((file.clone(), vaddr))
                .or_insert_with(|| located.into());
        }
        inner.preloaded.insert(file.clone(), found);
        found
    }

    /// Saves to disk what was resolved since the last save, for the files
    /// whose debug information was found (some result has a line): the
    /// others are cheap to look up again, and are looked up afresh once
    /// their debug information is installed.
    fn save_resolved(&self) {
        let Some(disk) = &self.disk else {
            return;
        };
        let by_file: Vec<(Vec<u8>, Vec<disk::Entry>)> = {
            let mut inner = self.lock();
            let unsaved = std::mem::take(&mut inner.unsaved);
            let mut entries: HashMap<&FileKey, Vec<disk::Entry>> = HashMap::new();
            for ((file, vaddr), located) in &inner.addresses {
                if unsaved.contains(file) {
                    entries
                        .entry(file)
                        .or_default()
                        .push((*vaddr, located.to_vec()));
                }
            }
            entries
                .into_iter()
                .filter(|(_, e)| e.iter().any(|(_, l)| l.iter().any(|l| l.line.is_some())))
                .map(|(file, e)| (file.1.clone(), e))
                .collect()
        };
        for (build_id, entries) in by_file {
            disk.save(&build_id, entries);
        }
    }

    fn file_status(&self, file: &FileKey) -> FileStatus {
        let known = self.lock().files.get(file).copied();
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
        self.lock().files.insert(file.clone(), status);
        status
    }

    fn resolve(&self, path: &str, vaddr: u64) -> Vec<Located> {
        let mut blaze = self.blaze.lock().unwrap_or_else(PoisonError::into_inner);
        let blaze = blaze.0.get_or_insert_with(|| {
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

/// The background thread: parses each queued module's file (by looking up
/// the start of its code) unless a report is running, which comes first.
/// Ends with the cache.
fn warm_queued(cache: &Weak<SymbolCache>, queue: &Receiver<Module>) {
    while let Ok(module) = queue.recv() {
        let Some(cache) = cache.upgrade() else {
            return;
        };
        while cache.reports.load(Ordering::Acquire) > 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        // Saved results make parsing the file unnecessary, until a report
        // asks for an address they do not have.
        let file = file_key(&module);
        if cache.file_status(&file) == FileStatus::Usable && cache.preload(&file) {
            continue;
        }
        if let Some(code) = module.segments.iter().find(|s| s.executable) {
            cache.locate(&module, code.vaddr);
        }
    }
}

/// The key of `module`'s file: its path and build-id.
fn file_key(module: &Module) -> FileKey {
    (module.path.clone(), module.build_id.clone())
}

fn is_shim(path: &str) -> bool {
    Path::new(path)
        .file_name()
        .is_some_and(|n| n == SHIM_FILE_NAME)
}

/// Symbolizes stacks for one report.
pub struct Symbolizer<'c> {
    cache: &'c SymbolCache,
}

impl<'c> Symbolizer<'c> {
    /// A symbolizer that reads and fills `cache`. Background parsing pauses
    /// while it exists.
    pub fn new(cache: &'c SymbolCache) -> Self {
        cache.reports.fetch_add(1, Ordering::AcqRel);
        Symbolizer { cache }
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
            if is_shim(&module.path) {
                continue;
            }
            let module_name = Some(module.path.clone());
            let located = self.cache.locate(module, pc.wrapping_sub(module.base));
            for located in located.iter() {
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
}

impl Drop for Symbolizer<'_> {
    /// The report is done: saves what it resolved, and lets background parsing resume.
    fn drop(&mut self) {
        self.cache.save_resolved();
        self.cache.reports.fetch_sub(1, Ordering::AcqRel);
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use memshim_proto::Segment;

    use super::*;

    /// The test binary `exe` as a module with one code segment at 0x1000.
    fn test_binary(exe: &Path, build_id: Vec<u8>) -> Module {
        Module {
            ts: 0,
            path: exe.display().to_string(),
            base: 0,
            segments: vec![Segment {
                vaddr: 0x1000,
                memsz: 0x1000,
                file_offset: 0x1000,
                executable: true,
            }],
            build_id,
        }
    }

    #[test]
    fn warming_parses_in_the_background_but_never_during_a_report() {
        let exe = std::env::current_exe().expect("test binary");
        let module = test_binary(&exe, vec![]);
        let key = ((module.path.clone(), vec![]), 0x1000);
        let cache = Arc::new(SymbolCache::default());
        let report = Symbolizer::new(&cache);
        cache.warm(&module);
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            !cache.lock().addresses.contains_key(&key),
            "parsed while a report was running"
        );
        drop(report);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cache.lock().addresses.contains_key(&key) {
            assert!(Instant::now() < deadline, "never parsed");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(cache.lock().files.len(), 1);
    }

    /// A function the tests look up by name: its lines are in this binary's DWARF.
    #[no_mangle]
    #[inline(never)]
    extern "C" fn memshim_symbol_cache_marker() -> u32 {
        std::hint::black_box(7)
    }

    /// This test binary as a module, with its build-id, and the ELF address of the marker.
    fn marker_module() -> (Module, u64) {
        let exe = std::env::current_exe().expect("test binary");
        let build_id = blazesym::helper::read_elf_build_id(&exe)
            .expect("readable")
            .expect("linked with a build-id")
            .into_owned();
        let source =
            blazesym::inspect::source::Source::Elf(blazesym::inspect::source::Elf::new(&exe));
        let inspector = blazesym::inspect::Inspector::new();
        let found = inspector
            .lookup(&source, &["memshim_symbol_cache_marker"])
            .expect("looked up");
        let vaddr = found[0].first().expect("marker symbol").addr;
        (test_binary(&exe, build_id), vaddr + 1)
    }

    #[test]
    fn resolved_lines_are_saved_and_later_read_back_without_parsing() {
        assert_eq!(memshim_symbol_cache_marker(), 7);
        let dir = tempfile::tempdir().unwrap();
        let (module, vaddr) = marker_module();

        let first = Arc::new(SymbolCache::saved_in(dir.path()));
        let located = first.locate(&module, vaddr);
        assert_eq!(
            located.last().unwrap().function,
            "memshim_symbol_cache_marker"
        );
        assert!(located.last().unwrap().line.is_some(), "{located:?}");
        drop(Symbolizer::new(&first));

        let second = Arc::new(SymbolCache::saved_in(dir.path()));
        // Warming finds the saved results: nothing to parse.
        second.warm(&module);
        let file = file_key(&module);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !second.lock().preloaded.contains_key(&file) {
            assert!(Instant::now() < deadline, "never preloaded");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(second.locate(&module, vaddr), located);
        assert!(
            second.blaze.lock().unwrap().0.is_none(),
            "the file was parsed"
        );
    }

    #[test]
    fn files_without_lines_are_not_saved() {
        let dir = tempfile::tempdir().unwrap();
        let cache = SymbolCache::saved_in(dir.path());
        let file: FileKey = ("/lib/stripped.so".into(), vec![0xab, 0xcd]);
        {
            let mut inner = cache.lock();
            inner
                .addresses
                .insert((file.clone(), 0x40), Arc::new([named("f")]));
            inner.unsaved.insert(file.clone());
        }
        cache.save_resolved();
        assert!(DiskCache::at(dir.path()).load(&file.1).is_empty());
        assert!(cache.lock().unsaved.is_empty());
    }
}
