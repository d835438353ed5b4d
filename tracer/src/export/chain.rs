//! A walked wakeup chain for people (`schedtrace report --chain
//! TID[@SECONDS]`): one line per wait, the thread's own first, then each
//! waker's earlier wait, and why the walk stopped.

use crate::analysis::chain::{End, Walk};
use crate::analysis::summary::Summary;
use crate::analysis::timeline::SegState;
use crate::units::duration;

/// `+1.234567 s` from the window's start.
fn at(s: &Summary, ts: u64) -> String {
    format!(
        "+{:.6} s",
        ts.saturating_sub(s.window_start_ns) as f64 / 1e9
    )
}

fn name(s: &Summary, tid: u32) -> String {
    s.thread(tid)
        .map_or_else(|| format!("thread {tid}"), |t| t.label())
}

/// The chain as text.
pub fn render(s: &Summary, w: &Walk) -> String {
    let Some(first) = w.steps.first() else {
        return String::new();
    };
    let mut out = format!(
        "Wakeup chain of {}'s wait from {}:\n",
        name(s, first.tid),
        at(s, first.wait_start)
    );
    for (i, st) in w.steps.iter().enumerate() {
        let who = name(s, st.tid);
        let line = if matches!(st.state, SegState::Runnable) {
            format!(
                "{who} was preempted at {} and waited for a CPU{}",
                at(s, st.wait_start),
                st.ran
                    .map(|r| format!(" until {}", at(s, r)))
                    .unwrap_or_default()
            )
        } else {
            let how = match st.state {
                SegState::Blocked => "was blocked",
                _ => "slept",
            };
            let why = st
                .reason
                .map(|r| format!(" in {}", r.describe()))
                .unwrap_or_default();
            let end = st.woken.unwrap_or(s.window_end_ns);
            let mut l = format!(
                "{who} {how} {}{why} from {}",
                duration(end.saturating_sub(st.wait_start)),
                at(s, st.wait_start)
            );
            match (&st.by, st.woken) {
                (Some((e, link)), _) => {
                    l.push_str(&format!(
                        ", woken at {} by {}",
                        at(s, e.ts),
                        s.link_label(link)
                    ));
                }
                (None, Some(t)) => {
                    l.push_str(&format!(", runnable at {} (no wakeup recorded)", at(s, t)));
                }
                (None, None) => l.push_str(", still asleep at the end"),
            }
            if let (Some(r), Some(t)) = (st.ran, st.woken) {
                l.push_str(&format!(
                    "; ran at {} (after {} waiting for a CPU)",
                    at(s, r),
                    duration(r.saturating_sub(t))
                ));
            }
            l
        };
        out.push_str(&format!("  {}. {line}\n", i + 1));
    }
    let end = match w.end {
        End::Link => match w.steps.last().and_then(|st| st.by.as_ref()) {
            Some((_, l)) => format!("at {}", s.link_label(l)),
            None => "at its waker".into(),
        },
        End::NoWakeup => {
            "at a wait with no recorded wakeup (traced without wakeups, or the wakeup was not seen)"
                .into()
        }
        End::Preempted => "at a preemption: the thread did not sleep, it waited for a CPU".into(),
        End::WindowStart => "where the waker's own wait began before the trace".into(),
        End::Depth => format!("after {} steps", w.steps.len()),
    };
    out.push_str(&format!("  The chain ends {end}.\n"));
    out
}
