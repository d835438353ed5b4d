//! Who schedtrace acts for: under `sudo`, the invoking user named by
//! `SUDO_UID`, `SUDO_GID` and `SUDO_USER`, checked for consistency
//! (docs/security.md, "The sudo environment"). A malformed environment is
//! refused: it never silently means root. Files named by the user are
//! handled with that user's filesystem identity ([`fs_identity`]), and
//! launched commands run as them.

use std::ffi::CString;
use std::sync::OnceLock;

/// A user whose filesystem identity file operations take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsIdentity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the primary one included or not).
    pub groups: Vec<u32>,
}

/// Who this process acts for, decided once by [`init`].
static INVOKER: OnceLock<Option<Invoker>> = OnceLock::new();

/// Check the sudo environment and remember who we act for. Call it before
/// any file or command is touched; an error is the whole story for the user.
pub fn init() -> Result<(), SudoEnvError> {
    let who = invoker()?;
    let _ = INVOKER.set(who);
    Ok(())
}

/// The user we act for under sudo (`None`: as ourselves, root or not).
pub fn acting_for() -> Option<&'static Invoker> {
    INVOKER.get().and_then(Option::as_ref)
}

/// The filesystem identity file operations on the user's paths take.
pub fn fs_identity() -> Option<FsIdentity> {
    acting_for().map(|u| FsIdentity {
        uid: u.uid,
        gid: u.gid,
        groups: u.groups.clone(),
    })
}

/// The user who ran `sudo`, as the system knows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invoker {
    pub uid: u32,
    pub gid: u32,
    pub name: String,
    /// Every group of the user (primary included).
    pub groups: Vec<u32>,
    pub home: Option<String>,
}

/// What the system's user database says about a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Passwd {
    pub uid: u32,
    pub gid: u32,
    pub home: Option<String>,
}

/// Why the sudo environment was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "inconsistent sudo environment: {0}; run schedtrace through sudo as usual, or as root without SUDO_UID, SUDO_GID and SUDO_USER"
)]
pub struct SudoEnvError(String);

const VARS: [&str; 3] = ["SUDO_UID", "SUDO_GID", "SUDO_USER"];

fn parse_id(var: &str, v: &str) -> Result<u32, SudoEnvError> {
    let bad = || SudoEnvError(format!("{var}={v:?} is not a numeric ID"));
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match v.parse::<u32>() {
        Ok(u32::MAX) | Err(_) => Err(bad()),
        Ok(n) => Ok(n),
    }
}

/// Decide who we act for from the `SUDO_*` values (`get`), the user
/// database (`lookup`) and the user's groups (`groups`). `Ok(None)`: no
/// sudo, or sudo run by root itself; act as root.
pub fn check(
    get: impl Fn(&str) -> Option<String>,
    lookup: impl Fn(&str) -> Option<Passwd>,
    groups: impl Fn(&str, u32) -> Vec<u32>,
) -> Result<Option<Invoker>, SudoEnvError> {
    let vals: Vec<Option<String>> = VARS.iter().map(|v| get(v)).collect();
    let set: Vec<&str> = VARS
        .iter()
        .zip(&vals)
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| *k)
        .collect();
    if set.is_empty() {
        return Ok(None);
    }
    if set.len() < VARS.len() {
        let missing: Vec<&str> = VARS.iter().filter(|v| !set.contains(v)).copied().collect();
        return Err(SudoEnvError(format!(
            "{} {} set but {} {}",
            set.join(" and "),
            if set.len() == 1 { "is" } else { "are" },
            missing.join(" and "),
            if missing.len() == 1 {
                "is not"
            } else {
                "are not"
            },
        )));
    }
    let [Some(uid), Some(gid), Some(name)] = [&vals[0], &vals[1], &vals[2]] else {
        unreachable!("all three are set")
    };
    let uid = parse_id("SUDO_UID", uid)?;
    let gid = parse_id("SUDO_GID", gid)?;
    let pw = lookup(name)
        .ok_or_else(|| SudoEnvError(format!("SUDO_USER={name:?} is not a user of this system")))?;
    if pw.uid != uid {
        return Err(SudoEnvError(format!(
            "SUDO_USER={name:?} has UID {}, not SUDO_UID={uid}",
            pw.uid
        )));
    }
    let mut all = groups(name, pw.gid);
    if !all.contains(&pw.gid) {
        all.push(pw.gid);
    }
    if gid != pw.gid && !all.contains(&gid) {
        return Err(SudoEnvError(format!(
            "SUDO_GID={gid} is not a group of {name:?}"
        )));
    }
    if uid == 0 {
        return Ok(None);
    }
    Ok(Some(Invoker {
        uid,
        gid,
        name: name.clone(),
        groups: all,
        home: pw.home,
    }))
}

/// [`check`] on this process's environment and the system's user database;
/// only when running as root (a non-root schedtrace acts as itself).
pub fn invoker() -> Result<Option<Invoker>, SudoEnvError> {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    check(|v| std::env::var(v).ok(), getpwnam, group_list)
}

/// The user database entry for `name` (`getpwnam_r`).
pub fn getpwnam(name: &str) -> Option<Passwd> {
    let cname = CString::new(name).ok()?;
    let mut buf: Vec<libc::c_char> = vec![0; 16 * 1024];
    // SAFETY: a zeroed passwd to fill.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    loop {
        // SAFETY: valid buffers; `out` is set to `&pw` or NULL.
        let r = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pw,
                buf.as_mut_ptr(),
                buf.len(),
                &mut out,
            )
        };
        if r == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if r != 0 || out.is_null() {
            return None;
        }
        break;
    }
    let home = (!pw.pw_dir.is_null()).then(|| {
        // SAFETY: a NUL-terminated string inside `buf`.
        unsafe { std::ffi::CStr::from_ptr(pw.pw_dir) }
            .to_string_lossy()
            .into_owned()
    });
    Some(Passwd {
        uid: pw.pw_uid,
        gid: pw.pw_gid,
        home,
    })
}

/// Every group of user `name` whose primary group is `gid` (`getgrouplist`).
pub fn group_list(name: &str, gid: u32) -> Vec<u32> {
    let Ok(cname) = CString::new(name) else {
        return vec![gid];
    };
    let mut n: libc::c_int = 64;
    loop {
        let mut buf: Vec<libc::gid_t> = vec![0; n as usize];
        // SAFETY: buf has room for n entries; getgrouplist updates n.
        let r = unsafe { libc::getgrouplist(cname.as_ptr(), gid, buf.as_mut_ptr(), &mut n) };
        if r >= 0 {
            buf.truncate(n as usize);
            return buf;
        }
        if n as usize <= buf.len() {
            return vec![gid];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn db(name: &str) -> Option<Passwd> {
        match name {
            "alice" => Some(Passwd {
                uid: 1000,
                gid: 1000,
                home: Some("/home/alice".into()),
            }),
            "root" => Some(Passwd {
                uid: 0,
                gid: 0,
                home: Some("/root".into()),
            }),
            _ => None,
        }
    }

    fn groups(name: &str, gid: u32) -> Vec<u32> {
        match name {
            "alice" => vec![gid, 27, 100],
            _ => vec![gid],
        }
    }

    fn run(pairs: &[(&str, &str)]) -> Result<Option<Invoker>, String> {
        check(env(pairs), db, groups).map_err(|e| e.to_string())
    }

    #[test]
    fn consistent_environments() {
        assert_eq!(run(&[]), Ok(None), "no sudo");
        let alice = run(&[
            ("SUDO_UID", "1000"),
            ("SUDO_GID", "1000"),
            ("SUDO_USER", "alice"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((alice.uid, alice.gid), (1000, 1000));
        assert_eq!(alice.groups, vec![1000, 27, 100]);
        assert_eq!(alice.home.as_deref(), Some("/home/alice"));
        // After `sg 27 ...`: a group of theirs.
        let sg = run(&[
            ("SUDO_UID", "1000"),
            ("SUDO_GID", "27"),
            ("SUDO_USER", "alice"),
        ]);
        assert_eq!(sg.unwrap().unwrap().gid, 27);
        // sudo run by root: act as root.
        assert_eq!(
            run(&[("SUDO_UID", "0"), ("SUDO_GID", "0"), ("SUDO_USER", "root")]),
            Ok(None)
        );
    }

    #[test]
    fn inconsistent_environments_say_what_is_wrong() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("SUDO_UID", "1000")],
                "SUDO_UID is set but SUDO_GID and SUDO_USER are not",
            ),
            (
                &[("SUDO_UID", "1000"), ("SUDO_GID", "1000")],
                "SUDO_UID and SUDO_GID are set but SUDO_USER is not",
            ),
            (
                &[("SUDO_USER", "alice")],
                "SUDO_USER is set but SUDO_UID and SUDO_GID are not",
            ),
            (
                &[
                    ("SUDO_UID", "abc"),
                    ("SUDO_GID", "1000"),
                    ("SUDO_USER", "alice"),
                ],
                "SUDO_UID=\"abc\" is not a numeric ID",
            ),
            (
                &[
                    ("SUDO_UID", ""),
                    ("SUDO_GID", "1000"),
                    ("SUDO_USER", "alice"),
                ],
                "SUDO_UID=\"\" is not a numeric ID",
            ),
            (
                &[
                    ("SUDO_UID", "-1"),
                    ("SUDO_GID", "1000"),
                    ("SUDO_USER", "alice"),
                ],
                "SUDO_UID=\"-1\" is not a numeric ID",
            ),
            (
                &[
                    ("SUDO_UID", "4294967295"),
                    ("SUDO_GID", "1000"),
                    ("SUDO_USER", "alice"),
                ],
                "SUDO_UID=\"4294967295\" is not a numeric ID",
            ),
            (
                &[
                    ("SUDO_UID", " 1000"),
                    ("SUDO_GID", "1000"),
                    ("SUDO_USER", "alice"),
                ],
                "SUDO_UID=\" 1000\" is not a numeric ID",
            ),
            (
                &[
                    ("SUDO_UID", "1000"),
                    ("SUDO_GID", "1000"),
                    ("SUDO_USER", "root"),
                ],
                "SUDO_USER=\"root\" has UID 0, not SUDO_UID=1000",
            ),
            (
                &[
                    ("SUDO_UID", "1000"),
                    ("SUDO_GID", "1000"),
                    ("SUDO_USER", "mallory"),
                ],
                "SUDO_USER=\"mallory\" is not a user of this system",
            ),
            (
                &[
                    ("SUDO_UID", "1000"),
                    ("SUDO_GID", "0"),
                    ("SUDO_USER", "alice"),
                ],
                "SUDO_GID=0 is not a group of \"alice\"",
            ),
        ];
        for (pairs, want) in cases {
            let e = run(pairs).unwrap_err();
            assert_eq!(
                e,
                format!(
                    "inconsistent sudo environment: {want}; run schedtrace through sudo as usual, \
                     or as root without SUDO_UID, SUDO_GID and SUDO_USER"
                ),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn reads_the_real_user_database() {
        let root = getpwnam("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(getpwnam("no-such-user-schedtrace").is_none());
        assert!(group_list("root", 0).contains(&0));
    }
}
