//! Tests of the state store against real files, real locks and real write failures.

use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};

use super::*;
use crate::state::journal::{FileChange, SavedBytes, sha256_hex};
use crate::state::model::ChangeKind;

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_740_000_000 + second).unwrap()
}

fn options(backups: usize) -> StoreOptions {
    StoreOptions {
        backups,
        backup_dir: None,
        fallback: false,
        fallback_paths: Vec::new(),
    }
}

fn open(path: &Path) -> (StateStore, OpenReport) {
    StateStore::open(path, &options(DEFAULT_BACKUPS), at(0)).unwrap()
}

fn version(tag: &str) -> ImageVersion {
    ImageVersion {
        image: "docker.io/library/nginx".into(),
        tag: Some(tag.into()),
        digest: format!("sha256:{tag}"),
    }
}

fn intent(service: &str) -> UpdateIntent {
    let old = b"services:\n  web:\n    image: nginx:1.27.3\n";
    UpdateIntent {
        service: service.into(),
        kind: ChangeKind::Update,
        actor: "schedule".into(),
        from: version("1.27.3"),
        to: version("1.27.4"),
        file: FileChange {
            path: "/srv/web/compose.yaml".into(),
            old_sha256: sha256_hex(old),
            new_sha256: sha256_hex(b"services:\n  web:\n    image: nginx:1.27.4\n"),
            old_bytes: SavedBytes::new(old),
            created: false,
        },
        compose: None,
        swarm: None,
    }
}

fn on_disk(path: &Path) -> State {
    parse(&fs::read_to_string(path).unwrap()).unwrap()
}

fn backup_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn fresh_start_writes_a_private_file_and_reopens_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let (mut store, report) = open(&path);
    assert_eq!(report.origin, Origin::Fresh);
    assert_eq!(report.path, path);
    assert!(!path.exists(), "opening alone writes nothing");

    store.record_check("web", Some(version("1.27.3")), at(1));
    store.save_checks(at(1)).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
    let lock_text = fs::read_to_string(dir.path().join("state.json.lock")).unwrap();
    assert_eq!(lock_text.trim(), std::process::id().to_string());
    let written = store.state().clone();
    drop(store);

    let (store, report) = open(&path);
    assert_eq!(report.origin, Origin::Loaded);
    assert!(!report.recovered_from_corruption());
    assert_eq!(store.state(), &written);
}

#[test]
fn each_journal_operation_is_on_disk_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let (mut store, _) = open(&path);

    store.begin_update(intent("web"), at(10)).unwrap();
    let entry = on_disk(&path).journal_entry("web").cloned().unwrap();
    assert_eq!((entry.step, entry.started_at), (Step::Planned, at(10)));

    store.advance("web", Step::FileWritten, at(11)).unwrap();
    assert_eq!(
        on_disk(&path).journal_entry("web").unwrap().step,
        Step::FileWritten
    );
    assert_eq!(store.in_flight(), on_disk(&path).journal);

    let record = store
        .finish("web", ChangeOutcome::Committed, at(15))
        .unwrap();
    let disk = on_disk(&path);
    assert!(disk.journal.is_empty());
    assert_eq!(disk.services["web"].history, vec![record]);
    assert_eq!(disk.services["web"].running, Some(version("1.27.4")));
    assert!(store.in_flight().is_empty());
}

#[test]
fn an_update_in_flight_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let (mut store, _) = open(&path);
    store.begin_update(intent("web"), at(10)).unwrap();
    store
        .advance("web", Step::ContainerStarted, at(12))
        .unwrap();
    drop(store); // the process "dies" here

    let (store, _) = open(&path);
    let in_flight = store.in_flight();
    assert_eq!(in_flight.len(), 1);
    assert_eq!(in_flight[0].intent, intent("web"));
    assert_eq!(in_flight[0].step, Step::ContainerStarted);
}

#[test]
fn a_rejected_journal_operation_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let (mut store, _) = open(&path);
    store.begin_update(intent("web"), at(10)).unwrap();
    let before = fs::read(&path).unwrap();
    let backups_before = backup_names(store.backup_dir());

    let err = store.begin_update(intent("web"), at(11)).unwrap_err();
    assert!(
        matches!(
            err,
            StateError::Journal {
                source: JournalError::AlreadyInFlight { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert!(store.advance("db", Step::Pulled, at(12)).is_err());
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(backup_names(store.backup_dir()), backups_before);
}

/// Writes `damaged` over a state file that has backups, then reopens it and checks that the
/// newest backup that parses is restored and the damaged bytes are kept aside.
fn check_restores_from_backup(damaged: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let (mut store, _) = open(&path);
    store.record_check("web", Some(version("1")), at(1));
    store.save_checks(at(1)).unwrap();
    store.record_check("web", Some(version("2")), at(2));
    store.save_checks(at(2)).unwrap();
    let good = store.state().clone();
    let backup_dir = store.backup_dir().to_owned();
    drop(store);
    // The newest backup is damaged too: the one before it must be used.
    let names = backup_names(&backup_dir);
    assert_eq!(names.len(), 2, "{names:?}");
    let newest = backup_dir.join(&names[1]);
    fs::write(&newest, "{\"format_version\": 1, \"serv").unwrap();
    fs::write(&path, damaged).unwrap();

    let (store, report) = StateStore::open(&path, &options(5), at(100)).unwrap();
    let Origin::Restored {
        backup,
        corrupt_moved_to,
        ..
    } = &report.origin
    else {
        panic!(
            "damaged {damaged:?}: expected a restore, got {:?}",
            report.origin
        );
    };
    assert!(report.recovered_from_corruption());
    assert_eq!(backup, &backup_dir.join(&names[0]));
    assert_eq!(
        fs::read(corrupt_moved_to).unwrap(),
        damaged,
        "kept byte for byte"
    );
    assert!(
        corrupt_moved_to
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("state.json.corrupt-"),
        "{corrupt_moved_to:?}"
    );
    // The backup before the newest holds the state after the first write only.
    let mut expected = good.clone();
    expected.services.get_mut("web").unwrap().running = Some(version("1"));
    expected.services.get_mut("web").unwrap().last_check = Some(at(1));
    assert_eq!(store.state(), &expected);
    assert_eq!(
        on_disk(&path),
        expected,
        "the restored state is written back"
    );
    let message = report.origin.to_string();
    assert!(message.contains("restored from backup"), "{message}");
}

#[test]
fn damaged_files_are_set_aside_and_restored_from_backup() {
    let whole = render(&State::default());
    check_restores_from_backup(b"");
    check_restores_from_backup(b"\n");
    check_restores_from_backup(&whole.as_bytes()[..whole.len() / 2]);
    check_restores_from_backup(b"\0\0\0\0\0\0\0\0");
    check_restores_from_backup(&[0xff, 0xfe, b'{']);
    check_restores_from_backup(br#"{"services": {}}"#);
}

#[test]
fn damaged_file_without_backups_starts_fresh_and_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    fs::write(&path, "{\"format_version\": 1, \"servi").unwrap();
    let (store, report) = open(&path);
    let Origin::StartedFreshAfterCorruption {
        corrupt_moved_to, ..
    } = &report.origin
    else {
        panic!("{:?}", report.origin);
    };
    assert!(report.recovered_from_corruption());
    assert_eq!(store.state(), &State::default());
    assert!(
        fs::read_to_string(corrupt_moved_to)
            .unwrap()
            .starts_with("{\"format_version")
    );
    assert!(!path.exists());
}

#[test]
fn setting_aside_twice_at_the_same_time_keeps_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let mut kept = Vec::new();
    for damaged in ["first", "second", "third"] {
        fs::write(&path, damaged).unwrap();
        let (_store, report) = open(&path); // same `now` each time
        let Origin::StartedFreshAfterCorruption {
            corrupt_moved_to, ..
        } = report.origin
        else {
            panic!("{:?}", report.origin);
        };
        kept.push(corrupt_moved_to);
    }
    let contents: Vec<String> = kept
        .iter()
        .map(|p| fs::read_to_string(p).unwrap())
        .collect();
    assert_eq!(contents, ["first", "second", "third"], "{kept:?}");
}

#[test]
fn newer_format_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let newer = "{\n  \"format_version\": 7,\n  \"services\": \"changed shape\"\n}\n";
    fs::write(&path, newer).unwrap();
    let err = StateStore::open(&path, &options(5), at(0)).unwrap_err();
    assert!(matches!(err, StateError::TooNew { found: 7, .. }), "{err}");
    let message = err.to_string();
    for part in [
        &path.display().to_string(),
        "format version 7",
        "understands up to 1",
        "upgrade lookout",
        "was not changed",
    ] {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
    assert_eq!(fs::read_to_string(&path).unwrap(), newer);
    let entries = backup_names(dir.path());
    assert_eq!(entries, ["backups", "state.json", "state.json.lock"]);
}

#[test]
fn backups_are_unique_within_one_instant_and_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let (mut store, _) = open(&path);
    let backup_dir = store.backup_dir().to_owned();
    assert_eq!(backup_dir, dir.path().join("backups"));
    assert_eq!(fs::metadata(&backup_dir).unwrap().mode() & 0o777, 0o700);
    // A stranger's file in the backup folder is never touched.
    fs::write(backup_dir.join("notes.txt"), "keep me").unwrap();

    let mut seen = std::collections::BTreeSet::new();
    for i in 0..20 {
        // The same instant every time: names must still differ.
        store.record_check("web", Some(version(&i.to_string())), at(5));
        store.save_checks(at(5)).unwrap();
        let names = backup_names(&backup_dir);
        assert!(names.len() <= DEFAULT_BACKUPS + 1, "{names:?}");
        seen.extend(names.into_iter().filter(|n| n.starts_with("state.json.")));
    }
    assert_eq!(
        seen.len(),
        20,
        "20 writes, 20 distinct backup names: {seen:?}"
    );

    let names = backup_names(&backup_dir);
    let expected: Vec<String> = ["notes.txt".to_string()]
        .into_iter()
        .chain((16..=20).map(|seq| format!("state.json.{seq:010}.20250219T212005.000000000Z")))
        .collect();
    assert_eq!(names, expected);
    let newest = backup_dir.join(&names[5]);
    assert_eq!(
        fs::read(&newest).unwrap(),
        fs::read(&path).unwrap(),
        "the newest backup is the file"
    );
    assert_eq!(fs::metadata(&newest).unwrap().mode() & 0o777, 0o600);

    // After a restart the sequence goes on, so the next backup is the newest, not pruned.
    drop(store);
    let (mut store, _) = open(&path);
    store.record_check("web", None, at(0));
    store.save_checks(at(0)).unwrap();
    let names = backup_names(&backup_dir);
    assert!(names[5].starts_with("state.json.0000000021."), "{names:?}");
    assert!(names[1].starts_with("state.json.0000000017."), "{names:?}");
}

#[test]
fn backups_go_where_configured_and_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let elsewhere = dir.path().join("elsewhere/backups");
    let opts = StoreOptions {
        backup_dir: Some(elsewhere.clone()),
        ..options(2)
    };
    let (mut store, _) = StateStore::open(&path, &opts, at(0)).unwrap();
    for i in 0..4 {
        store.record_check("web", None, at(i));
        store.save_checks(at(i)).unwrap();
    }
    assert_eq!(backup_names(&elsewhere).len(), 2);
    drop(store);

    let (mut store, _) = StateStore::open(&path, &options(0), at(0)).unwrap();
    store.record_check("web", None, at(9));
    store.save_checks(at(9)).unwrap();
    assert_eq!(
        backup_names(&dir.path().join("backups")),
        Vec::<String>::new()
    );
}

#[test]
fn second_open_fails_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let (first, _) = open(&path);

    let err = StateStore::open(&path, &options(5), at(0)).unwrap_err();
    let StateError::Locked { pid, lock, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(*pid, Some(std::process::id()));
    assert_eq!(lock, first.lock_path());
    let message = err.to_string();
    assert!(
        message.contains(&format!("pid {}", std::process::id())),
        "{message}"
    );
    assert!(message.contains("state.json.lock"), "{message}");

    // A locked store never falls back to another location.
    let opts = StoreOptions {
        fallback: true,
        fallback_paths: vec![dir.path().join("other/state.json")],
        ..options(5)
    };
    let err = StateStore::open(&path, &opts, at(0)).unwrap_err();
    assert!(matches!(err, StateError::Locked { .. }), "{err}");

    drop(first);
    open(&path);
}

#[test]
fn a_lock_held_by_another_process_names_it_and_dies_with_it() {
    Command::new("flock")
        .arg("--version")
        .output()
        .expect("the flock command is not installed: it comes with Debian's util-linux package");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let lock = dir.path().join("state.json.lock");
    // The child locks the file the way lookout does, writes its pid, and waits.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"exec 9>>"$1" && flock -n 9 && echo $$ > "$1" && echo locked && exec sleep 60"#)
        .arg("sh")
        .arg(&lock)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");

    let err = StateStore::open(&path, &options(5), at(0)).unwrap_err();
    assert!(
        matches!(err, StateError::Locked { pid: Some(pid), .. } if pid == child.id()),
        "{err}"
    );
    assert!(err.to_string().contains(&format!("pid {}", child.id())));

    // kill -9 releases the lock; the stale pid in the file does not matter.
    child.kill().unwrap();
    child.wait().unwrap();
    let (store, _) = open(&path);
    assert_eq!(
        fs::read_to_string(store.lock_path()).unwrap().trim(),
        std::process::id().to_string()
    );
}

#[test]
fn unwritable_location_is_explained_and_falls_back_only_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file where the state folder should be: not writable, even for root.
    let blocker = dir.path().join("var-lib-lookout");
    fs::write(&blocker, "").unwrap();
    let path = blocker.join("state.json");

    let err = StateStore::open(&path, &options(5), at(0)).unwrap_err();
    assert!(matches!(err, StateError::NotWritable { .. }), "{err}");
    let message = err.to_string();
    for part in [&path.display().to_string(), "state_file", "state_fallback"] {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }

    let fallback = dir.path().join("xdg/lookout/state.json");
    let opts = StoreOptions {
        fallback: true,
        fallback_paths: vec![blocker.join("also-not/state.json"), fallback.clone()],
        ..options(5)
    };
    let (mut store, report) = StateStore::open(&path, &opts, at(0)).unwrap();
    assert_eq!(report.path, fallback);
    assert_eq!(store.path(), fallback);
    let fell_back = report.fell_back.unwrap();
    assert_eq!(fell_back.configured, path);
    store.record_check("web", None, at(1));
    store.save_checks(at(1)).unwrap();
    assert!(fallback.exists());

    let opts = StoreOptions {
        fallback: true,
        fallback_paths: vec![blocker.join("also-not/state.json")],
        ..options(5)
    };
    let err = StateStore::open(&path, &opts, at(0)).unwrap_err();
    assert!(
        matches!(err, StateError::NoWritableLocation { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("also-not"), "{err}");
}

#[test]
fn default_fallbacks_follow_the_environment() {
    fn check(vars: &[(&str, &str)], expect: &[&str]) {
        let env = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        };
        let got = default_fallback_paths(env);
        let expect: Vec<PathBuf> = expect.iter().map(PathBuf::from).collect();
        assert_eq!(got, expect, "{vars:?}");
    }
    check(
        &[("XDG_STATE_HOME", "/x"), ("HOME", "/home/op")],
        &["/x/lookout/state.json", "lookout-state.json"],
    );
    check(
        &[("XDG_STATE_HOME", ""), ("HOME", "/home/op")],
        &[
            "/home/op/.local/state/lookout/state.json",
            "lookout-state.json",
        ],
    );
    check(&[], &["lookout-state.json"]);
}

/// Asserts that a failed write was reported with the path and changed nothing: not the
/// file on disk at `readable` (where the old file can still be read) and not the store.
fn assert_write_failed_cleanly(
    store: &mut StateStore,
    old_bytes: &[u8],
    readable: &Path,
    result: Result<(), StateError>,
) {
    let err = result.unwrap_err();
    assert!(matches!(err, StateError::Write { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&store.path().display().to_string()),
        "{message}"
    );
    assert!(message.contains("unchanged"), "{message}");
    assert_eq!(fs::read(readable).unwrap(), old_bytes);
    assert_eq!(
        &parse(&String::from_utf8_lossy(old_bytes)).unwrap(),
        store.state()
    );
}

#[test]
fn write_into_a_vanished_folder_fails_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("state");
    let path = folder.join("state.json");
    let (mut store, _) = open(&path);
    store.record_check("web", Some(version("1")), at(1));
    store.save_checks(at(1)).unwrap();
    let old = fs::read(&path).unwrap();
    // The folder is moved away and a file takes its place.
    let moved = dir.path().join("moved");
    fs::rename(&folder, &moved).unwrap();
    fs::write(&folder, "").unwrap();

    let result = store.begin_update(intent("web"), at(2));
    assert_write_failed_cleanly(&mut store, &old, &moved.join("state.json"), result);
    assert!(store.in_flight().is_empty(), "memory agrees with the disk");
}

/// Makes a folder read-only even for root (`chattr +i`) until dropped.
struct Immutable(PathBuf);

impl Immutable {
    fn set(dir: &Path) -> Result<Immutable, String> {
        let out = Command::new("chattr")
            .arg("+i")
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run chattr: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Immutable(dir.to_owned()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[test]
fn write_in_a_read_only_folder_fails_and_keeps_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("state");
    let path = folder.join("state.json");
    let (mut store, _) = open(&path);
    store.record_check("web", Some(version("1")), at(1));
    store.save_checks(at(1)).unwrap();
    let old = fs::read(&path).unwrap();

    // A file we created belongs to our effective user.
    let is_root = fs::metadata(&path).unwrap().uid() == 0;
    let _guard = if is_root {
        // chmod does not stop root; the immutable attribute does.
        Some(Immutable::set(&folder).unwrap_or_else(|why| {
            panic!(
                "cannot make a folder read-only for root with `chattr +i` ({why}): as root this \
                 test needs chattr (e2fsprogs, which tests/run installs), CAP_LINUX_IMMUTABLE and \
                 a file system with the immutable attribute"
            )
        }))
    } else {
        fs::set_permissions(&folder, fs::Permissions::from_mode(0o500)).unwrap();
        None
    };
    let result = store.set_paused(true, at(2));
    if !is_root {
        fs::set_permissions(&folder, fs::Permissions::from_mode(0o700)).unwrap();
    }
    assert_write_failed_cleanly(&mut store, &old, &path, result);
}

/// A tiny tmpfs mounted until dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Result<Tmpfs, String> {
        fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Tmpfs(at.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn write_on_a_full_disk_fails_and_keeps_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("small");
    let _tmpfs = Tmpfs::mount(&mount, "256k").unwrap_or_else(|why| {
        panic!(
            "cannot mount a small tmpfs to fill ({why}): this test needs root with CAP_SYS_ADMIN \
             (as tests/run runs on CI)"
        )
    });
    let path = mount.join("state.json");
    let (mut store, _) = open(&path);
    store.record_check("web", Some(version("1")), at(1));
    store.save_checks(at(1)).unwrap();
    let old = fs::read(&path).unwrap();

    // Fill the file system to the last block.
    let mut filler = fs::File::create(mount.join("filler")).unwrap();
    let block = vec![b'x'; 4096];
    while io::Write::write_all(&mut filler, &block).is_ok() {}
    // Checks are kept in memory and written once: the write of 200 fails whole.
    for i in 0..200 {
        store.record_check(&format!("service-{i:03}"), Some(version("1")), at(2));
    }
    let result = store.save_checks(at(2));
    let err = result.unwrap_err();
    assert!(matches!(err, StateError::Write { .. }), "{err}");
    assert!(err.to_string().contains("unchanged"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), old, "the file is its old bytes");
    // What a write can change: a durable one fails cleanly too, and leaves the state as it was.
    let before = store.state().clone();
    let err = store.set_paused(true, at(3)).unwrap_err();
    assert!(matches!(err, StateError::Write { .. }), "{err}");
    assert_eq!(fs::read(&path).unwrap(), old);
    assert_eq!(store.state(), &before);
    let leftovers: Vec<String> = backup_names(&mount)
        .into_iter()
        .filter(|n| n.contains("lookout-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}
