//! Just enough of a BTF reader to find where fields live inside kernel
//! structs (`task_struct.pid`, ...), so that the eBPF program can read them
//! at the right offsets on this kernel. Reads `/sys/kernel/btf/vmlinux`.

use std::collections::HashMap;

const BTF_MAGIC: u16 = 0xeb9f;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("not BTF data (bad magic or header)")]
    BadHeader,
    #[error("BTF data is truncated")]
    Truncated,
    #[error("unknown BTF type kind {0}")]
    UnknownKind(u32),
    #[error("struct {0} not found in the kernel's BTF")]
    NoStruct(String),
    #[error("field {1} not found in struct {0}")]
    NoField(String, String),
}

#[derive(Clone, Debug)]
struct Member {
    name: u32,
    ty: u32,
    bit_offset: u32,
}

#[derive(Clone, Debug)]
enum Type {
    Composite {
        name: u32,
        members: Vec<Member>,
    },
    Typedef {
        name: u32,
        ty: u32,
    },
    /// const/volatile/...: refers to another type.
    Alias(u32),
    /// A global variable.
    Var {
        name: u32,
    },
    /// A data section: its variables (type id of the `Var`, byte offset).
    Datasec {
        name: u32,
        vars: Vec<(u32, u32)>,
    },
    Other,
}

/// Parsed BTF: composite types and their members.
pub struct Btf {
    types: Vec<Type>, // index = type id; 0 is void
    strings: Vec<u8>,
    by_name: HashMap<String, u32>,
    typedefs: std::collections::HashSet<String>,
}

fn u16_at(b: &[u8], o: usize) -> Result<u16, BtfError> {
    b.get(o..o + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or(BtfError::Truncated)
}

fn u32_at(b: &[u8], o: usize) -> Result<u32, BtfError> {
    b.get(o..o + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(BtfError::Truncated)
}

/// The raw bytes of the running kernel's BTF: `/sys/kernel/btf/vmlinux`, or
/// the file named by `SCHEDTRACE_BTF` (for kernels that keep it elsewhere;
/// under sudo it is read with the invoking user's rights).
pub(crate) fn read_kernel_btf() -> Result<Vec<u8>, BtfError> {
    let Ok(path) = std::env::var("SCHEDTRACE_BTF") else {
        let path = "/sys/kernel/btf/vmlinux".to_string();
        return std::fs::read(&path).map_err(|source| BtfError::Io { path, source });
    };
    let who = crate::privs::fs_identity();
    let mut bytes = Vec::new();
    crate::trace::files::safefs::open_input(path.as_ref(), who.as_ref())
        .and_then(|mut f| Ok(std::io::Read::read_to_end(&mut f, &mut bytes)?))
        .map_err(|e| BtfError::Io {
            path,
            source: match e {
                crate::trace::files::safefs::PathError::Io(io) => io,
                other => std::io::Error::other(other.to_string()),
            },
        })?;
    Ok(bytes)
}

/// The type section of BTF data `data` and a copy of its string section,
/// after checking the header.
fn sections(data: &[u8]) -> Result<(&[u8], Vec<u8>), BtfError> {
    if u16_at(data, 0)? != BTF_MAGIC {
        return Err(BtfError::BadHeader);
    }
    let hdr_len = u32_at(data, 4)? as usize;
    let type_off = u32_at(data, 8)? as usize;
    let type_len = u32_at(data, 12)? as usize;
    let str_off = u32_at(data, 16)? as usize;
    let str_len = u32_at(data, 20)? as usize;
    let types_bytes = data
        .get(hdr_len + type_off..hdr_len + type_off + type_len)
        .ok_or(BtfError::Truncated)?;
    let strings = data
        .get(hdr_len + str_off..hdr_len + str_off + str_len)
        .ok_or(BtfError::Truncated)?
        .to_vec();
    Ok((types_bytes, strings))
}

/// The type whose record starts at `*o` in the type section `types_bytes`;
/// `*o` moves past the record.
fn parse_type(types_bytes: &[u8], o: &mut usize) -> Result<Type, BtfError> {
    let name = u32_at(types_bytes, *o)?;
    let info = u32_at(types_bytes, *o + 4)?;
    let size_or_type = u32_at(types_bytes, *o + 8)?;
    *o += 12;
    let vlen = (info & 0xffff) as usize;
    let kind = (info >> 24) & 0x1f;
    let kind_flag = info >> 31 == 1;
    Ok(match kind {
        KIND_STRUCT | KIND_UNION => {
            let members = members(types_bytes, *o, vlen, kind_flag)?;
            *o += vlen * 12;
            Type::Composite { name, members }
        }
        KIND_TYPEDEF => Type::Typedef {
            name,
            ty: size_or_type,
        },
        KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => Type::Alias(size_or_type),
        KIND_VAR => {
            *o += 4;
            Type::Var { name }
        }
        KIND_INT | KIND_DECL_TAG => {
            *o += 4;
            Type::Other
        }
        KIND_ARRAY => {
            *o += 12;
            Type::Other
        }
        KIND_ENUM | KIND_FUNC_PROTO => {
            *o += vlen * 8;
            Type::Other
        }
        KIND_DATASEC => {
            let mut vars = Vec::with_capacity(vlen);
            for i in 0..vlen {
                let v = *o + i * 12;
                vars.push((u32_at(types_bytes, v)?, u32_at(types_bytes, v + 4)?));
            }
            *o += vlen * 12;
            Type::Datasec { name, vars }
        }
        KIND_ENUM64 => {
            *o += vlen * 12;
            Type::Other
        }
        KIND_PTR | KIND_FWD | KIND_FUNC | KIND_FLOAT => Type::Other,
        other => return Err(BtfError::UnknownKind(other)),
    })
}

/// The `vlen` members of a struct or union, listed from `o` in the type
/// section (bit offsets in the low 24 bits if `kind_flag`).
fn members(
    types_bytes: &[u8],
    o: usize,
    vlen: usize,
    kind_flag: bool,
) -> Result<Vec<Member>, BtfError> {
    let mut members = Vec::with_capacity(vlen);
    for i in 0..vlen {
        let m = o + i * 12;
        let off = u32_at(types_bytes, m + 8)?;
        members.push(Member {
            name: u32_at(types_bytes, m)?,
            ty: u32_at(types_bytes, m + 4)?,
            bit_offset: if kind_flag { off & 0xff_ffff } else { off },
        });
    }
    Ok(members)
}

impl Btf {
    /// Parse raw BTF data (as in `/sys/kernel/btf/vmlinux`).
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        let (types_bytes, strings) = sections(data)?;
        let mut types = vec![Type::Other];
        let mut o = 0;
        while o < types_bytes.len() {
            types.push(parse_type(types_bytes, &mut o)?);
        }
        let mut btf = Btf {
            types,
            strings,
            by_name: HashMap::new(),
            typedefs: Default::default(),
        };
        btf.index_names();
        Ok(btf)
    }

    /// Index the named composite types by name, and note the typedefs'
    /// names.
    fn index_names(&mut self) {
        for (id, t) in self.types.iter().enumerate() {
            match t {
                Type::Composite { name, .. } if *name != 0 => {
                    let n = self.string(*name).to_string();
                    self.by_name.entry(n).or_insert(id as u32);
                }
                Type::Typedef { name, .. } => {
                    self.typedefs.insert(self.string(*name).to_string());
                }
                _ => {}
            }
        }
    }

    fn string(&self, off: u32) -> &str {
        let rest = self.strings.get(off as usize..).unwrap_or(&[]);
        let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.types.get(id as usize) {
                Some(Type::Alias(next)) | Some(Type::Typedef { ty: next, .. }) => id = *next,
                _ => break,
            }
        }
        id
    }

    /// Is there a typedef of this name (e.g. `btf_trace_sched_switch`)?
    pub fn has_typedef(&self, name: &str) -> bool {
        self.typedefs.contains(name)
    }

    /// Byte offset of `field` in composite type `id`, looking through
    /// anonymous struct/union members.
    fn find(&self, id: u32, field: &str) -> Option<(u32, u32)> {
        self.find_bits(id, field).map(|(bits, ty)| (bits / 8, ty))
    }

    /// Bit offset of `field` in composite type `id` (bitfields have one
    /// that is not a multiple of 8), and its type.
    fn find_bits(&self, id: u32, field: &str) -> Option<(u32, u32)> {
        let Some(Type::Composite { members, .. }) = self.types.get(self.resolve(id) as usize)
        else {
            return None;
        };
        for m in members {
            if m.name == 0 {
                if let Some((off, ty)) = self.find_bits(m.ty, field) {
                    return Some((m.bit_offset + off, ty));
                }
            } else if self.string(m.name) == field {
                return Some((m.bit_offset, m.ty));
            }
        }
        None
    }

    /// Byte offset of the global variable `var` in the data section
    /// `section` (e.g. a per-CPU variable in `.data..percpu`).
    pub fn var_offset(&self, section: &str, var: &str) -> Option<u32> {
        self.types.iter().find_map(|t| match t {
            Type::Datasec { name, vars } if self.string(*name) == section => {
                vars.iter()
                    .find_map(|(id, off)| match self.types.get(*id as usize) {
                        Some(Type::Var { name }) if self.string(*name) == var => Some(*off),
                        _ => None,
                    })
            }
            _ => None,
        })
    }

    /// Bit offset of a field of `strukt` itself (not a path), e.g. a
    /// one-bit flag.
    pub fn bit_offset_of(&self, strukt: &str, field: &str) -> Result<u32, BtfError> {
        let id = *self
            .by_name
            .get(strukt)
            .ok_or_else(|| BtfError::NoStruct(strukt.into()))?;
        self.find_bits(id, field)
            .map(|(bits, _)| bits)
            .ok_or_else(|| BtfError::NoField(strukt.into(), field.into()))
    }

    /// Byte offset of a dotted field path, e.g. `thread_info.cpu`.
    pub fn offset_of(&self, strukt: &str, path: &str) -> Result<u32, BtfError> {
        let mut id = *self
            .by_name
            .get(strukt)
            .ok_or_else(|| BtfError::NoStruct(strukt.into()))?;
        let mut total = 0;
        for part in path.split('.') {
            let (off, ty) = self
                .find(id, part)
                .ok_or_else(|| BtfError::NoField(strukt.into(), path.into()))?;
            total += off;
            id = ty;
        }
        Ok(total)
    }
}

/// The `task_struct` offsets the eBPF program needs, from this kernel's BTF:
/// every kernel schedtrace runs on has these.
pub(crate) fn task_offsets(btf: &Btf) -> Result<schedtrace_common::TaskOffsets, BtfError> {
    let cpu = btf
        .offset_of("task_struct", "thread_info.cpu")
        .or_else(|_| btf.offset_of("task_struct", "cpu"))?;
    Ok(schedtrace_common::TaskOffsets {
        pid: btf.offset_of("task_struct", "pid")?,
        tgid: btf.offset_of("task_struct", "tgid")?,
        prio: btf.offset_of("task_struct", "prio")?,
        comm: btf.offset_of("task_struct", "comm")?,
        cpu,
        sum_exec: btf.offset_of("task_struct", "se.sum_exec_runtime")?,
        nvcsw: btf.offset_of("task_struct", "nvcsw")?,
        nivcsw: btf.offset_of("task_struct", "nivcsw")?,
        group_leader: btf.offset_of("task_struct", "group_leader")?,
        ..Default::default()
    })
}

/// What the kernel side needs to tell why a target thread left the CPU
/// (`schedtrace_common::WhyConfig`): where a task's saved user registers
/// keep the system call number (x86-64 only: `orig_ax`, with `ax` telling
/// a system call from an exception), the `in_iowait` bit, `on_cpu` and
/// `on_rq`.
/// What this kernel lacks stays 0 and is not recorded.
pub(crate) fn why_config(btf: &Btf) -> schedtrace_common::WhyConfig {
    let mut c = schedtrace_common::WhyConfig::default();
    if cfg!(target_arch = "x86_64")
        && let (Ok(orig), Ok(ax)) = (
            btf.offset_of("pt_regs", "orig_ax"),
            btf.offset_of("pt_regs", "ax"),
        )
        && ax != 0
    {
        c.regs_orig_ax = orig;
        c.regs_ax = ax;
    }
    match btf.bit_offset_of("task_struct", "in_iowait") {
        Ok(bit) => {
            c.in_iowait = bit / 8;
            c.in_iowait_mask = 1 << (bit % 8);
        }
        Err(e) => log::info!("no I/O-wait flag in wait reasons: {e}"),
    }
    c.on_cpu = btf.offset_of("task_struct", "on_cpu").unwrap_or(0);
    c.on_rq = btf.offset_of("task_struct", "on_rq").unwrap_or(0);
    c
}

/// `PIDTYPE_TGID` in `enum pid_type` (stable since Linux 4.19).
const PIDTYPE_TGID: u32 = 1;

/// Add the offsets that tell a process by identity rather than by number
/// (`task->signal->pids[PIDTYPE_TGID]->ino`, see `crate::identity`). `struct
/// pid` has `ino` since Linux 6.9 (pidfs); older kernels lack it.
pub fn add_identity_offsets(
    btf: &Btf,
    offs: &mut schedtrace_common::TaskOffsets,
) -> Result<(), BtfError> {
    let ptr = 8;
    offs.signal = btf.offset_of("task_struct", "signal")?;
    offs.signal_pids_tgid = btf.offset_of("signal_struct", "pids")? + PIDTYPE_TGID * ptr;
    offs.pid_ino = btf.offset_of("pid", "ino")?;
    // For the program to tell when a followed process has ended: both or
    // neither, as it tests `signal_live` alone (both fields are decades
    // old; without them, userspace's sweep alone removes ended processes
    // from the kernel's map).
    if let (Ok(flags), Ok(live)) = (
        btf.offset_of("task_struct", "flags"),
        btf.offset_of("signal_struct", "live"),
    ) {
        offs.flags = flags;
        offs.signal_live = live;
    }
    Ok(())
}

/// Add the offsets of the kernel's `sched_info` accounting (run delay,
/// switch-ins, last arrival) and of the path to the run-queue clock
/// (`se.cfs_rq->rq->clock`), and mark them present. They need
/// `CONFIG_SCHED_INFO` and `CONFIG_FAIR_GROUP_SCHED`; `--no-wakeups` cannot
/// do without them, a trace with wakeups records what it can
/// (`schedtrace_common::FLAG_NO_SCHED_INFO`).
pub(crate) fn add_sched_info_offsets(
    btf: &Btf,
    offs: &mut schedtrace_common::TaskOffsets,
) -> Result<(), BtfError> {
    offs.run_delay = btf.offset_of("task_struct", "sched_info.run_delay")?;
    offs.last_queued = btf.offset_of("task_struct", "sched_info.last_queued")?;
    offs.pcount = btf.offset_of("task_struct", "sched_info.pcount")?;
    offs.last_arrival = btf.offset_of("task_struct", "sched_info.last_arrival")?;
    offs.cfs_rq = btf.offset_of("task_struct", "se.cfs_rq")?;
    offs.cfs_rq_rq = btf.offset_of("cfs_rq", "rq")?;
    offs.rq_clock = btf.offset_of("rq", "clock")?;
    offs.rq_clock_task = btf.offset_of("rq", "clock_task")?;
    offs.exec_start = btf.offset_of("task_struct", "se.exec_start")?;
    offs.has_sched_info = 1;
    Ok(())
}

/// Add what `sched_waking` needs to tell the context of a wakeup: where
/// `preempt_count` lives (the per-CPU `__preempt_count` on x86, reached
/// from the CPU's `runqueues` entry, so it needs the run-queue path of
/// [`add_sched_info_offsets`]; `thread_info.preempt_count` elsewhere), and
/// `struct hrtimer`'s `function` and `is_soft` to name timer callbacks.
/// Returns what is missing, for a warning: the program then records the
/// context as unknown, or leaves timers unnamed.
pub fn add_wake_context_offsets(
    btf: &Btf,
    offs: &mut schedtrace_common::TaskOffsets,
) -> Vec<String> {
    let mut missing = Vec::new();
    if let Ok(o) = btf.offset_of("task_struct", "thread_info.preempt_count") {
        offs.preempt_count_in_task = o;
    } else {
        let pc = btf.var_offset(".data..percpu", "__preempt_count");
        let rq = btf.var_offset(".data..percpu", "runqueues");
        match (pc, rq) {
            (Some(pc), Some(rq)) if offs.has_sched_info != 0 => {
                offs.preempt_count_from_rq = (i64::from(pc) - i64::from(rq)) as i32;
            }
            (None, _) => missing.push("per-CPU variable __preempt_count".to_string()),
            (_, None) => missing.push("per-CPU variable runqueues".to_string()),
            _ => missing.push("the run-queue path (sched_info offsets)".to_string()),
        }
    }
    match (
        btf.offset_of("hrtimer", "function"),
        btf.offset_of("hrtimer", "is_soft"),
    ) {
        (Ok(f), Ok(s)) => {
            offs.hrtimer_function = f;
            offs.hrtimer_is_soft = s;
        }
        (Err(e), _) | (_, Err(e)) => missing.push(e.to_string()),
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-made BTF blob: `struct inner { int a; int cpu; }` and
    /// `struct task_struct { struct inner thread_info; union { int x; int pid; }; int tgid; }`.
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0inner\0a\0cpu\0task_struct\0thread_info\0x\0pid\0tgid\0";
        let s = |name: &str| -> u32 {
            let pat = format!("\0{name}\0");
            strings
                .windows(pat.len())
                .position(|w| w == pat.as_bytes())
                .unwrap() as u32
                + 1
        };
        let mut t = Vec::new();
        let mut push = |v: &[u32]| v.iter().for_each(|x| t.extend_from_slice(&x.to_le_bytes()));
        // 1: int
        push(&[s("int"), KIND_INT << 24, 4, 32]);
        // 2: struct inner
        push(&[s("inner"), (KIND_STRUCT << 24) | 2, 8]);
        push(&[s("a"), 1, 0]);
        push(&[s("cpu"), 1, 32]);
        // 3: anonymous union
        push(&[0, (KIND_UNION << 24) | 2, 4]);
        push(&[s("x"), 1, 0]);
        push(&[s("pid"), 1, 0]);
        // 4: struct task_struct
        push(&[s("task_struct"), (KIND_STRUCT << 24) | 3, 16]);
        push(&[s("thread_info"), 2, 0]);
        push(&[0, 3, 64]);
        push(&[s("tgid"), 1, 96]);
        let mut b = Vec::new();
        b.extend_from_slice(&BTF_MAGIC.to_le_bytes());
        b.extend_from_slice(&[1, 0]);
        for v in [
            24u32,
            0,
            t.len() as u32,
            t.len() as u32,
            strings.len() as u32,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&t);
        b.extend_from_slice(strings);
        b
    }

    #[test]
    fn finds_nested_and_anonymous_fields() {
        let btf = Btf::parse(&blob()).unwrap();
        assert_eq!(btf.offset_of("task_struct", "thread_info.cpu").unwrap(), 4);
        assert_eq!(btf.offset_of("task_struct", "pid").unwrap(), 8);
        assert_eq!(btf.offset_of("task_struct", "tgid").unwrap(), 12);
        assert!(matches!(
            btf.offset_of("task_struct", "nope"),
            Err(BtfError::NoField(..))
        ));
        assert!(matches!(
            btf.offset_of("nope", "pid"),
            Err(BtfError::NoStruct(..))
        ));
    }

    #[test]
    fn sched_info_offsets_name_what_the_kernel_lacks() {
        // The hand-made `task_struct` has no `sched_info`: the error says which.
        let btf = Btf::parse(&blob()).unwrap();
        let mut o = schedtrace_common::TaskOffsets::default();
        let e = add_sched_info_offsets(&btf, &mut o).unwrap_err();
        assert!(
            matches!(&e, BtfError::NoField(s, f) if s == "task_struct" && f == "sched_info.run_delay"),
            "{e}"
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(Btf::parse(&[1, 2, 3]), Err(BtfError::BadHeader)));
        assert!(matches!(
            Btf::parse(&[0x9f, 0xeb, 1]),
            Err(BtfError::Truncated)
        ));
        assert!(matches!(Btf::parse(&[0; 32]), Err(BtfError::BadHeader)));
    }

    #[test]
    fn running_kernel_has_task_offsets() {
        // Readable without root on most systems; skip only when absent.
        let Ok(btf) = read_kernel_btf().and_then(|b| Btf::parse(&b)) else {
            eprintln!("no /sys/kernel/btf/vmlinux here");
            return;
        };
        let mut o = task_offsets(&btf).unwrap();
        assert!(o.pid > 0 && o.tgid == o.pid + 4, "{o:?}");
        assert!(o.sum_exec > 0 && o.nivcsw == o.nvcsw + 8, "{o:?}");
        add_sched_info_offsets(&btf, &mut o).unwrap();
        assert_eq!(o.has_sched_info, 1);
        // `struct sched_info`: pcount, run_delay, ..., last_arrival, last_queued.
        assert!(
            o.pcount < o.run_delay && o.run_delay < o.last_arrival,
            "{o:?}"
        );
        let missing = add_wake_context_offsets(&btf, &mut o);
        assert!(missing.is_empty(), "{missing:?}");
        assert!(
            o.preempt_count_from_rq != 0 || o.preempt_count_in_task != 0,
            "{o:?}"
        );
        // `last_queued` follows `run_delay` in `struct sched_info`.
        assert!(
            o.last_queued > o.run_delay && o.cfs_rq > 0 && o.rq_clock > 0,
            "{o:?}"
        );
        assert!(o.comm > o.tgid);
        assert!(btf.has_typedef("btf_trace_sched_switch"));
        assert!(!btf.has_typedef("btf_trace_no_such_tracepoint"));
    }

    /// The running kernel's own BTF, where a test can read it (it is
    /// world-readable on most systems).
    #[test]
    fn why_config_from_the_running_kernel() {
        let Ok(bytes) = std::fs::read("/sys/kernel/btf/vmlinux") else {
            return;
        };
        let btf = Btf::parse(&bytes).unwrap();
        let c = why_config(&btf);
        if cfg!(target_arch = "x86_64") {
            // x86-64's `struct pt_regs` is user ABI (ptrace): ax is the
            // 11th and orig_ax the 16th 8-byte word.
            assert_eq!((c.regs_ax, c.regs_orig_ax), (80, 120));
        }
        // `in_iowait` is a one-bit field: one bit of the byte it is in.
        assert_eq!(c.in_iowait_mask.count_ones(), 1, "{c:?}");
        assert!(c.in_iowait_mask < 0x100);
        let bit = btf.bit_offset_of("task_struct", "in_iowait").unwrap();
        assert_eq!(c.in_iowait * 8 + c.in_iowait_mask.trailing_zeros(), bit);
        assert_ne!(c.on_cpu, 0);
        assert_ne!(c.on_rq, 0);
    }
}
