//! Just enough ELF parsing to tell a statically linked executable.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// `PT_INTERP`: the program header naming the dynamic loader.
const PT_INTERP: u32 = 3;
/// Most program headers read; real files have a few dozen.
const MAX_PHDRS: u16 = 4096;

/// What kind of file an executable is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecKind {
    /// An ELF file with a `PT_INTERP` header: the loader honours `LD_PRELOAD`.
    DynamicElf,
    /// An ELF file without `PT_INTERP`: nothing can be preloaded into it.
    StaticElf,
    /// Not ELF (a `#!` script, for instance).
    NotElf,
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed ELF file: {what}"),
    )
}

/// Reads the ELF and program headers of `path`.
pub fn exec_kind(path: &Path) -> io::Result<ExecKind> {
    let mut file = File::open(path)?;
    let mut ident = [0u8; 64];
    let n = read_up_to(&mut file, &mut ident)?;
    if n < 16 || &ident[..4] != b"\x7fELF" {
        return Ok(ExecKind::NotElf);
    }
    let is64 = match ident[4] {
        1 => false,
        2 => true,
        _ => return Err(invalid("unknown class")),
    };
    let le = match ident[5] {
        1 => true,
        2 => false,
        _ => return Err(invalid("unknown byte order")),
    };
    let need = if is64 { 64 } else { 52 };
    if n < need {
        return Err(invalid("truncated header"));
    }
    let u16_at = |b: &[u8], o: usize| {
        let v = [b[o], b[o + 1]];
        if le {
            u16::from_le_bytes(v)
        } else {
            u16::from_be_bytes(v)
        }
    };
    let u32_at = |b: &[u8], o: usize| {
        let v = [b[o], b[o + 1], b[o + 2], b[o + 3]];
        if le {
            u32::from_le_bytes(v)
        } else {
            u32::from_be_bytes(v)
        }
    };
    let (phoff, phentsize, phnum) = if is64 {
        let mut v = [0u8; 8];
        v.copy_from_slice(&ident[32..40]);
        let off = if le {
            u64::from_le_bytes(v)
        } else {
            u64::from_be_bytes(v)
        };
        (off, u16_at(&ident, 54), u16_at(&ident, 56))
    } else {
        (
            u64::from(u32_at(&ident, 28)),
            u16_at(&ident, 42),
            u16_at(&ident, 44),
        )
    };
    if phnum > MAX_PHDRS || usize::from(phentsize) < 4 {
        return Err(invalid("implausible program header table"));
    }
    let mut table = vec![0u8; usize::from(phentsize) * usize::from(phnum)];
    file.seek(SeekFrom::Start(phoff))?;
    file.read_exact(&mut table)
        .map_err(|_| invalid("truncated program headers"))?;
    let has_interp = table
        .chunks_exact(usize::from(phentsize))
        .any(|ph| u32_at(ph, 0) == PT_INTERP);
    Ok(if has_interp {
        ExecKind::DynamicElf
    } else {
        ExecKind::StaticElf
    })
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_dynamic_elf_from_scripts_and_garbage() {
        assert_eq!(
            exec_kind(Path::new("/bin/sh")).unwrap(),
            ExecKind::DynamicElf
        );
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("s");
        std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
        assert_eq!(exec_kind(&script).unwrap(), ExecKind::NotElf);
        let bad = dir.path().join("bad");
        std::fs::write(&bad, b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0").unwrap();
        assert!(exec_kind(&bad).is_err());
    }
}
