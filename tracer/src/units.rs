//! Numbers for humans: durations with units picked by size, percentages,
//! CPU lists; and the sizes, durations and name patterns the command line
//! takes.

/// `1.23 s`, `12.3 ms`, `45.6 µs`, `789 ns`.
pub fn duration(ns: u64) -> String {
    let f = ns as f64;
    if ns >= 100_000_000_000 {
        format!("{:.0} s", f / 1e9)
    } else if ns >= 1_000_000_000 {
        format!("{:.2} s", f / 1e9)
    } else if ns >= 1_000_000 {
        format!("{:.1} ms", f / 1e6)
    } else if ns >= 1_000 {
        format!("{:.1} µs", f / 1e3)
    } else {
        format!("{ns} ns")
    }
}

/// `part / whole` as `12.3%`.
pub fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".into();
    }
    format!("{:.1}%", 100.0 * part as f64 / whole as f64)
}

/// `CPU 0`, `CPUs 0,2`: the CPUs a command was pinned to.
pub fn cpus(list: &[u32]) -> String {
    format!(
        "CPU{} {}",
        if list.len() == 1 { "" } else { "s" },
        list.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    )
}

/// Parse a byte size such as `16M`, `512K`, `1G` or `4096`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mult = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => return Err(format!("unknown size suffix in {s:?} (use K, M or G)")),
            };
            (&s[..i], mult)
        }
        _ => (s, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 16M, 512K)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Parse seconds (`5`, `0.5`): positive and finite.
pub fn parse_seconds(s: &str) -> Result<std::time::Duration, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !v.is_finite() || v <= 0.0 {
        return Err(format!("{s:?} must be a positive number of seconds"));
    }
    if v > 1e9 {
        return Err(format!("{s:?} is too long"));
    }
    Ok(std::time::Duration::from_secs_f64(v))
}

/// `*` matches any run of characters, `?` any one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("libuv*", "libuv-worker0"));
        assert!(glob_match("*worker?", "libuv-worker3"));
        assert!(glob_match("node", "node"));
        assert!(!glob_match("node", "node-main"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("V8 *", "V8 Worker1"));
    }

    /// The compiled pattern the kernel side runs (`NamePattern`) says what
    /// `glob_match` says, for every name a task can have (up to 15 bytes),
    /// ASCII patterns with runs of stars, `?` and literals.
    #[test]
    fn the_kernels_name_pattern_agrees_with_glob_match() {
        use proptest::prelude::*;
        use schedtrace_common::NamePattern;
        let check = |pattern: &str, name: &str| {
            let compiled = NamePattern::compile(pattern.as_bytes()).unwrap();
            let bytes = crate::event::Comm::new(name);
            assert_eq!(
                compiled.matches(bytes.as_bytes()),
                glob_match(pattern, name),
                "{pattern:?} against {name:?}"
            );
        };
        for (p, n) in [
            ("libuv*", "libuv-worker0"),
            ("*worker?", "libuv-worker3"),
            ("node", "node"),
            ("node", "node-main"),
            ("*", ""),
            ("a?c", "ac"),
            ("V8 *", "V8 Worker1"),
            ("**a**b*", "xxaxxbxx"),
            ("*a*a*a", "aaa"),
            ("*a*a*a", "aa"),
            ("?*", ""),
            ("", ""),
            ("", "x"),
        ] {
            check(p, n);
        }
        let pattern = proptest::string::string_regex("[ab*?]{0,12}").unwrap();
        let name = proptest::string::string_regex("[abc]{0,15}").unwrap();
        proptest!(crate::trace::fuzz::config(), |(p in pattern, n in name)| {
            check(&p, &n);
        });
        // The longest pattern compiles, one more position does not; a run
        // of stars counts once.
        let longest = "a".repeat(schedtrace_common::MAX_NAME_PATTERN);
        assert!(NamePattern::compile(longest.as_bytes()).is_some());
        assert!(NamePattern::compile(format!("{longest}a").as_bytes()).is_none());
        assert!(NamePattern::compile(longest.replacen('a', "***", 1).as_bytes()).is_some());
    }

    #[test]
    fn durations_pick_units() {
        assert_eq!(duration(789), "789 ns");
        assert_eq!(duration(45_600), "45.6 µs");
        assert_eq!(duration(12_345_678), "12.3 ms");
        assert_eq!(duration(1_234_000_000), "1.23 s");
        assert_eq!(percent(1, 3), "33.3%");
        assert_eq!(percent(1, 0), "-");
    }

    #[test]
    fn sizes_and_seconds() {
        assert_eq!(parse_size("16M").unwrap(), 16 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("2k").unwrap(), 2048);
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("abc").is_err());
        assert_eq!(parse_seconds("0.5").unwrap().as_millis(), 500);
        for bad in ["0", "-1", "abc", "inf", "NaN"] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
    }
}
