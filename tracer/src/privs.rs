//! Who invoked us: under `sudo`, the invoking user (SUDO_UID/SUDO_GID), who
//! should own the files we write and run the commands we launch.

use std::ffi::CString;

/// A user to hand files and commands to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub name: Option<String>,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

/// The user who ran `sudo`, if we run under sudo as root on their behalf.
pub fn sudo_user() -> Option<User> {
    let uid: u32 = std::env::var("SUDO_UID").ok()?.parse().ok()?;
    let gid: u32 = std::env::var("SUDO_GID").ok()?.parse().ok()?;
    if uid == 0 {
        return None;
    }
    let name = std::env::var("SUDO_USER").ok();
    let groups = name
        .as_deref()
        .map(|n| group_list(n, gid))
        .unwrap_or_else(|| vec![gid]);
    Some(User {
        uid,
        gid,
        name,
        groups,
    })
}

fn group_list(name: &str, gid: u32) -> Vec<u32> {
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

/// Give `path` to the invoking user when running under sudo. Errors are
/// reported, not fatal: the file is still there, owned by root.
pub fn chown_to_invoker(path: &std::path::Path) {
    if let Some(u) = sudo_user()
        && let Err(e) = std::os::unix::fs::lchown(path, Some(u.uid), Some(u.gid))
    {
        log::warn!("cannot give {} to uid {}: {e}", path.display(), u.uid);
    }
}
