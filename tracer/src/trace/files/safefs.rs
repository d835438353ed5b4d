//! Files named by the user, handled so that no path component can be
//! raced (docs/security.md).
//!
//! * A directory is opened one component at a time with
//!   `O_PATH|O_DIRECTORY|O_NOFOLLOW`: a symlink anywhere on the way is
//!   refused (and named), so a directory swapped for a symlink cannot lead
//!   us elsewhere.
//! * A file is then created, opened and removed only relative to that
//!   directory descriptor, never by path again; removal checks first that
//!   the name still refers to the inode we created.
//! * Under sudo, all of it runs on a short-lived thread that has the
//!   invoking user's filesystem identity ([`as_user`]): the kernel refuses
//!   whatever the user could not do, and new files are the user's from the
//!   start (no `chown`).

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

pub(crate) use crate::privs::FsIdentity;

/// Why a path could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PathError {
    #[error(
        "{} is a symbolic link; schedtrace does not follow symbolic links in the paths it writes",
        .0.display()
    )]
    SymlinkComponent(PathBuf),
    #[error("{} is a symbolic link; refusing to write through it", .0.display())]
    SymlinkFile(PathBuf),
    #[error("directory {} does not exist", .0.display())]
    NoDirectory(PathBuf),
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("it is a directory")]
    IsADirectory,
    #[error("{} already exists; use --force to overwrite it", .0.display())]
    Exists(PathBuf),
    #[error("it is not a regular file")]
    NotRegular,
    #[error("it has {0} hard links; refusing to overwrite a file that has other names")]
    HardLinks(u64),
    #[error("{0}")]
    Io(#[from] io::Error),
}

fn errno() -> io::Error {
    io::Error::last_os_error()
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn fd_or_err(fd: libc::c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: a fresh descriptor from a successful system call.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn openat(dir: RawFd, name: &OsStr, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let c = cstring(name)?;
    // SAFETY: a valid NUL-terminated name; the result is checked.
    fd_or_err(unsafe { libc::openat(dir, c.as_ptr(), flags | libc::O_CLOEXEC, mode) })
}

fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: a zeroed stat to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor and buffer.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(errno());
    }
    Ok(st)
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`.
fn lstat_at(dir: RawFd, name: &OsStr) -> io::Result<libc::stat> {
    let c = cstring(name)?;
    // SAFETY: a zeroed stat to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor, name and buffer.
    if unsafe { libc::fstatat(dir, c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return Err(errno());
    }
    Ok(st)
}

fn is_type(st: &libc::stat, ty: libc::mode_t) -> bool {
    st.st_mode & libc::S_IFMT == ty
}

/// Run `f` with `who`'s filesystem identity (on a thread of its own, which
/// ends with `f`), or as this process when `who` is `None`.
///
/// The identity is set with raw `setgroups`, `setfsgid` and `setfsuid`
/// system calls, which change only the calling thread (glibc's wrappers
/// for `setgroups` would change every thread of the process). Changing the
/// fs UID from 0 drops the file capabilities (`CAP_DAC_OVERRIDE`,
/// `CAP_FOWNER`, `CAP_CHOWN`, ...) from that thread, so its file operations
/// are checked exactly as the user's would be.
pub(crate) fn as_user<T: Send>(
    who: Option<&FsIdentity>,
    f: impl FnOnce() -> Result<T, PathError> + Send,
) -> Result<T, PathError> {
    let Some(who) = who else { return f() };
    std::thread::scope(|s| {
        s.spawn(|| {
            become_fs_user(who)?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the file thread panicked").into()))
    })
}

fn become_fs_user(who: &FsIdentity) -> io::Result<()> {
    let groups: Vec<libc::gid_t> = who.groups.clone();
    // SAFETY: raw system calls on this thread's credentials; the group list
    // outlives the call.
    unsafe {
        if libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) != 0 {
            return Err(errno());
        }
        libc::syscall(libc::SYS_setfsgid, who.gid);
        libc::syscall(libc::SYS_setfsuid, who.uid);
        // Both return the previous value; an invalid ID (-1) changes
        // nothing and tells the current one.
        let gid = libc::syscall(libc::SYS_setfsgid, u32::MAX) as u32;
        let uid = libc::syscall(libc::SYS_setfsuid, u32::MAX) as u32;
        if (uid, gid) != (who.uid, who.gid) {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
    }
    Ok(())
}

/// Open `dir` as an `O_PATH` directory descriptor without following a
/// symlink in any component. A relative path starts at the current
/// directory (which the process already holds, so no symlink on the way to
/// it matters).
pub(crate) fn open_dir(dir: &Path) -> Result<OwnedFd, PathError> {
    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW;
    let start: &OsStr = if dir.is_absolute() {
        "/".as_ref()
    } else {
        ".".as_ref()
    };
    let mut cur = openat(libc::AT_FDCWD, start, flags, 0)?;
    let mut walked = PathBuf::from(if dir.is_absolute() { "/" } else { "" });
    for c in dir.components() {
        let name: &OsStr = match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => continue,
            Component::ParentDir => "..".as_ref(),
            Component::Normal(n) => n,
        };
        walked.push(name);
        match openat(cur.as_raw_fd(), name, flags, 0) {
            Ok(next) => {
                // O_PATH|O_NOFOLLOW may hand back the symlink itself.
                let st = fstat(next.as_raw_fd())?;
                if is_type(&st, libc::S_IFLNK) {
                    return Err(PathError::SymlinkComponent(walked));
                }
                cur = next;
            }
            Err(e) => {
                return Err(match e.raw_os_error() {
                    Some(libc::ENOENT) => PathError::NoDirectory(walked),
                    Some(libc::ENOTDIR) | Some(libc::ELOOP) => {
                        match lstat_at(cur.as_raw_fd(), name) {
                            Ok(st) if is_type(&st, libc::S_IFLNK) => {
                                PathError::SymlinkComponent(walked)
                            }
                            _ => PathError::NotADirectory(walked),
                        }
                    }
                    _ => PathError::Io(e),
                });
            }
        }
    }
    Ok(cur)
}

/// The directory and last component of `path`.
fn split(path: &Path) -> Result<(PathBuf, OsString), PathError> {
    match (path.parent(), path.file_name()) {
        (_, None) => Err(PathError::IsADirectory),
        // `Path::file_name` ignores a trailing `/` and `.`; we do not.
        _ if path.as_os_str().as_bytes().ends_with(b"/") => Err(PathError::IsADirectory),
        (Some(p), Some(n)) => Ok((p.to_path_buf(), n.to_os_string())),
        (None, Some(n)) => Ok((PathBuf::new(), n.to_os_string())),
    }
}

/// Where a file we created (or truncated with `--force`) lives: what it
/// takes to remove it again safely.
#[derive(Debug)]
pub(crate) struct Placed {
    dir: OwnedFd,
    name: OsString,
    dev: u64,
    ino: u64,
}

/// A file just created, and where.
#[derive(Debug)]
pub(crate) struct Created {
    pub(crate) file: File,
    pub(crate) placed: Placed,
}

/// What [`Created::remove`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Removed {
    Yes,
    /// The name no longer refers to our file (moved or replaced): left alone.
    NotOurs,
}

/// Check what is at `name` in `dir` before creating or opening it.
fn check_existing(dir: RawFd, name: &OsStr, path: &Path, force: bool) -> Result<bool, PathError> {
    match lstat_at(dir, name) {
        Ok(st) if is_type(&st, libc::S_IFLNK) => Err(PathError::SymlinkFile(path.to_path_buf())),
        Ok(st) if is_type(&st, libc::S_IFDIR) => Err(PathError::IsADirectory),
        Ok(_) if !force => Err(PathError::Exists(path.to_path_buf())),
        Ok(st) if !is_type(&st, libc::S_IFREG) => Err(PathError::NotRegular),
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Create `path` for writing: without following symlinks anywhere, and
/// only if it does not exist unless `force`. An existing file is
/// overwritten only if it is a regular file with no other name; it is
/// truncated through the descriptor once checked. With `who`, everything
/// runs with that user's filesystem identity.
pub(crate) fn create(
    path: &Path,
    force: bool,
    who: Option<&FsIdentity>,
) -> Result<Created, PathError> {
    let (dir, name) = split(path)?;
    as_user(who, || {
        let dir = open_dir(&dir)?;
        let d = dir.as_raw_fd();
        let exists = check_existing(d, &name, path, force)?;
        let base = libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_NOCTTY;
        let file = if exists {
            // No O_TRUNC before the checks; O_NONBLOCK so that a FIFO put
            // there meanwhile cannot block us.
            let fd = openat(d, &name, base | libc::O_NONBLOCK, 0).map_err(|e| map_open(e, path))?;
            let st = fstat(fd.as_raw_fd())?;
            if !is_type(&st, libc::S_IFREG) {
                return Err(PathError::NotRegular);
            }
            if st.st_nlink > 1 {
                return Err(PathError::HardLinks(st.st_nlink));
            }
            // SAFETY: a valid descriptor; clearing O_NONBLOCK, then truncating.
            unsafe {
                if libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, 0) != 0
                    || libc::ftruncate(fd.as_raw_fd(), 0) != 0
                {
                    return Err(errno().into());
                }
            }
            fd
        } else {
            openat(d, &name, base | libc::O_CREAT | libc::O_EXCL, 0o666)
                .map_err(|e| map_open(e, path))?
        };
        let st = fstat(file.as_raw_fd())?;
        Ok(Created {
            file: File::from(file),
            placed: Placed {
                dir,
                name: name.clone(),
                dev: st.st_dev,
                ino: st.st_ino,
            },
        })
    })
}

fn map_open(e: io::Error, path: &Path) -> PathError {
    match e.raw_os_error() {
        Some(libc::EEXIST) => PathError::Exists(path.to_path_buf()),
        Some(libc::ELOOP) => PathError::SymlinkFile(path.to_path_buf()),
        Some(libc::EISDIR) => PathError::IsADirectory,
        _ => PathError::Io(e),
    }
}

/// Check that [`create`] would accept `path` now (for outputs written at
/// the end), without creating anything.
pub(crate) fn check_creatable(
    path: &Path,
    force: bool,
    who: Option<&FsIdentity>,
) -> Result<(), PathError> {
    let (dir, name) = split(path)?;
    as_user(who, || {
        let dir = open_dir(&dir)?;
        check_existing(dir.as_raw_fd(), &name, path, force)?;
        // Can we write there? `access` is not what we want (it uses the
        // real IDs); `faccessat` with AT_EACCESS uses the fs IDs.
        let c = cstring(".".as_ref())?;
        // SAFETY: a valid descriptor and name.
        let r = unsafe {
            libc::faccessat(
                dir.as_raw_fd(),
                c.as_ptr(),
                libc::W_OK | libc::X_OK,
                libc::AT_EACCESS,
            )
        };
        if r != 0 {
            return Err(errno().into());
        }
        Ok(())
    })
}

#[cfg(test)]
impl Created {
    /// See [`Placed::remove`].
    pub(crate) fn remove(&self, who: Option<&FsIdentity>) -> Result<Removed, PathError> {
        self.placed.remove(who)
    }
}

impl Placed {
    /// Remove the file, if its name still refers to it (same device and
    /// inode), through the directory it was created in.
    pub(crate) fn remove(&self, who: Option<&FsIdentity>) -> Result<Removed, PathError> {
        as_user(who, || {
            let d = self.dir.as_raw_fd();
            match lstat_at(d, &self.name) {
                Ok(st) if st.st_dev == self.dev && st.st_ino == self.ino => {}
                Ok(_) => return Ok(Removed::NotOurs),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Removed::NotOurs),
                Err(e) => return Err(e.into()),
            }
            let c = cstring(&self.name)?;
            // SAFETY: a valid descriptor and name.
            if unsafe { libc::unlinkat(d, c.as_ptr(), 0) } != 0 {
                return Err(errno().into());
            }
            Ok(Removed::Yes)
        })
    }
}

/// Create directory `dir` and any missing parents (mode 0777 less the
/// umask), with `who`'s identity, following no symlink on the way.
pub(crate) fn create_dir_all(dir: &Path, who: Option<&FsIdentity>) -> Result<(), PathError> {
    as_user(who, || {
        let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW;
        let start: &OsStr = if dir.is_absolute() {
            "/".as_ref()
        } else {
            ".".as_ref()
        };
        let mut cur = openat(libc::AT_FDCWD, start, flags, 0)?;
        let mut walked = PathBuf::from(if dir.is_absolute() { "/" } else { "" });
        for c in dir.components() {
            let name: &OsStr = match c {
                Component::RootDir | Component::CurDir | Component::Prefix(_) => continue,
                Component::ParentDir => "..".as_ref(),
                Component::Normal(n) => n,
            };
            walked.push(name);
            let mut opened = openat(cur.as_raw_fd(), name, flags, 0);
            if let (Component::Normal(n), Err(e)) = (c, &opened)
                && e.raw_os_error() == Some(libc::ENOENT)
            {
                let cn = cstring(n)?;
                // SAFETY: a valid descriptor and name.
                let r = unsafe { libc::mkdirat(cur.as_raw_fd(), cn.as_ptr(), 0o777) };
                if r != 0 && errno().raw_os_error() != Some(libc::EEXIST) {
                    return Err(errno().into());
                }
                opened = openat(cur.as_raw_fd(), name, flags, 0);
            }
            let next = match opened {
                Ok(next) => next,
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR) | Some(libc::ELOOP)) => {
                    return Err(match lstat_at(cur.as_raw_fd(), name) {
                        Ok(st) if is_type(&st, libc::S_IFLNK) => {
                            PathError::SymlinkComponent(walked)
                        }
                        _ => PathError::NotADirectory(walked),
                    });
                }
                Err(e) => return Err(e.into()),
            };
            if is_type(&fstat(next.as_raw_fd())?, libc::S_IFLNK) {
                return Err(PathError::SymlinkComponent(walked));
            }
            cur = next;
        }
        Ok(())
    })
}

/// Open `path` for reading with `who`'s rights (symlinks are followed, as
/// the user's own `cat` would: reading grants nothing the user lacks).
pub(crate) fn open_input(path: &Path, who: Option<&FsIdentity>) -> Result<File, PathError> {
    as_user(who, || Ok(File::open(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn tmpdir() -> crate::testutil::TempDir {
        crate::testutil::TempDir::new("schedtrace-safefs")
    }

    fn msg(e: PathError) -> String {
        e.to_string()
    }

    #[test]
    fn creates_only_new_files_unless_forced() {
        let d = tmpdir();
        let p = d.join("a.jsonl");
        let c = create(&p, false, None).unwrap();
        drop(c);
        assert!(msg(create(&p, false, None).unwrap_err()).contains("already exists"));
        std::fs::write(&p, "old").unwrap();
        let c = create(&p, true, None).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "", "truncated");
        drop(c);
    }

    #[test]
    fn refuses_symlinks_at_every_level() {
        let d = tmpdir();
        let real = d.join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::write(real.join("keep"), "keep").unwrap();
        std::os::unix::fs::symlink(&real, d.join("link")).unwrap();
        // In the middle of the path.
        let e = msg(create(&d.join("link/new.jsonl"), false, None).unwrap_err());
        assert_eq!(
            e,
            format!(
                "{} is a symbolic link; schedtrace does not follow symbolic links in the paths it writes",
                d.join("link").display()
            )
        );
        assert!(!real.join("new.jsonl").exists());
        // As the file itself, even with --force.
        std::os::unix::fs::symlink(real.join("keep"), d.join("f")).unwrap();
        let e = msg(create(&d.join("f"), true, None).unwrap_err());
        assert!(
            e.contains("is a symbolic link; refusing to write through it"),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(real.join("keep")).unwrap(), "keep");
        // A dangling one too.
        std::os::unix::fs::symlink(d.join("nowhere"), d.join("dangling")).unwrap();
        assert!(
            msg(create(&d.join("dangling"), false, None).unwrap_err()).contains("symbolic link")
        );
        assert!(!d.join("nowhere").exists());
    }

    #[test]
    fn names_missing_and_odd_directories() {
        let d = tmpdir();
        let e = msg(create(&d.join("no/such/x"), false, None).unwrap_err());
        assert_eq!(
            e,
            format!("directory {} does not exist", d.join("no").display())
        );
        std::fs::write(d.join("file"), "").unwrap();
        let e = msg(create(&d.join("file/x"), false, None).unwrap_err());
        assert_eq!(
            e,
            format!("{} is not a directory", d.join("file").display())
        );
        assert_eq!(
            msg(create(&d, true, None).unwrap_err()),
            "it is a directory"
        );
        let slash = PathBuf::from(format!("{}/", d.join("file").display()));
        assert_eq!(
            msg(create(&slash, true, None).unwrap_err()),
            "it is a directory"
        );
    }

    #[test]
    fn force_refuses_fifos_and_hard_links() {
        let d = tmpdir();
        let fifo = d.join("fifo");
        let c = CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert_eq!(
            msg(create(&fifo, true, None).unwrap_err()),
            "it is not a regular file"
        );
        let a = d.join("a");
        std::fs::write(&a, "precious").unwrap();
        std::fs::hard_link(&a, d.join("b")).unwrap();
        let e = msg(create(&d.join("b"), true, None).unwrap_err());
        assert!(e.contains("2 hard links"), "{e}");
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "precious");
    }

    #[test]
    fn relative_paths_and_dot_dot_work() {
        let d = tmpdir();
        std::fs::create_dir(d.join("sub")).unwrap();
        let p = d.join("sub/../rel.jsonl");
        create(&p, false, None).unwrap();
        assert!(d.join("rel.jsonl").exists());
    }

    #[test]
    fn removal_checks_the_inode_through_the_same_directory() {
        let d = tmpdir();
        let p = d.join("x");
        let c = create(&p, false, None).unwrap();
        assert_eq!(c.remove(None).unwrap(), Removed::Yes);
        assert!(!p.exists());
        // Replaced meanwhile: left alone.
        let c = create(&p, false, None).unwrap();
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, "someone else's").unwrap();
        assert_eq!(c.remove(None).unwrap(), Removed::NotOurs);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "someone else's");
        // The directory renamed and a symlink put in its place: the removal
        // still happens in the directory the file was created in.
        let sub = d.join("sub");
        std::fs::create_dir(&sub).unwrap();
        let c = create(&sub.join("y"), false, None).unwrap();
        let moved = d.join("moved");
        std::fs::rename(&sub, &moved).unwrap();
        std::fs::create_dir(d.join("other")).unwrap();
        std::fs::write(d.join("other/y"), "other").unwrap();
        std::os::unix::fs::symlink(d.join("other"), &sub).unwrap();
        assert_eq!(c.remove(None).unwrap(), Removed::Yes);
        assert!(!moved.join("y").exists());
        assert_eq!(std::fs::read_to_string(d.join("other/y")).unwrap(), "other");
    }

    #[test]
    fn creates_directories_without_following_symlinks() {
        let d = tmpdir();
        create_dir_all(&d.join("a/b/c"), None).unwrap();
        assert!(d.join("a/b/c").is_dir());
        create_dir_all(&d.join("a/b/c"), None).unwrap();
        std::os::unix::fs::symlink(d.join("a"), d.join("l")).unwrap();
        let e = msg(create_dir_all(&d.join("l/x"), None).unwrap_err());
        assert!(e.contains("is a symbolic link"), "{e}");
        assert!(!d.join("a/x").exists());
    }

    #[test]
    fn check_creatable_agrees_with_create() {
        let d = tmpdir();
        let p = d.join("new.html");
        check_creatable(&p, false, None).unwrap();
        std::fs::write(&p, "old").unwrap();
        assert!(check_creatable(&p, false, None).is_err());
        check_creatable(&p, true, None).unwrap();
        std::os::unix::fs::symlink(&p, d.join("l")).unwrap();
        assert!(check_creatable(&d.join("l"), true, None).is_err());
        assert!(check_creatable(&d, true, None).is_err());
        assert!(check_creatable(&d.join("no/x"), true, None).is_err());
    }

    /// As root: the fs identity of another user is what the kernel checks,
    /// and new files are theirs without a chown.
    #[test]
    fn takes_the_users_identity_when_root() {
        // SAFETY: no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let d = tmpdir();
        let nobody = FsIdentity {
            uid: 65534,
            gid: 65534,
            groups: vec![65534],
        };
        // Root's directory (0755): not theirs to write.
        let e = create(&d.join("x"), false, Some(&nobody)).unwrap_err();
        assert!(
            matches!(&e, PathError::Io(io) if io.raw_os_error() == Some(libc::EACCES)),
            "{e}"
        );
        assert!(check_creatable(&d.join("x"), false, Some(&nobody)).is_err());
        // Their own directory: created, and theirs.
        let mine = d.join("mine");
        std::fs::create_dir(&mine).unwrap();
        std::os::unix::fs::chown(&mine, Some(65534), Some(65534)).unwrap();
        let c = create(&mine.join("x"), false, Some(&nobody)).unwrap();
        let m = std::fs::metadata(mine.join("x")).unwrap();
        assert_eq!((m.uid(), m.gid()), (65534, 65534));
        assert_eq!(c.remove(Some(&nobody)).unwrap(), Removed::Yes);
        // This thread kept root's identity.
        std::fs::write(d.join("still-root"), "").unwrap();
        assert_eq!(std::fs::metadata(d.join("still-root")).unwrap().uid(), 0);
        // Reading: a root-only file is not theirs to read.
        let secret = d.join("secret");
        std::fs::write(&secret, "s").unwrap();
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        assert!(open_input(&secret, Some(&nobody)).is_err());
        assert!(open_input(&secret, None).is_ok());
    }
}
