//! Names for what the kernel side records by number: the callbacks of the
//! hrtimers that wake traced threads (addresses, named from
//! `/proc/kallsyms`) and device interrupts (numbers, named from
//! `/proc/interrupts`). Both files are read once, before the programs are
//! attached: reading kallsyms costs tens of milliseconds of CPU, which must
//! not land inside the trace. Kernel addresses change at every boot
//! (KASLR), so traces carry the names, never the addresses.

use std::collections::HashMap;

use crate::event::Symbol;

/// The kernel's text symbols and interrupt names, as read at start.
#[derive(Default)]
pub(crate) struct KernelNames {
    /// Text symbol addresses, sorted, and where each name starts in `text`.
    addrs: Vec<u64>,
    starts: Vec<u32>,
    text: String,
    irqs: HashMap<u32, Symbol>,
}

impl KernelNames {
    /// Read both files; what cannot be read (or shows no addresses, under
    /// `kptr_restrict`) leaves the names unknown, with a note in the log.
    pub(crate) fn read() -> Self {
        let mut names = KernelNames::default();
        match std::fs::read_to_string("/proc/kallsyms") {
            Ok(t) => names.add_kallsyms(&t),
            Err(e) => log::info!("cannot read /proc/kallsyms ({e}): timer callbacks go unnamed"),
        }
        if names.addrs.is_empty() {
            log::info!("/proc/kallsyms shows no addresses: timer callbacks go unnamed");
        }
        if let Ok(t) = std::fs::read_to_string("/proc/interrupts") {
            names.irqs = parse_interrupts(&t);
        }
        names
    }

    /// Keep the text symbols (`t`/`T`) of `kallsyms` text with their addresses.
    fn add_kallsyms(&mut self, kallsyms: &str) {
        let mut syms: Vec<(u64, &str)> = kallsyms
            .lines()
            .filter_map(|l| {
                let mut f = l.split_ascii_whitespace();
                let addr = u64::from_str_radix(f.next()?, 16).ok()?;
                let kind = f.next()?;
                let name = f.next()?;
                (addr != 0 && (kind == "t" || kind == "T")).then_some((addr, name))
            })
            .collect();
        // Aliases share an address: the first listed wins (stable sort).
        syms.sort_by_key(|&(a, _)| a);
        syms.dedup_by_key(|&mut (a, _)| a);
        self.text.reserve(syms.iter().map(|(_, n)| n.len()).sum());
        for (addr, name) in syms {
            self.addrs.push(addr);
            self.starts.push(self.text.len() as u32);
            self.text.push_str(name);
        }
    }

    /// The function that starts at `addr` (a callback pointer points at
    /// its function's first byte; anything else is no function's name).
    pub(crate) fn function(&self, addr: u64) -> Option<Symbol> {
        let i = self.addrs.binary_search(&addr).ok()?;
        let start = self.starts[i] as usize;
        let end = self
            .starts
            .get(i + 1)
            .map_or(self.text.len(), |&e| e as usize);
        Some(Symbol::new(&self.text[start..end]))
    }

    /// The handler name of device interrupt `irq`.
    pub(crate) fn irq(&self, irq: u32) -> Option<Symbol> {
        self.irqs.get(&irq).copied()
    }
}

/// IRQ number → handler name(s), from `/proc/interrupts`: a line per
/// interrupt, `N:`, a count per CPU, the chip, the hardware IRQ and
/// trigger, then the names of the actions (joined by ", " when shared).
/// Lines of named vectors (`NMI:`, `LOC:`, ...) have no number and are
/// not device interrupts.
fn parse_interrupts(text: &str) -> HashMap<u32, Symbol> {
    let mut lines = text.lines();
    let ncpus = lines
        .next()
        .map_or(0, |h| h.split_ascii_whitespace().count());
    lines
        .filter_map(|l| {
            let mut f = l.split_ascii_whitespace();
            let irq: u32 = f.next()?.strip_suffix(':')?.parse().ok()?;
            // Counts, then chip and hardware IRQ/trigger; the rest is the name.
            let rest: Vec<&str> = f.skip(ncpus + 2).collect();
            (!rest.is_empty()).then(|| (irq, Symbol::new(&rest.join(" "))))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_are_named_by_their_exact_address() {
        let mut n = KernelNames::default();
        n.add_kallsyms(
            "ffffffff814352e0 t tick_nohz_handler\n\
             ffffffff814204b0 t hrtimer_wakeup\n\
             ffffffff814204b0 T hrtimer_wakeup_alias\n\
             ffffffff81000000 D some_data\n\
             ffffffffc0a01000 t module_timer_fn\t[kvm]\n\
             0000000000000000 t hidden\n\
             garbage\n",
        );
        let name = |a| n.function(a).map(|s| s.to_string());
        assert_eq!(
            name(0xffff_ffff_8142_04b0).as_deref(),
            Some("hrtimer_wakeup")
        );
        assert_eq!(
            name(0xffff_ffff_8143_52e0).as_deref(),
            Some("tick_nohz_handler")
        );
        assert_eq!(
            name(0xffff_ffff_c0a0_1000).as_deref(),
            Some("module_timer_fn")
        );
        // Inside a function, data, or hidden (kptr_restrict): no name.
        assert_eq!(name(0xffff_ffff_8142_04b4), None);
        assert_eq!(name(0xffff_ffff_8100_0000), None);
        assert_eq!(name(0), None);
    }

    #[test]
    fn interrupts_are_named_after_their_handlers() {
        let text = "           CPU0       CPU1\n\
              1:          9          0   IO-APIC   1-edge      i8042\n\
             24:        100        200  PCI-MSIX-0000:00:03.0   0-edge      virtio0-config\n\
             25:       4242          7  PCI-MSIX-0000:00:03.0   1-edge      virtio0-input.0, extra\n\
             26:          0          0  PCI-MSIX-0000:00:04.0   0-edge\n\
            NMI:          0          0   Non-maskable interrupts\n\
            LOC:      12345      23456   Local timer interrupts\n";
        let irqs = parse_interrupts(text);
        let name = |i| irqs.get(&i).map(|s| s.to_string());
        assert_eq!(name(1).as_deref(), Some("i8042"));
        assert_eq!(name(24).as_deref(), Some("virtio0-config"));
        assert_eq!(name(25).as_deref(), Some("virtio0-input.0, extra"));
        assert_eq!(name(26), None);
        assert_eq!(irqs.len(), 3);
    }

    /// On this machine, the callback that ends `nanosleep` has a name.
    #[test]
    fn the_running_kernel_names_hrtimer_wakeup_if_it_shows_addresses() {
        let n = KernelNames::read();
        let Some(i) = (0..n.addrs.len()).find(|&i| {
            let end = n.starts.get(i + 1).map_or(n.text.len(), |&e| e as usize);
            &n.text[n.starts[i] as usize..end] == "hrtimer_wakeup"
        }) else {
            // kallsyms hides addresses from this (unprivileged) test run.
            assert!(n.addrs.is_empty(), "text symbols without hrtimer_wakeup");
            return;
        };
        assert_eq!(
            n.function(n.addrs[i]).map(|s| s.to_string()).as_deref(),
            Some("hrtimer_wakeup")
        );
    }
}
