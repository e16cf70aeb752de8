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
    python: HashMap<u64, Arc<PythonCode>>,
}

impl ModuleMap {
    /// Records a loaded module.
    pub fn load(&mut self, module: Module) {
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
    }

    /// The module whose segments contain the runtime address `addr`.
    ///
    /// Loaded modules win over unloaded ones (a later `dlopen` may reuse the range).
    pub fn find(&self, addr: u64) -> Option<&Arc<Module>> {
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
        m.load(module("/c", 0x7000_0000));
        assert_eq!(m.find(0x7000_1000).unwrap().path, "/c");
        assert_eq!(m.len(), 3);
    }
}
