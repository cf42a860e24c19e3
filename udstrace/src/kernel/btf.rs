//! A small reader of the kernel's BTF (`/sys/kernel/btf/vmlinux`): names, structs and their
//! members, read in place from the raw bytes.
//!
//! udstrace needs a dozen member offsets and two names out of some 100,000 types. A general
//! parser (btf-rs, aya's) builds every type in memory, tens of MB at start; this keeps the
//! raw section and one offset per type. The format is the kernel's
//! (Documentation/bpf/btf.rst): a header, a type section of variable-length records, a string
//! section.

use std::path::Path;

/// Why BTF could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum BtfError {
    #[error("cannot read {0}")]
    Read(String),
    #[error("not BTF (bad header)")]
    Header,
    #[error("type {0} runs past the type section")]
    Truncated(u32),
    #[error("unknown BTF kind {kind} at type {id}")]
    Kind { kind: u32, id: u32 },
}

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
/// Typedef; 9 volatile, 10 const, 11 restrict follow it.
const KIND_TYPEDEF: u32 = 8;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// A member of a struct or union.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Member<'a> {
    pub(crate) name: &'a str,
    pub(crate) type_id: u32,
    pub(crate) bit_offset: u32,
    /// Non-zero for a bit field.
    pub(crate) bitfield_size: u32,
}

/// The kernel's BTF, indexed by type id.
pub(crate) struct Btf {
    data: Vec<u8>,
    types: usize,
    strings: usize,
    strings_end: usize,
    /// Byte offset of each type (index = type id - 1).
    offsets: Vec<u32>,
    /// Built on the first lookup by name.
    index: std::cell::OnceCell<Index>,
}

/// (hash of a name, type id) pairs, sorted: the types by their name, and the enums by the
/// names of their enumerators. A lookup is a binary search and a check of the few candidates,
/// instead of a pass over every type with a string comparison each (which cost 0.1 s at start
/// over the forty-odd lookups the layout makes).
#[derive(Default)]
struct Index {
    types: Vec<(u64, u32)>,
    enumerators: Vec<(u64, u32)>,
}

/// The index's hash of a name: over its bytes, as they are in the file (no UTF-8 check), with
/// the fast hash (the kernel's names are not chosen by anyone udstrace must resist).
fn name_hash(name: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = crate::hash::FastHasher::default();
    h.write(name);
    h.finish()
}

/// The ids whose hash is `hash` in a sorted index.
fn candidates(index: &[(u64, u32)], hash: u64) -> impl Iterator<Item = u32> + '_ {
    let start = index.partition_point(|&(h, _)| h < hash);
    index[start..]
        .iter()
        .take_while(move |&&(h, _)| h == hash)
        .map(|&(_, id)| id)
}

/// Raw BTF of a type section and a string section: the 24-byte header (magic, version 1, no
/// flags), the types at offset 0, the strings after them.
fn assemble(types: &[u8], strings: &[u8]) -> Vec<u8> {
    let (type_len, str_len) = (types.len() as u32, strings.len() as u32);
    let mut btf: Vec<u8> = [0xeb9f_u16.to_le_bytes(), [1, 0]].concat();
    btf.extend(
        [24, 0, type_len, type_len, str_len]
            .into_iter()
            .flat_map(u32::to_le_bytes),
    );
    btf.extend_from_slice(types);
    btf.extend_from_slice(strings);
    btf
}

impl Btf {
    /// Reads and indexes a BTF file.
    pub(crate) fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data =
            std::fs::read(path).map_err(|e| BtfError::Read(format!("{}: {e}", path.display())))?;
        Self::from_bytes(data)
    }

    /// Indexes raw BTF.
    pub(crate) fn from_bytes(data: Vec<u8>) -> Result<Self, BtfError> {
        let u32_at = |o: usize| {
            data.get(o..o + 4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        };
        if data.len() < 24 || data[..2] != [0x9f, 0xeb] {
            return Err(BtfError::Header);
        }
        let field = |o| u32_at(o).map(|v| v as usize).ok_or(BtfError::Header);
        let hdr_len = field(4)?;
        let (type_off, type_len, str_off, str_len) =
            (field(8)?, field(12)?, field(16)?, field(20)?);
        let types = hdr_len + type_off;
        let strings = hdr_len + str_off;
        if types + type_len > data.len() || strings + str_len > data.len() {
            return Err(BtfError::Header);
        }
        let mut offsets = Vec::new();
        let mut at = types;
        while at < types + type_len {
            let id = offsets.len() as u32 + 1;
            let info = u32_at(at + 4).ok_or(BtfError::Truncated(id))?;
            let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
            let tail = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
                KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
                KIND_PTR | 7 | KIND_TYPEDEF..=KIND_RESTRICT | 12 | 16 | KIND_TYPE_TAG => 0,
                _ => return Err(BtfError::Kind { kind, id }),
            };
            offsets.push(u32::try_from(at - types).map_err(|_| BtfError::Truncated(id))?);
            at += 12 + tail;
        }
        if at != types + type_len {
            return Err(BtfError::Truncated(offsets.len() as u32));
        }
        Ok(Self {
            data,
            types,
            strings,
            strings_end: strings + str_len,
            offsets,
            index: std::cell::OnceCell::new(),
        })
    }

    fn u32_at(&self, o: usize) -> u32 {
        u32::from_le_bytes(
            self.data[o..o + 4]
                .try_into()
                .expect("checked when indexing"),
        )
    }

    /// Byte offset of type `id`'s record.
    fn record(&self, id: u32) -> Option<usize> {
        let i = usize::try_from(id).ok()?.checked_sub(1)?;
        self.offsets.get(i).map(|&o| self.types + o as usize)
    }

    fn name_at(&self, off: u32) -> &str {
        std::str::from_utf8(self.name_bytes_at(off)).unwrap_or("")
    }

    /// The bytes of the name at `off` in the string section, up to its NUL.
    fn name_bytes_at(&self, off: u32) -> &[u8] {
        let start = self.strings + off as usize;
        if start >= self.strings_end {
            return b"";
        }
        let rest = &self.data[start..self.strings_end];
        std::ffi::CStr::from_bytes_until_nul(rest).map_or(rest, std::ffi::CStr::to_bytes)
    }

    /// The bytes of type `id`'s name.
    fn name_of(&self, id: u32) -> &[u8] {
        self.record(id)
            .map_or(b"", |at| self.name_bytes_at(self.u32_at(at)))
    }

    /// (kind, name, vlen, kind_flag, size_or_type) of type `id`.
    fn header(&self, id: u32) -> Option<(u32, &str, usize, bool, u32)> {
        let at = self.record(id)?;
        let info = self.u32_at(at + 4);
        Some((
            (info >> 24) & 0x1f,
            self.name_at(self.u32_at(at)),
            (info & 0xffff) as usize,
            info >> 31 == 1,
            self.u32_at(at + 8),
        ))
    }

    fn index(&self) -> &Index {
        self.index.get_or_init(|| {
            let mut index = Index::default();
            index.types.reserve(self.offsets.len());
            for id in 1..=self.offsets.len() as u32 {
                let at = self.record(id).expect("every id has a record");
                let name_off = self.u32_at(at);
                if name_off != 0 {
                    index
                        .types
                        .push((name_hash(self.name_bytes_at(name_off)), id));
                }
                let info = self.u32_at(at + 4);
                let stride = match (info >> 24) & 0x1f {
                    KIND_ENUM => 8,
                    KIND_ENUM64 => 12,
                    _ => continue,
                };
                for i in 0..(info & 0xffff) as usize {
                    let name = self.name_bytes_at(self.u32_at(at + 12 + stride * i));
                    index.enumerators.push((name_hash(name), id));
                }
            }
            index.types.sort_unstable();
            index.enumerators.sort_unstable();
            index.enumerators.dedup();
            index
        })
    }

    /// The ids of the types called `name`, in id order.
    fn named(&self, name: &str) -> impl Iterator<Item = u32> + '_ {
        let name = name.as_bytes().to_vec();
        candidates(&self.index().types, name_hash(&name))
            .filter(move |&id| self.name_of(id) == name)
    }

    /// Whether any type is called `name`.
    #[must_use]
    pub(crate) fn has_name(&self, name: &str) -> bool {
        self.named(name).next().is_some()
    }

    /// The id of the struct called `name` (its full definition, not a forward declaration).
    #[must_use]
    pub(crate) fn struct_id(&self, name: &str) -> Option<u32> {
        self.named(name)
            .find(|&id| self.header(id).is_some_and(|h| h.0 == KIND_STRUCT))
    }

    /// The members of struct or union `id`; empty for any other type.
    #[must_use]
    pub(crate) fn members(&self, id: u32) -> Vec<Member<'_>> {
        let Some((kind, _, vlen, kind_flag, _)) = self.header(id) else {
            return Vec::new();
        };
        if kind != KIND_STRUCT && kind != KIND_UNION {
            return Vec::new();
        }
        let at = self.record(id).expect("header found it") + 12;
        (0..vlen)
            .map(|i| {
                let m = at + 12 * i;
                let offset = self.u32_at(m + 8);
                let (bit_offset, bitfield_size) = if kind_flag {
                    (offset & 0xff_ffff, offset >> 24)
                } else {
                    (offset, 0)
                };
                Member {
                    name: self.name_at(self.u32_at(m)),
                    type_id: self.u32_at(m + 4),
                    bit_offset,
                    bitfield_size,
                }
            })
            .collect()
    }

    /// Size in bytes of type `id` (typedefs and qualifiers stripped): ints, structs, unions,
    /// enums and pointers.
    #[must_use]
    pub(crate) fn size_of(&self, id: u32) -> Option<u32> {
        let (kind, _, _, _, size) = self.header(self.resolve(id))?;
        match kind {
            KIND_INT | KIND_STRUCT | KIND_UNION | KIND_ENUM | KIND_ENUM64 => Some(size),
            KIND_PTR => Some(8),
            _ => None,
        }
    }

    /// The value of the enumerator called `name`, in whichever enum declares it.
    #[must_use]
    pub(crate) fn enum_value(&self, name: &str) -> Option<i64> {
        let name = name.as_bytes();
        candidates(&self.index().enumerators, name_hash(name)).find_map(|id| {
            let (kind, _, vlen, _, _) = self.header(id)?;
            let at = self.record(id)? + 12;
            match kind {
                KIND_ENUM => (0..vlen).find_map(|i| {
                    let e = at + 8 * i;
                    (self.name_bytes_at(self.u32_at(e)) == name)
                        .then(|| i64::from(self.u32_at(e + 4).cast_signed()))
                }),
                KIND_ENUM64 => (0..vlen).find_map(|i| {
                    let e = at + 12 * i;
                    (self.name_bytes_at(self.u32_at(e)) == name).then(|| {
                        (u64::from(self.u32_at(e + 4)) | (u64::from(self.u32_at(e + 8)) << 32))
                            .cast_signed()
                    })
                }),
                _ => None,
            }
        })
    }

    /// BTF for aya's program loads: the functions and typedefs called one of `names`, each at
    /// its id here, and a nameless placeholder (`const void`) at every other id up to the last
    /// of them.
    ///
    /// Loading a BTF-typed program (fentry, fexit, `tp_btf`) takes only the id of its target
    /// (the function, or the tracepoint's `btf_trace_*` typedef); aya finds it by name and kind
    /// in the BTF it is given. Given the kernel's own, aya builds every one of its types in
    /// memory first: 30-45 ms of a CPU at each start. This is a few MB of 12-byte records.
    #[must_use]
    pub(crate) fn for_program_loads(&self, names: &[impl AsRef<str>]) -> Vec<u8> {
        let mut targets: Vec<(u32, usize)> = names
            .iter()
            .flat_map(|name| self.named(name.as_ref()))
            .filter_map(|id| {
                let at = self.record(id)?;
                matches!((self.u32_at(at + 4) >> 24) & 0x1f, KIND_FUNC | KIND_TYPEDEF)
                    .then_some((id, at))
            })
            .collect();
        targets.sort_unstable();
        targets.dedup();
        let last = targets.last().map_or(0, |&(id, _)| id);
        let mut types = Vec::with_capacity(12 * last as usize);
        let mut strings = vec![0_u8];
        let mut targets = targets.into_iter().peekable();
        for id in 1..=last {
            let record = match targets.next_if(|&(target, _)| target == id) {
                Some((_, at)) => {
                    let name = u32::try_from(strings.len()).unwrap_or(0);
                    strings.extend_from_slice(self.name_bytes_at(self.u32_at(at)));
                    strings.push(0);
                    [name, self.u32_at(at + 4), self.u32_at(at + 8)]
                }
                None => [0, KIND_CONST << 24, 0],
            };
            types.extend(record.into_iter().flat_map(u32::to_le_bytes));
        }
        assemble(&types, &strings)
    }

    /// `id` with typedefs and qualifiers stripped.
    #[must_use]
    pub(crate) fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.header(id) {
                Some((KIND_TYPEDEF..=KIND_RESTRICT | KIND_TYPE_TAG, _, _, _, target)) => {
                    id = target;
                }
                _ => break,
            }
        }
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-made BTF: int, struct s { int a; struct { int b; }; } with an anonymous member.
    fn sample() -> Vec<u8> {
        let strings = b"\0int\0s\0a\0b\0".to_vec(); // int@1 s@5 a@7 b@9
        let mut types = Vec::new();
        let mut put = |v: u32| types.extend_from_slice(&v.to_le_bytes());
        // 1: int, size 4
        put(1);
        put(KIND_INT << 24);
        put(4);
        put(32);
        // 2: anonymous struct { int b; } size 4
        put(0);
        put((KIND_STRUCT << 24) | 1);
        put(4);
        put(9);
        put(1);
        put(0);
        // 3: struct s { int a; <anon> at 32 bits } size 8
        put(5);
        put((KIND_STRUCT << 24) | 2);
        put(8);
        put(7);
        put(1);
        put(0);
        put(0);
        put(2);
        put(32);
        assemble(&types, &strings)
    }

    #[test]
    fn reads_structs_members_and_names() {
        let btf = Btf::from_bytes(sample()).unwrap();
        assert_eq!(btf.struct_id("s"), Some(3));
        assert_eq!(btf.struct_id("int"), None);
        assert!(btf.has_name("int"));
        assert!(!btf.has_name("nope"));
        let m = btf.members(3);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].name, m[0].bit_offset), ("a", 0));
        assert_eq!((m[1].name, m[1].bit_offset, m[1].type_id), ("", 32, 2));
        assert_eq!(btf.members(2)[0].name, "b");
        assert_eq!(btf.resolve(1), 1);
    }

    #[test]
    fn rejects_damaged_input() {
        assert_eq!(Btf::from_bytes(vec![0; 10]).err(), Some(BtfError::Header));
        let mut b = sample();
        b.truncate(b.len() - 20);
        assert!(Btf::from_bytes(b).is_err());
        let mut b = sample();
        b[24 + 4 + 3] = 30; // kind 30 in the first type's info
        assert!(matches!(
            Btf::from_bytes(b),
            Err(BtfError::Kind { kind: 30, id: 1 })
        ));
    }

    /// The program loads' BTF keeps each function and typedef asked for at its id, and
    /// nothing else by name: aya finds the same ids in it as in the whole BTF.
    #[test]
    fn program_loads_find_the_same_ids() {
        let strings = b"\0f\0btf_trace_x\0g\0".to_vec(); // f@1 btf_trace_x@3 g@15
        let mut types = Vec::new();
        let mut put = |v: [u32; 3]| types.extend(v.into_iter().flat_map(u32::to_le_bytes));
        put([0, KIND_FUNC_PROTO << 24, 0]); // 1: void (void)
        put([1, KIND_STRUCT << 24, 0]); // 2: struct f {}
        put([15, KIND_FUNC << 24, 1]); // 3: g
        put([0, KIND_PTR << 24, 2]); // 4: struct f *
        put([1, (KIND_FUNC << 24) | 1, 1]); // 5: f (global)
        put([3, KIND_TYPEDEF << 24, 4]); // 6: btf_trace_x
        put([15, KIND_TYPEDEF << 24, 4]); // 7: typedef g
        let whole = assemble(&types, &strings);
        let btf = Btf::from_bytes(whole.clone()).unwrap();
        let loads = btf.for_program_loads(&["f", "btf_trace_x", "missing"]);
        let whole = aya::Btf::parse(&whole, aya::Endianness::default()).unwrap();
        let loads = aya::Btf::parse(&loads, aya::Endianness::default()).unwrap();
        for (name, kind) in [
            ("f", aya_obj::btf::BtfKind::Func),
            ("btf_trace_x", aya_obj::btf::BtfKind::Typedef),
        ] {
            assert_eq!(
                loads.id_by_type_name_kind(name, kind).unwrap(),
                whole.id_by_type_name_kind(name, kind).unwrap(),
                "{name}"
            );
        }
        assert!(loads
            .id_by_type_name_kind("f", aya_obj::btf::BtfKind::Struct)
            .is_err());
        assert!(loads
            .id_by_type_name_kind("g", aya_obj::btf::BtfKind::Func)
            .is_err());
        // Read back by this reader too: six records, the last asked for being id 6.
        let read = Btf::from_bytes(btf.for_program_loads(&["f", "btf_trace_x"])).unwrap();
        assert_eq!(read.named("btf_trace_x").collect::<Vec<_>>(), [6]);
        assert_eq!(read.named("f").collect::<Vec<_>>(), [5]);
        assert!(!read.has_name("g"));
        // Nothing found: the header and the empty name alone.
        assert_eq!(btf.for_program_loads(&["missing"]).len(), 24 + 1);
    }

    /// The running kernel's BTF: every function a backend may hook and the tracepoints' typedefs
    /// at the ids aya's own parse of the whole BTF gives them.
    #[test]
    fn program_loads_of_the_running_kernel() {
        let path = Path::new(crate::kernel::VMLINUX_BTF);
        let Ok(whole) = aya::Btf::parse_file(path, aya::Endianness::default()) else {
            eprintln!("no readable {}: skipped", path.display());
            return;
        };
        let btf = Btf::from_file(path).unwrap();
        let names = crate::kernel::hooks::program_load_targets();
        let loads =
            aya::Btf::parse(&btf.for_program_loads(&names), aya::Endianness::default()).unwrap();
        let mut found = 0;
        for name in names.iter().map(String::as_str) {
            let kind = if name.starts_with("btf_trace_") {
                aya_obj::btf::BtfKind::Typedef
            } else {
                aya_obj::btf::BtfKind::Func
            };
            let expected = whole.id_by_type_name_kind(name, kind).ok();
            assert_eq!(
                loads.id_by_type_name_kind(name, kind).ok(),
                expected,
                "{name}"
            );
            found += usize::from(expected.is_some());
        }
        // unix_{stream,dgram,seqpacket}_{send,recv}msg are on every kernel udstrace supports.
        assert!(found >= 6, "{found}");
    }
}
