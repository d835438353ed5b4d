//! Wakeup chains: for a wait of a thread, who woke it, what that waker had
//! itself been waiting for, and so on back, until the chain reaches an
//! interrupt or timer, a thread outside the traced processes, or a wait
//! with no recorded wakeup.
//!
//! Two views: while the analysis runs, every thread carries the chain that
//! led to its latest wakeup (a few links, kept per thread and counted, so
//! the summary can name each thread's most common chains); and
//! [`walk`] follows one given wait back through a kept [`Timeline`].

use super::antagonists::Occupant;
use super::timeline::{SegState, Segment, Timeline, WakeEdge};
use super::waits::WaitKey;
use crate::event::WakeContext;

/// One step back in a chain: what woke the thread of the step before.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Link {
    /// A traced thread, by TID.
    Thread(u32),
    /// A task outside the traced processes.
    Outside(Occupant),
    /// An hrtimer callback (its name, when known).
    Timer(Option<crate::event::Symbol>),
    Softirq(Option<u32>),
    Hardirq(Option<u32>),
    Nmi,
    /// A wakeup whose context was not recorded.
    Unknown,
}

impl Link {
    /// The link for a wakeup from `waker` in `context`; `traced` tells
    /// whether `waker` is one of the traced threads.
    pub(crate) fn of(context: WakeContext, waker: Occupant, traced: bool) -> Link {
        match context {
            WakeContext::Task if traced => Link::Thread(waker.tid),
            WakeContext::Task => Link::Outside(waker),
            WakeContext::Timer { function, .. } => Link::Timer(function),
            WakeContext::Softirq { vector } => Link::Softirq(vector),
            WakeContext::Hardirq { irq, .. } => Link::Hardirq(irq),
            WakeContext::Nmi => Link::Nmi,
            WakeContext::Unknown => Link::Unknown,
        }
    }

    /// The kind of context, as the trace names it: `task` (a traced thread
    /// or an outside task), `timer`, `softirq`, `hardirq`, `nmi`, `unknown`.
    pub fn context_name(&self) -> &'static str {
        match self {
            Link::Thread(_) | Link::Outside(_) => "task",
            Link::Timer(_) => "timer",
            Link::Softirq(_) => "softirq",
            Link::Hardirq(_) => "hardirq",
            Link::Nmi => "nmi",
            Link::Unknown => "unknown",
        }
    }

    /// Does the chain end here (anything but a traced thread)?
    pub fn ends(&self) -> bool {
        !matches!(self, Link::Thread(_))
    }
}

/// Links kept per chain in the summary: enough for "pool ← main ← timer"
/// and one more hop.
pub(crate) const CHAIN_DEPTH: usize = 4;

/// A short chain, nearest waker first; `more` when it was cut at
/// [`CHAIN_DEPTH`] or at a thread already in it (a request and its reply
/// going back and forth).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Chain {
    links: [Option<Link>; CHAIN_DEPTH],
    pub more: bool,
}

impl Chain {
    pub fn links(&self) -> impl Iterator<Item = &Link> {
        self.links.iter().flatten()
    }

    /// The chain of a thread woken through `link`, whose waker's own
    /// chain was `waker_chain` (for a traced waker).
    pub(crate) fn extend(link: Link, waker_chain: Option<&Chain>, wakee: u32) -> Chain {
        let mut c = Chain::default();
        c.links[0] = Some(link);
        let Some(wc) = waker_chain.filter(|_| !link.ends()) else {
            return c;
        };
        for (n, l) in (1..).zip(wc.links()) {
            let repeat = matches!(l, Link::Thread(t)
                if *t == wakee || c.links().any(|x| x == l));
            if n == CHAIN_DEPTH || repeat {
                c.more = true;
                return c;
            }
            c.links[n] = Some(*l);
        }
        c.more = wc.more;
        c
    }
}

/// How often each chain led to a wakeup of one thread. Distinct chains past
/// [`MAX_CHAINS`] are counted together.
#[derive(Clone, Debug, Default)]
pub(crate) struct ChainCounts {
    counts: Vec<(Chain, u64)>,
    pub(crate) others: u64,
    /// Where the chain counted last is: a thread is woken through the same
    /// chain again and again, and chains compare slowly (each link, a
    /// few hundred bytes in all), so it is tried first.
    last: usize,
}

const MAX_CHAINS: usize = 16;

impl ChainCounts {
    pub(crate) fn add(&mut self, c: &Chain) {
        if let Some(e) = self.counts.get_mut(self.last)
            && e.0 == *c
        {
            e.1 += 1;
        } else if let Some(i) = self.counts.iter().position(|e| e.0 == *c) {
            self.counts[i].1 += 1;
            self.last = i;
        } else if self.counts.len() < MAX_CHAINS {
            self.last = self.counts.len();
            self.counts.push((*c, 1));
        } else {
            self.others += 1;
        }
    }

    /// Most frequent first.
    pub(crate) fn top(&self, n: usize) -> Vec<(Chain, u64)> {
        let mut v = self.counts.clone();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }
}

/// One wait in a walked chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub tid: u32,
    /// When it stopped running (went to sleep, or was preempted).
    pub wait_start: u64,
    /// When it was made runnable (`None`: it did not sleep, it was
    /// preempted; or it was already waiting when the window opened).
    pub woken: Option<u64>,
    /// When it ran again (`None`: not in the window).
    pub ran: Option<u64>,
    /// Why it slept, if recorded.
    pub reason: Option<WaitKey>,
    /// Sleeping or blocked.
    pub state: SegState,
    /// What woke it (`None`: no recorded wakeup).
    pub by: Option<(WakeEdge, Link)>,
}

/// Why a walk stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// At the link of the last step (an interrupt, a timer, an outside task).
    Link,
    /// The last wait has no recorded wakeup.
    NoWakeup,
    /// The last wait was a preemption, not a sleep.
    Preempted,
    /// The waker's earlier wait began before the window.
    WindowStart,
    /// The walk reached its step limit.
    Depth,
}

/// The chain of one wait.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Walk {
    pub steps: Vec<Step>,
    pub end: End,
}

/// Steps a walk takes at most.
pub const MAX_STEPS: usize = 32;

/// The segments of `tid`, in time order.
fn segments(tl: &Timeline, tid: u32) -> Vec<Segment> {
    tl.thread_segments(tid).copied().collect()
}

fn is_off(s: &Segment) -> bool {
    matches!(s.state, SegState::Sleeping | SegState::Blocked)
}

/// The wait of `tid` to start from: the one containing `at` (or the last
/// one to end before `at`, if the thread was running then), or without
/// `at` its longest sleep. Returns the index of its sleeping segment, or
/// of its runnable segment for a preemption.
fn find_wait(segs: &[Segment], at: Option<u64>) -> Option<usize> {
    match at {
        None => (0..segs.len())
            .filter(|&i| is_off(&segs[i]))
            .max_by_key(|&i| (segs[i].end - segs[i].start, std::cmp::Reverse(i))),
        Some(t) => {
            let i = segs.iter().rposition(|s| s.start <= t)?;
            let mut i = i;
            if matches!(segs[i].state, SegState::Running { .. }) {
                i = i.checked_sub(1)?;
            }
            // From a runnable segment back to the sleep it ended, if any.
            if segs[i].state == SegState::Runnable && i > 0 && is_off(&segs[i - 1]) {
                i -= 1;
            }
            Some(i)
        }
    }
}

/// The waker of the wait of `tid` whose sleep is `sleep` (the wakeup edge to
/// `tid` at the sleep's end, give or take the switch-out race).
fn waker_of(tl: &Timeline, tid: u32, sleep: &Segment) -> Option<WakeEdge> {
    tl.wakeups
        .iter()
        .filter(|w| w.wakee_tid == tid && w.ts >= sleep.start && w.ts <= sleep.end)
        .min_by_key(|w| w.ts.abs_diff(sleep.end))
        .copied()
}

/// Walk the chain of the wait of `tid` at `at` (see [`find_wait`]). `traced`
/// tells which TIDs are traced threads. `None` if `tid` has no such wait.
pub fn walk(
    tl: &Timeline,
    tid: u32,
    at: Option<u64>,
    traced: &dyn Fn(u32) -> bool,
) -> Option<Walk> {
    let mut steps = Vec::new();
    let mut tid = tid;
    let mut segs = segments(tl, tid);
    let mut i = find_wait(&segs, at)?;
    loop {
        if steps.len() == MAX_STEPS {
            return Some(Walk {
                steps,
                end: End::Depth,
            });
        }
        let s = segs[i];
        let ran = segs[i..]
            .iter()
            .find(|x| matches!(x.state, SegState::Running { .. }))
            .map(|x| x.start);
        if !is_off(&s) {
            steps.push(Step {
                tid,
                wait_start: s.start,
                woken: None,
                ran,
                reason: None,
                state: s.state,
                by: None,
            });
            return Some(Walk {
                steps,
                end: End::Preempted,
            });
        }
        let edge = waker_of(tl, tid, &s);
        let link = edge.map(|e| {
            Link::of(
                e.context,
                Occupant {
                    tid: e.waker_tid,
                    tgid: e.waker_tgid,
                    comm: e.waker_comm,
                },
                traced(e.waker_tid),
            )
        });
        steps.push(Step {
            tid,
            wait_start: s.start,
            woken: edge
                .map(|e| e.ts)
                .or(Some(s.end).filter(|&e| e < tl.end_ns)),
            ran,
            reason: s.wait,
            state: s.state,
            by: edge.zip(link),
        });
        let (Some(edge), Some(link)) = (edge, link) else {
            return Some(Walk {
                steps,
                end: End::NoWakeup,
            });
        };
        let Link::Thread(waker) = link else {
            return Some(Walk {
                steps,
                end: End::Link,
            });
        };
        // The waker ran at `edge.ts`: its own last sleep before then.
        tid = waker;
        segs = segments(tl, tid);
        match segs.iter().rposition(|x| is_off(x) && x.end <= edge.ts) {
            Some(j) => i = j,
            None => {
                return Some(Walk {
                    steps,
                    end: End::WindowStart,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Comm;

    fn chain(links: &[Link]) -> Chain {
        let mut c = Chain::default();
        for (i, l) in links.iter().enumerate() {
            c.links[i] = Some(*l);
        }
        c
    }

    #[test]
    fn chains_extend_the_wakers_and_stop_at_repeats_and_depth() {
        let timer = Link::Timer(Some(crate::event::Symbol::new("hrtimer_wakeup")));
        let main = chain(&[timer]);
        // The pool thread 101 woken by main (100), which a timer woke.
        let pool = Chain::extend(Link::Thread(100), Some(&main), 101);
        assert_eq!(pool, chain(&[Link::Thread(100), timer]));
        // Main woken back by the pool: main's own earlier wake is a repeat.
        let reply = Chain::extend(Link::Thread(101), Some(&pool), 100);
        assert_eq!(
            reply.links().copied().collect::<Vec<_>>(),
            vec![Link::Thread(101)]
        );
        assert!(reply.more);
        // An outside waker ends the chain whatever it carried.
        let out = Occupant {
            tid: 7,
            tgid: 7,
            comm: Comm::new("bash"),
        };
        let c = Chain::extend(Link::Outside(out), Some(&pool), 102);
        assert_eq!(c, chain(&[Link::Outside(out)]));
        // Depth: a five-thread relay keeps four links and says there is more.
        let mut c = chain(&[timer]);
        for t in 110..115 {
            c = Chain::extend(Link::Thread(t), Some(&c), t + 1);
        }
        assert_eq!(c.links().count(), CHAIN_DEPTH);
        assert!(c.more);
    }

    #[test]
    fn counts_keep_the_most_frequent() {
        let mut cc = ChainCounts::default();
        let a = chain(&[Link::Thread(1)]);
        let b = chain(&[Link::Nmi]);
        cc.add(&a);
        cc.add(&b);
        cc.add(&b);
        assert_eq!(cc.top(1), vec![(b, 2)]);
        for t in 0..20 {
            cc.add(&chain(&[Link::Thread(100 + t)]));
        }
        assert_eq!(cc.others, 6);
    }
}
