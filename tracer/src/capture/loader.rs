//! Loading and attaching the kernel side: privilege checks, the task-struct
//! offsets from BTF, the globals that arm the filter, the `tp_btf`
//! attachments, and the maps userspace reads afterwards.

use anyhow::{Context as _, anyhow, bail};
use aya::{
    EbpfLoader,
    maps::{HashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        BtfTracePoint, ProgramError, RawTracePoint, RawTracePointRunOptions, TestRun,
        tp_btf::BtfTracePointLink,
    },
};
use schedtrace_common::{
    CgroupFilter, RawEvent, STACK_ENTRIES, STAGE_EVENTS, Stage, counter, mark_result, names,
    wake_context,
};

use crate::capture::btf::{self, Btf};
use crate::ebpf_object::EBPF_OBJECT;

/// The wakeup tracepoint `--no-wakeups` leaves unattached.
pub(crate) const WAKING: &str = "sched_waking";

/// Tracepoints we attach to (as `tp_btf`); each program is named after its tracepoint.
/// `sched_switch` comes last: once switches are recorded, so are the
/// wakeups, forks and exits that explain them. `hrtimer_expire_entry` (the
/// timer tick among others) writes out records a busy CPU has staged for a
/// while (see `schedtrace_common::Stage`).
pub(crate) const TRACEPOINTS: &[&str] = &[
    "sched_process_fork",
    "sched_process_exec",
    "sched_process_exit",
    "sched_wakeup_new",
    "sched_waking",
    "sched_migrate_task",
    "hrtimer_expire_entry",
    "sched_switch",
];

/// The programs that keep `schedtrace_common::IrqState`, so that `sched_waking`
/// can tell (and name) a wakeup raised in an interrupt: attached with
/// wakeups, exits before entries (an entry whose exit is not yet attached
/// would leave its mark set), each where this kernel has the tracepoint
/// (`irq_work_*` are x86's). `hrtimer_expire_entry` is in [`TRACEPOINTS`].
pub(crate) const WAKE_CONTEXT_TRACEPOINTS: &[&str] = &[
    "hrtimer_expire_exit",
    "softirq_exit",
    "irq_handler_exit",
    "csd_function_exit",
    "irq_work_exit",
    "softirq_entry",
    "irq_handler_entry",
    "csd_function_entry",
    "irq_work_entry",
];

/// Kernel-side options beyond [`LoadOptions`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Extras {
    /// How `sched_waking` tells a wakeup's context
    /// (`schedtrace_common::wake_context`); `None`: the default,
    /// [`schedtrace_common::wake_context::IRQ_STATE`].
    pub wake_context: Option<u32>,
}

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// How to arm the kernel side.
#[derive(Clone, Debug)]
pub(crate) struct LoadOptions {
    pub target_tgid: u32,
    /// The target's identity (`crate::identity::ProcessHandle::ino`): the
    /// filter matches only that process, not a later one with its TGID.
    pub target_ino: Option<u64>,
    /// The further processes of a repeated `--pid` (TGID, identity), put in
    /// the kernel's map of targets before any program is attached.
    pub also: Vec<(u32, Option<u64>)>,
    pub follow_children: bool,
    /// `--all`: every task is a target but those of this TGID (ours).
    pub all_but: Option<u32>,
    /// `--cgroup`: the traced cgroup's id (the directory's inode number).
    /// Processes that enter it become targets in the kernel.
    pub cgroup: Option<u64>,
    /// `--comm`: processes that exec or are renamed to a name it matches
    /// become targets in the kernel.
    pub comm: Option<schedtrace_common::NamePattern>,
    /// Ring buffer size in bytes (power of two, multiple of the page size).
    pub ring_bytes: u32,
    /// Wake the reader once this many bytes are waiting.
    pub wakeup_bytes: u64,
    /// Attach `sched_waking`. Without it, switch records carry the kernel's
    /// run-queue wait instead (`FLAG_RUN_DELAY`).
    pub wakeups: bool,
    /// Record kernel and user stacks where target threads go to sleep.
    pub stacks: bool,
    /// Record other tasks' switches on CPUs where a target thread waits
    /// to run (attaches `sched_waking` even without wakeups).
    pub antagonists: bool,
    /// Record the system call and I/O wait of target switch-outs.
    pub wait_reasons: bool,
    /// CPUs the kernel may have (sizes the per-CPU `WAITING` array).
    pub ncpus: u32,
    /// `--kernel-sums`: target switches update per-thread sums in the
    /// kernel instead of writing records.
    pub kernel_sums: bool,
    pub verbose: bool,
}

/// What running the heartbeat on a CPU did (see [`Probes::mark`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mark {
    /// The CPU wrote its stage and a mark record to the ring buffer.
    Written,
    /// A program on the CPU held its stage, or the ring buffer was full:
    /// no mark this time.
    NotNow,
    /// The CPU is offline: it has nothing to write and will not have
    /// before it comes back.
    Offline,
}

/// The loaded, attached programs and the maps we read.
pub(crate) struct Probes {
    /// Owns the programs (and the maps not taken out): dropping it unloads them.
    ebpf: aya::Ebpf,
    /// The attachments: dropping them detaches the programs.
    links: Vec<BtfTracePointLink>,
    /// The heartbeat program loaded (see [`Self::mark`]).
    mark_loaded: bool,
    events: Option<RingBuf<MapData>>,
    pub lost: PerCpuArray<MapData, u64>,
    stage: PerCpuArray<MapData, Stage>,
    /// The targets besides the first (TGID → identity): followed children
    /// (`--follow-children`) and further `--pid`s.
    pub children: Option<HashMap<MapData, u32, u64>>,
    /// The off-CPU stacks, with `--stacks`.
    pub stacks: Option<HashMap<MapData, u32, schedtrace_common::StackFrames>>,
    /// `--kernel-sums`: the threads' sums (task storage, read by pidfd)
    /// and the ended threads' (see [`super::sums`]).
    pub sums: Option<super::sums::SumsMaps>,
    /// The filter compares processes' identities, not only their TGIDs.
    identity: bool,
    /// When the last program was attached (`CLOCK_MONOTONIC`, as events'
    /// timestamps): the stream is complete from here on.
    pub attached_ns: u64,
    pub logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
}

impl Probes {
    /// The ring buffer, for the reader to own (once).
    pub(crate) fn events_take(&mut self) -> RingBuf<MapData> {
        self.events.take().expect("ring buffer taken twice")
    }

    /// Add processes (TGID, identity) to the kernel's targets, once the
    /// programs are attached.
    pub(crate) fn add_targets(&mut self, procs: &[(u32, Option<u64>)]) -> anyhow::Result<()> {
        if procs.is_empty() {
            return Ok(());
        }
        let identity = self.identity;
        let map = self
            .children
            .as_mut()
            .ok_or_else(|| anyhow!("no map of further targets was loaded"))?;
        for &(tgid, ino) in procs {
            let ino = ino.filter(|_| identity).unwrap_or(0);
            map.insert(tgid, ino, 0)
                .with_context(|| format!("adding process {tgid} to the kernel's targets"))?;
        }
        Ok(())
    }

    /// Detach every program (the maps stay readable, the heartbeat runnable).
    pub(crate) fn detach(&mut self) {
        self.links.clear();
    }

    /// Is there a heartbeat program to run? (Without one, events can only
    /// be put in order by holding them back for a while.)
    pub(crate) fn can_mark(&self) -> bool {
        self.mark_loaded
    }

    /// Run the heartbeat program on `cpu` (an IPI, or directly on our own
    /// CPU): it writes that CPU's stage and then a mark record to the ring
    /// buffer, unless a program there holds the stage.
    pub(crate) fn mark(&mut self, cpu: u32) -> anyhow::Result<Mark> {
        let prog: &mut RawTracePoint = self
            .ebpf
            .program_mut(names::PROGRESS_MARK)
            .ok_or_else(|| anyhow!("program {} missing", names::PROGRESS_MARK))?
            .try_into()?;
        let opts = RawTracePointRunOptions {
            cpu: Some(cpu),
            ..Default::default()
        };
        match prog.test_run(opts) {
            Ok(r) if r.return_value == mark_result::WRITTEN => Ok(Mark::Written),
            Ok(_) => Ok(Mark::NotNow),
            Err(ProgramError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::ENXIO) =>
            {
                Ok(Mark::Offline)
            }
            Err(e) => {
                Err(anyhow::Error::new(e).context(format!("running the heartbeat on CPU {cpu}")))
            }
        }
    }

    /// Counter `index` of the `LOST` array, per CPU.
    pub(crate) fn lost_per_cpu(&self, index: u32) -> Vec<u64> {
        self.lost
            .get(&index, 0)
            .map(|v| v.iter().copied().collect())
            .unwrap_or_default()
    }

    pub(crate) fn lost_events_per_cpu(&self) -> Vec<u64> {
        self.lost_per_cpu(counter::LOST_EVENTS)
    }

    /// Processes the programs could not add to the map of further targets
    /// (it was full), over all CPUs.
    pub(crate) fn lost_processes(&self) -> u64 {
        self.lost_per_cpu(counter::LOST_CHILDREN).iter().sum()
    }

    /// Runs the kernel skipped, summed over our programs: a program is not
    /// run on a CPU where it (or, for these program types, any tracing
    /// program) is already running, and the kernel counts that in the
    /// program's `recursion_misses`. `None` if a program's count could not
    /// be read (kernels before 5.12 have none).
    pub(crate) fn recursion_misses(&self) -> Option<u64> {
        use std::os::fd::{AsFd as _, AsRawFd as _};
        let ebpf = &self.ebpf;
        let mut total = 0u64;
        for (_, prog) in ebpf.programs() {
            let Ok(fd) = prog.fd() else {
                continue; // not loaded (a tracepoint this kernel lacks)
            };
            let info = prog_info(fd.as_fd().as_raw_fd())?;
            total = total.saturating_add(info.recursion_misses);
        }
        Some(total)
    }

    /// The instruction addresses of stack `id` (innermost first), if the
    /// stack map has it.
    pub(crate) fn stack(&self, id: u32) -> Option<Vec<u64>> {
        let st = self.stacks.as_ref()?.get(&id, 0).ok()?;
        let frames = usize::try_from(st.len / 8).ok()?.min(st.ips.len());
        Some(st.ips[..frames].to_vec())
    }

    /// Records still waiting in the CPUs' stages; read after [`Self::detach`]
    /// so that no program changes them meanwhile.
    pub(crate) fn staged_events(&self) -> anyhow::Result<Vec<RawEvent>> {
        let stages = self
            .stage
            .get(&0, 0)
            .context("reading the per-CPU stages")?;
        Ok(stages
            .iter()
            .flat_map(|s| {
                s.events[..(s.len as usize).min(STAGE_EVENTS)]
                    .iter()
                    .copied()
            })
            .collect())
    }
}

/// The start of the kernel's `struct bpf_prog_info` (uapi `linux/bpf.h`),
/// up to `recursion_misses` (Linux 5.12); the kernel fills what it has of
/// the length we give.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct ProgInfoHead {
    type_: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; 16],
    ifindex: u32,
    gpl_compatible: u32,
    netns_dev: u64,
    netns_ino: u64,
    nr_jited_ksyms: u32,
    nr_jited_func_lens: u32,
    jited_ksyms: u64,
    jited_func_lens: u64,
    btf_id: u32,
    func_info_rec_size: u32,
    func_info: u64,
    nr_func_info: u32,
    nr_line_info: u32,
    line_info: u64,
    jited_line_info: u64,
    nr_jited_line_info: u32,
    line_info_rec_size: u32,
    jited_line_info_rec_size: u32,
    nr_prog_tags: u32,
    prog_tags: u64,
    run_time_ns: u64,
    run_cnt: u64,
    recursion_misses: u64,
}

/// `BPF_OBJ_GET_INFO_BY_FD` for the program `fd` (aya 0.14's
/// `ProgramInfo` does not expose `recursion_misses`).
fn prog_info(fd: i32) -> Option<ProgInfoHead> {
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    /// The `info` member of `union bpf_attr`.
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let mut info = ProgInfoHead::default();
    let mut attr = InfoAttr {
        bpf_fd: fd as u32,
        info_len: size_of::<ProgInfoHead>() as u32,
        info: std::ptr::from_mut(&mut info) as u64,
    };
    // SAFETY: `attr` is a valid bpf_attr prefix for this command; the
    // kernel writes at most `info_len` bytes to `info`, which is that long.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            std::ptr::from_mut(&mut attr),
            size_of::<InfoAttr>() as u32,
        )
    };
    // A kernel without the field gives a shorter length back.
    let full = std::mem::offset_of!(ProgInfoHead, recursion_misses) + 8;
    (r == 0 && attr.info_len as usize >= full).then_some(info)
}

/// Load the heartbeat program (never attached). Without it the capture
/// orders events by holding them back, and says so; a kernel that refuses
/// it is logged, not fatal.
fn load_mark(ebpf: &mut aya::Ebpf, verbose: bool) -> bool {
    let prog: Result<&mut RawTracePoint, _> = match ebpf.program_mut(names::PROGRESS_MARK) {
        Some(p) => p.try_into(),
        None => return false,
    };
    match prog.map(|p| p.load()) {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            log::warn!("{:#}", load_error(names::PROGRESS_MARK, e, verbose));
            false
        }
        Err(e) => {
            log::warn!("program {}: {e}", names::PROGRESS_MARK);
            false
        }
    }
}

/// Effective capability set of this process.
fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Fail early, with what to do, when we cannot load BPF programs.
pub(crate) fn check_privileges() -> anyhow::Result<()> {
    let caps = effective_caps().unwrap_or(0);
    let has = |c: u32| caps & (1u64 << c) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        bail!(
            "running as root but without CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN): \
             schedtrace needs them to load its eBPF programs; run it outside the \
             restricted environment"
        );
    }
    bail!(
        "schedtrace needs root to load its eBPF programs (CAP_BPF and CAP_PERFMON, or \
         CAP_SYS_ADMIN): run it with sudo"
    )
}

/// Raise RLIMIT_MEMLOCK for kernels that still charge BPF maps to it.
/// Newer kernels use memory cgroups instead, so failing is only a warning.
pub(crate) fn raise_memlock() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: valid pointer to an rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        log::info!(
            "cannot raise RLIMIT_MEMLOCK ({}); fine on kernels >= 5.11, which account BPF \
             memory to cgroups",
            std::io::Error::last_os_error()
        );
    }
}

/// Explain a failed program load; the verifier log only with `--verbose`.
fn load_error(name: &str, e: ProgramError, verbose: bool) -> anyhow::Error {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            if verbose {
                anyhow!(
                    "the kernel rejected program {name}: {io_error}\nverifier log:\n{verifier_log}"
                )
            } else {
                anyhow!(
                    "the kernel rejected program {name}: {io_error} (run with --verbose for the \
                     verifier log)"
                )
            }
        }
        other => anyhow::Error::new(other).context(format!("loading program {name}")),
    }
}

/// Check that this kernel has every tracepoint we need: each has a
/// `btf_trace_<name>` typedef in the kernel's BTF.
fn check_tracepoints(btf: &Btf) -> anyhow::Result<()> {
    let missing: Vec<&str> = TRACEPOINTS
        .iter()
        .copied()
        .filter(|tp| !btf.has_typedef(&format!("btf_trace_{tp}")))
        .collect();
    if !missing.is_empty() {
        bail!(
            "this kernel lacks the tracepoints {} (needs CONFIG_TRACEPOINTS with the sched \
             and timer events, and BTF for them)",
            missing.join(", ")
        );
    }
    Ok(())
}

fn take_map(ebpf: &mut aya::Ebpf, name: &str) -> anyhow::Result<aya::maps::Map> {
    ebpf.take_map(name)
        .ok_or_else(|| anyhow!("map {name} missing from the eBPF object"))
}

/// Load the programs with the filter armed for `opts.target_tgid` and attach
/// them. When this returns, every event of the target reaches the ring buffer.
pub(crate) fn load_and_attach(opts: &LoadOptions) -> anyhow::Result<Probes> {
    load_and_attach_with(opts, &Extras::default())
}

/// The kernel offsets the programs need, from the kernel's BTF. Counters
/// from `sched_info` are optional with wakeups traced (the records say
/// they are missing) and required without.
fn kernel_offsets(btf: &Btf, opts: &LoadOptions) -> anyhow::Result<schedtrace_common::TaskOffsets> {
    let mut offsets = btf::task_offsets(btf).context("reading task_struct offsets from BTF")?;
    if let Err(e) = btf::add_sched_info_offsets(btf, &mut offsets) {
        if opts.kernel_sums {
            return Err(anyhow::Error::new(e).context(
                "--kernel-sums reads the scheduler's own stamps (sched_info, the run \
                 queue's clock), which this kernel's BTF does not show (it needs \
                 CONFIG_SCHED_INFO and CONFIG_FAIR_GROUP_SCHED)",
            ));
        }
        if !opts.wakeups {
            return Err(anyhow::Error::new(e).context(
                "--no-wakeups reads the kernel's run-queue wait accounting, which this \
                 kernel's BTF does not show (it needs CONFIG_SCHED_INFO and \
                 CONFIG_FAIR_GROUP_SCHED); trace with wakeups instead",
            ));
        }
        log::warn!(
            "this kernel's BTF lacks {e} (CONFIG_SCHED_INFO, CONFIG_FAIR_GROUP_SCHED): \
             switch records carry on-CPU totals and switch counts but no run delay, \
             switch-in counts or run-queue clock"
        );
    }
    if opts.wakeups {
        let missing = btf::add_wake_context_offsets(btf, &mut offsets);
        if !missing.is_empty() {
            log::warn!(
                "cannot tell interrupt wakeups from task wakeups fully: this kernel's BTF \
                 lacks {}",
                missing.join(", ")
            );
        }
    }
    if let Err(e) = btf::add_identity_offsets(btf, &mut offsets) {
        log::warn!(
            "this kernel has no pidfs inode numbers ({e}): a PID reused after the target \
             exits may be traced until schedtrace notices the exit"
        );
    }
    Ok(offsets)
}

/// [`load_and_attach`] with the kernel-side [`Extras`].
pub(crate) fn load_and_attach_with(opts: &LoadOptions, extras: &Extras) -> anyhow::Result<Probes> {
    check_privileges()?;
    raise_memlock();
    let btf_bytes = btf::read_kernel_btf().map_err(no_btf)?;
    let facts = kernel_facts(&btf_bytes, opts)?;
    let wake_context = wake_context_mode(opts, extras, &facts.offsets)?;
    log::debug!(
        "task_struct offsets: {:?}, wait reasons: {:?}",
        facts.offsets,
        facts.why
    );
    let (mut ebpf, kernel_btf) = load_object(btf_bytes, opts, &facts, wake_context)?;
    let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
        Ok(l) => Some(l),
        Err(e) => {
            log::warn!("kernel-side log messages unavailable: {e}");
            None
        }
    };
    // Take the maps before attaching so no event can be missed for want of a reader.
    let events = RingBuf::try_from(take_map(&mut ebpf, names::EVENTS)?)?;
    let lost = PerCpuArray::try_from(take_map(&mut ebpf, names::LOST)?)?;
    let stage = PerCpuArray::try_from(take_map(&mut ebpf, names::STAGE)?)?;
    let children = if traces_others(opts) {
        Some(targets_map(&mut ebpf, opts, &facts.offsets)?)
    } else {
        None
    };
    let stacks = if opts.stacks {
        Some(HashMap::try_from(take_map(&mut ebpf, names::STACKS)?)?)
    } else {
        None
    };
    let sums = if opts.kernel_sums {
        Some(super::sums::SumsMaps {
            task: take_map(&mut ebpf, names::SUMS_TASK)?,
            ended: HashMap::try_from(take_map(&mut ebpf, names::SUMS_ENDED)?)?,
        })
    } else {
        None
    };
    if let Some(maps) = &sums {
        let mut targets = vec![(opts.target_tgid, opts.target_ino)];
        targets.extend(&opts.also);
        let made = maps.prepare(&targets)?;
        log::debug!("made the sums of {made} threads before attaching");
    }
    let mark_loaded = load_mark(&mut ebpf, opts.verbose);
    let tracepoints = tracepoints_to_attach(opts, wake_context, &facts.present);
    let links = attach(&mut ebpf, &tracepoints, &kernel_btf, opts.verbose)?;
    let attached_ns = crate::procfs::monotonic_ns();
    Ok(Probes {
        ebpf,
        links,
        mark_loaded,
        events: Some(events),
        lost,
        stage,
        children,
        stacks,
        sums,
        logger,
        identity: facts.offsets.pid_ino != 0,
        attached_ns,
    })
}

/// The error for a kernel BTF that cannot be read or parsed.
fn no_btf(e: btf::BtfError) -> anyhow::Error {
    anyhow!(
        "cannot read the kernel's BTF ({e}): schedtrace needs a kernel built with \
         CONFIG_DEBUG_INFO_BTF to find task_struct fields and attach its programs (or \
         SCHEDTRACE_BTF=path to a vmlinux BTF file)"
    )
}

/// What the programs need to know of this kernel, from its BTF.
struct KernelFacts {
    offsets: schedtrace_common::TaskOffsets,
    /// The wake-context tracepoints this kernel has.
    present: Vec<&'static str>,
    why: schedtrace_common::WhyConfig,
    cgroup: CgroupFilter,
}

/// Read [`KernelFacts`] from the kernel's BTF, and check that it has the
/// tracepoints schedtrace cannot do without.
fn kernel_facts(btf_bytes: &[u8], opts: &LoadOptions) -> anyhow::Result<KernelFacts> {
    let btf = Btf::parse(btf_bytes).map_err(no_btf)?;
    check_tracepoints(&btf)?;
    let present = WAKE_CONTEXT_TRACEPOINTS
        .iter()
        .copied()
        .filter(|tp| btf.has_typedef(&format!("btf_trace_{tp}")))
        .collect();
    let cgroup = match opts.cgroup {
        Some(id) => cgroup_filter(&btf, id)?,
        None => CgroupFilter::default(),
    };
    Ok(KernelFacts {
        offsets: kernel_offsets(&btf, opts)?,
        present,
        why: btf::why_config(&btf),
        cgroup,
    })
}

/// How a wakeup's context is told (`wake_context::*`): as the caller
/// forces it, else from the interrupt programs' state when wakeups are
/// recorded.
fn wake_context_mode(
    opts: &LoadOptions,
    extras: &Extras,
    offsets: &schedtrace_common::TaskOffsets,
) -> anyhow::Result<u32> {
    let mode = match extras.wake_context {
        Some(m) => m,
        None if opts.wakeups => wake_context::IRQ_STATE,
        None => wake_context::OFF,
    };
    if mode == wake_context::PREEMPT_COUNT
        && offsets.preempt_count_from_rq == 0
        && offsets.preempt_count_in_task == 0
    {
        bail!("this kernel's BTF does not show where preempt_count is");
    }
    Ok(mode)
}

/// Are processes besides the first target traced (the kernel's map of
/// targets is then in use)?
fn traces_others(opts: &LoadOptions) -> bool {
    opts.follow_children
        || !opts.also.is_empty()
        || opts.cgroup.is_some()
        || opts.comm.is_some()
        || opts.all_but.is_some()
}

/// Load the eBPF object with its globals set for `opts` and this kernel,
/// and its maps sized; with aya's view of the kernel's BTF (`btf_bytes`),
/// which the programs are verified against.
fn load_object(
    btf_bytes: Vec<u8>,
    opts: &LoadOptions,
    facts: &KernelFacts,
    wake_context: u32,
) -> anyhow::Result<(aya::Ebpf, aya::Btf)> {
    let target_ino = match opts.target_ino {
        Some(ino) if facts.offsets.pid_ino != 0 => ino,
        _ => 0,
    };
    let follow: u32 = opts.follow_children.into();
    let all_but = opts.all_but.unwrap_or(0);
    let other_targets: u32 = traces_others(opts).into();
    let run_delay: u32 = (!opts.wakeups).into();
    let sums: u32 = opts.kernel_sums.into();
    let why = if opts.wait_reasons {
        facts.why
    } else {
        schedtrace_common::WhyConfig {
            on_cpu: facts.why.on_cpu,
            on_rq: facts.why.on_rq,
            ..Default::default()
        }
    };
    let why = schedtrace_common::WhyConfig {
        stacks: opts.stacks.into(),
        antagonists: opts.antagonists.into(),
        ..why
    };
    let comm = opts.comm.unwrap_or(schedtrace_common::NamePattern::NONE);
    // aya's own view of the same BTF: it names the `btf_trace_*` types the
    // programs attach to. Each parse of vmlinux BTF costs megabytes, so only
    // one lives at a time: the loader's default one goes first.
    let mut loader = EbpfLoader::new();
    loader.btf(None);
    let kernel_btf =
        aya::Btf::parse(&btf_bytes, Default::default()).context("parsing the kernel's BTF")?;
    drop(btf_bytes);
    let ebpf = loader
        .btf(Some(&kernel_btf))
        .override_global(names::TARGET_TGID, &opts.target_tgid, true)
        .override_global(names::TARGET_INO, &target_ino, true)
        .override_global(names::FOLLOW_CHILDREN, &follow, true)
        .override_global(names::OTHER_TARGETS, &other_targets, true)
        .override_global(names::ALL_BUT, &all_but, true)
        .override_global(names::WAKEUP_BYTES, &opts.wakeup_bytes, true)
        .override_global(names::RUN_DELAY, &run_delay, true)
        .override_global(names::WAKE_CONTEXT, &wake_context, true)
        .override_global(names::OFFSETS, &facts.offsets, true)
        .override_global(names::WHY, &why, true)
        .override_global(names::CGROUP, &facts.cgroup, true)
        .override_global(names::COMM_PATTERN, &comm, true)
        .override_global(names::SUMS, &sums, true)
        .map_max_entries(names::EVENTS, opts.ring_bytes)
        .map_max_entries(names::STACKS, if opts.stacks { STACK_ENTRIES } else { 1 })
        .map_max_entries(names::WAITING, opts.ncpus.max(1))
        .map_max_entries(
            names::SUMS_ENDED,
            if opts.kernel_sums {
                schedtrace_common::MAX_SUMS_ENDED
            } else {
                1
            },
        )
        // `QUEUED` and `SUMS_TASK` are task local storage, which aya
        // creates but has no type for (`SUMS_TASK` is read by pidfd: see
        // `super::sums`).
        .allow_unsupported_maps()
        .load(EBPF_OBJECT)
        .context("loading the eBPF object")?;
    drop(loader);
    Ok((ebpf, kernel_btf))
}

/// The kernel's map of further targets, holding the processes given
/// besides the first.
fn targets_map(
    ebpf: &mut aya::Ebpf,
    opts: &LoadOptions,
    offsets: &schedtrace_common::TaskOffsets,
) -> anyhow::Result<HashMap<MapData, u32, u64>> {
    let mut map: HashMap<MapData, u32, u64> = HashMap::try_from(take_map(ebpf, names::CHILDREN)?)?;
    for &(tgid, ino) in &opts.also {
        // As for the first target: 0 compares the TGID alone.
        let ino = ino.filter(|_| offsets.pid_ino != 0).unwrap_or(0);
        map.insert(tgid, ino, 0)
            .with_context(|| format!("adding process {tgid} to the kernel's targets"))?;
    }
    Ok(map)
}

/// The tracepoints whose programs `opts` needs, in attach order.
fn tracepoints_to_attach(
    opts: &LoadOptions,
    wake_context: u32,
    present: &[&'static str],
) -> Vec<&'static str> {
    // Without wakeups, nothing reads what the interrupt programs keep.
    let context: &[&str] = if opts.wakeups && wake_context != wake_context::OFF {
        present
    } else {
        &[]
    };
    let mut extra: Vec<&str> = Vec::new();
    if opts.cgroup.is_some() {
        extra.push(names::CGROUP_ATTACH);
    }
    if opts.comm.is_some() {
        extra.push(names::TASK_RENAME);
    }
    context
        .iter()
        .chain(&extra)
        .chain(TRACEPOINTS)
        .copied()
        // Who ran instead counts wakees at `sched_waking` (not recorded
        // then without wakeups).
        .filter(|tp| *tp != WAKING || opts.wakeups || opts.antagonists)
        .collect()
}

/// Verify every program of `tracepoints`, then attach them all.
fn attach(
    ebpf: &mut aya::Ebpf,
    tracepoints: &[&str],
    kernel_btf: &aya::Btf,
    verbose: bool,
) -> anyhow::Result<Vec<BtfTracePointLink>> {
    // Every program is verified before the first is attached: the
    // attachments then follow each other within microseconds, and the
    // stream is incomplete (some programs attached, not yet all) only
    // that long. The analysis ignores that stretch anyway (it is before
    // the trace's start, `Analyzer::before_start`); loading in between
    // made it milliseconds of events for nothing.
    for tp in tracepoints {
        program(ebpf, tp)?
            .load(tp, kernel_btf)
            .map_err(|e| load_error(tp, e, verbose))?;
    }
    let mut links = Vec::new();
    for tp in tracepoints {
        let prog = program(ebpf, tp)?;
        let id = prog
            .attach()
            .with_context(|| format!("attaching to tracepoint {tp}"))?;
        links.push(prog.take_link(id)?);
    }
    Ok(links)
}

/// The `tp_btf` program named `tp` in the object.
fn program<'a>(ebpf: &'a mut aya::Ebpf, tp: &str) -> anyhow::Result<&'a mut BtfTracePoint> {
    Ok(ebpf
        .program_mut(tp)
        .ok_or_else(|| anyhow!("program {tp} missing from the eBPF object"))?
        .try_into()?)
}

/// What the kernel side needs to see processes enter the cgroup whose id
/// is `id` (see [`CgroupFilter`]).
fn cgroup_filter(btf: &Btf, id: u64) -> anyhow::Result<CgroupFilter> {
    if !btf.has_typedef(&format!("btf_trace_{}", names::CGROUP_ATTACH)) {
        bail!(
            "this kernel lacks the tracepoint cgroup:cgroup_attach_task, which --cgroup needs \
             to see processes enter the cgroup"
        );
    }
    let f = || -> Result<CgroupFilter, btf::BtfError> {
        Ok(CgroupFilter {
            id,
            task_cgroups: btf.offset_of("task_struct", "cgroups")?,
            dfl_cgrp: btf.offset_of("css_set", "dfl_cgrp")?,
            kn: btf.offset_of("cgroup", "kn")?,
            kn_id: btf.offset_of("kernfs_node", "id")?,
            self_css: btf.offset_of("cgroup", "self")?,
            css_parent: btf.offset_of("cgroup_subsys_state", "parent")?,
        })
    };
    f().context("finding the cgroup fields in the kernel's BTF (--cgroup needs cgroup v2)")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The offsets of the uapi `struct bpf_prog_info` (x86-64 and every
    /// 64-bit architecture: all `u64` members are 8-aligned there).
    #[test]
    fn prog_info_head_has_the_kernels_layout() {
        use std::mem::offset_of;
        assert_eq!(offset_of!(ProgInfoHead, name), 64);
        assert_eq!(offset_of!(ProgInfoHead, netns_dev), 88);
        assert_eq!(offset_of!(ProgInfoHead, btf_id), 128);
        assert_eq!(offset_of!(ProgInfoHead, prog_tags), 184);
        assert_eq!(offset_of!(ProgInfoHead, run_time_ns), 192);
        assert_eq!(offset_of!(ProgInfoHead, run_cnt), 200);
        assert_eq!(offset_of!(ProgInfoHead, recursion_misses), 208);
    }

    /// A BTF blob whose only types are `typedef void <name>` for each name.
    fn typedefs(names: &[String]) -> Vec<u8> {
        let mut strings = vec![0u8];
        let mut types = Vec::new();
        for n in names {
            let name_off = strings.len() as u32;
            strings.extend_from_slice(n.as_bytes());
            strings.push(0);
            // name, info (kind 8 = typedef), type 0 (void)
            for v in [name_off, 8 << 24, 0] {
                types.extend_from_slice(&v.to_le_bytes());
            }
        }
        let mut b = vec![0x9f, 0xeb, 1, 0];
        let hdr_len = 24u32;
        let t = types.len() as u32;
        for v in [hdr_len, 0, t, t, strings.len() as u32] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&types);
        b.extend_from_slice(&strings);
        b
    }

    fn btf_without(missing: &[&str]) -> Btf {
        let names: Vec<String> = TRACEPOINTS
            .iter()
            .filter(|tp| !missing.contains(tp))
            .map(|tp| format!("btf_trace_{tp}"))
            .collect();
        Btf::parse(&typedefs(&names)).unwrap()
    }

    #[test]
    fn missing_sched_tracepoints_are_named() {
        check_tracepoints(&btf_without(&[])).unwrap();
        let e = format!(
            "{:#}",
            check_tracepoints(&btf_without(&["sched_switch"])).unwrap_err()
        );
        assert_eq!(
            e,
            "this kernel lacks the tracepoints sched_switch (needs CONFIG_TRACEPOINTS with the \
             sched and timer events, and BTF for them)"
        );
        let e = format!(
            "{:#}",
            check_tracepoints(&btf_without(&["sched_waking", "sched_switch"])).unwrap_err()
        );
        assert!(
            e.contains("tracepoints sched_waking, sched_switch ("),
            "{e}"
        );
        // Another tracepoint's typedef does not stand in for a missing one.
        let mut names: Vec<String> = TRACEPOINTS
            .iter()
            .map(|tp| format!("btf_trace_{tp}"))
            .collect();
        names.retain(|n| n != "btf_trace_sched_switch");
        names.push("btf_trace_sched_swXtch".into());
        let btf = Btf::parse(&typedefs(&names)).unwrap();
        assert!(check_tracepoints(&btf).is_err());
    }
}
