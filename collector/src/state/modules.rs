//! The loaded code of a process, to name an address: ELF objects, and the
//! Python code objects that Python frames of its stacks refer to.

use std::collections::HashMap;
use std::sync::Arc;

use memshim_proto::{Module, PythonCode};

/// A module as announced, plus whether it was unloaded since.
#[derive(Debug, Clone)]
struct Entry {
    module: Arc<Module>,
    unloaded: bool,
}

/// The modules a process announced, in announcement order, and its Python
/// code objects by id.
#[derive(Debug, Clone, Default)]
pub struct ModuleMap {
    entries: Vec<Entry>,
    /// The segments of the loaded modules as runtime ranges `(start, end,
    /// entry)`, sorted and disjoint: reports name every frame of thousands
    /// of stacks, and a search of every segment of every module cost cc1's
    /// report milliseconds. A module loaded over another's range takes it
    /// over, as [`ModuleMap::find`] wants.
    loaded: Vec<(u64, u64, usize)>,
    python: HashMap<u64, Arc<PythonCode>>,
}

impl ModuleMap {
    /// Records a loaded module.
    pub fn load(&mut self, module: Module) {
        let entry = self.entries.len();
        let ranges: Vec<(u64, u64, usize)> = module
            .segments
            .iter()
            .filter(|s| s.memsz > 0)
            .map(|s| {
                let start = module.base.wrapping_add(s.vaddr);
                (start, start.saturating_add(s.memsz), entry)
            })
            .collect();
        self.loaded
            .retain(|&(lo, hi, _)| !ranges.iter().any(|&(l, h, _)| lo < h && l < hi));
        self.loaded.extend(ranges);
        self.loaded.sort_unstable();
        self.entries.push(Entry {
            module: Arc::new(module),
            unloaded: false,
        });
    }

    /// Marks the modules loaded at `base` as unloaded.
    ///
    /// They stay known: blocks allocated from them may still be live.
    pub fn unload(&mut self, base: u64) {
        for e in self.entries.iter_mut().filter(|e| e.module.base == base) {
            e.unloaded = true;
        }
        let entries = &self.entries;
        self.loaded.retain(|&(_, _, e)| !entries[e].unloaded);
    }

    /// The module whose segments contain the runtime address `addr`.
    ///
    /// Loaded modules win over unloaded ones (a later `dlopen` may reuse the
    /// range), later ones over earlier ones.
    pub fn find(&self, addr: u64) -> Option<&Arc<Module>> {
        let after = self.loaded.partition_point(|&(start, _, _)| start <= addr);
        match after.checked_sub(1).map(|i| self.loaded[i]) {
            Some((_, end, entry)) if addr < end => Some(&self.entries[entry].module),
            _ => self.find_by_search(addr),
        }
    }

    /// [`ModuleMap::find`] by a search of every segment, for the addresses
    /// no loaded range holds (unloaded modules, or a module's remains that
    /// a later one only partly covered).
    fn find_by_search(&self, addr: u64) -> Option<&Arc<Module>> {
        let hit = |e: &&Entry| {
            let vaddr = addr.wrapping_sub(e.module.base);
            e.module
                .segments
                .iter()
                .any(|s| vaddr >= s.vaddr && vaddr - s.vaddr < s.memsz)
        };
        let loaded = self.entries.iter().rev().filter(hit).find(|e| !e.unloaded);
        loaded
            .or_else(|| self.entries.iter().rev().find(hit))
            .map(|e| &e.module)
    }

    /// Records a Python code object (a later one with the same id replaces it).
    pub fn load_python_code(&mut self, code: PythonCode) {
        self.python.insert(code.id, Arc::new(code));
    }

    /// The Python code object with this id, if it was announced.
    pub fn python_code(&self, id: u64) -> Option<&PythonCode> {
        self.python.get(&id).map(|c| &**c)
    }

    /// Number of modules announced.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no module was announced.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memshim_proto::Segment;

    fn module(path: &str, base: u64) -> Module {
        Module {
            ts: 0,
            path: path.into(),
            base,
            segments: vec![Segment {
                vaddr: 0x1000,
                memsz: 0x2000,
                file_offset: 0x1000,
                executable: true,
            }],
            build_id: vec![],
        }
    }

    #[test]
    fn addresses_map_through_the_load_bias() {
        let mut m = ModuleMap::default();
        m.load(module("/a", 0x7000_0000));
        m.load(module("/b", 0x8000_0000));
        assert_eq!(m.find(0x7000_1000).unwrap().path, "/a");
        assert_eq!(m.find(0x8000_2fff).unwrap().path, "/b");
        assert!(m.find(0x8000_3000).is_none());
        assert!(m.find(0x10).is_none());
        m.unload(0x7000_0000);
        assert_eq!(
            m.find(0x7000_1000).unwrap().path,
            "/a",
            "unloaded, still known"
        );
        m.load(module("/c", 0x7000_0000));
        assert_eq!(m.find(0x7000_1000).unwrap().path, "/c");
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn a_later_module_over_a_loaded_range_wins_and_the_rest_stays_found() {
        let mut m = ModuleMap::default();
        m.load(module("/a", 0x7000_0000));
        // Announced again without an unload in between, one page higher.
        m.load(module("/b", 0x7000_1000));
        assert_eq!(m.find(0x7000_1000).unwrap().path, "/a", "below /b");
        assert_eq!(m.find(0x7000_2000).unwrap().path, "/b");
        assert_eq!(m.find(0x7000_3fff).unwrap().path, "/b");
        assert!(m.find(0x7000_4000).is_none());
        m.unload(0x7000_1000);
        assert_eq!(m.find(0x7000_2000).unwrap().path, "/a", "loaded wins");
        assert_eq!(m.find(0x7000_3fff).unwrap().path, "/b", "only /b had it");
    }

    #[test]
    fn the_index_answers_as_a_search_of_every_segment() {
        let mut m = ModuleMap::default();
        // /m3 overlaps /m0 from above, /m4 overlaps /m1 from below.
        for (i, base) in [
            0x1000_0000u64,
            0x3000_0000,
            0x2000_0000,
            0x1000_1800,
            0x2fff_f800,
        ]
        .into_iter()
        .enumerate()
        {
            m.load(module(&format!("/m{i}"), base));
        }
        m.unload(0x2000_0000);
        for addr in (0x1000_0000u64..0x1000_5000)
            .chain(0x2000_0000..0x2000_4000)
            .chain(0x2fff_f000..0x3000_4000)
            .step_by(0x80)
        {
            let by_index = m.find(addr).map(|x| x.path.clone());
            let by_search = m.find_by_search(addr).map(|x| x.path.clone());
            assert_eq!(by_index, by_search, "{addr:#x}");
        }
    }
}
